//! A tiny MaxMind DB (format 2.0) writer, for test databases: the project builds its own
//! instead of shipping MaxMind's files, and no Rust writer crate is used.
//!
//! The file has the three parts of the format:
//!
//! 1. The binary search tree. Each node has two records (the 0 and 1 branches of the
//!    next address bit); a record is another node's number, `node_count` for "no data",
//!    or `node_count + 16 + offset` for the data at `offset` in the data section. Records
//!    are 24 bits when every value fits, else 28, else 32.
//! 2. 16 zero bytes, then the data section: one map per distinct [`GeoFields`] in the
//!    GeoIP2-City layout, `{"city": {"names": {"en": ..}}, "country": {"iso_code": ..},
//!    "subdivisions": [{"iso_code": ..} or {"names": {"en": ..}}]}`, absent fields left out.
//!    A region of 1 to 3 upper-case letters or digits is written as the subdivision's
//!    `iso_code`, anything else as its English name.
//! 3. `\xAB\xCD\xEFMaxMind.com` and the metadata map.
//!
//! Networks may nest: an address gets the data of the longest prefix that contains it,
//! whatever the order of the entries. The same network twice is refused. In an IPv6 tree,
//! IPv4 networks go where readers look for them, under `::/96` (the IPv4-mapped
//! `::ffff:0:0/96` and 6to4 aliases of MaxMind's files are not written; our lookup unwraps
//! IPv4-mapped addresses itself). Host bits below the prefix are ignored.
//!
//! The build epoch is fixed, so the same entries always give the same bytes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::{EnrichError, GeoFields};

/// The `database_type` of the written files.
pub const DATABASE_TYPE: &str = "mailpipe-test-City";

/// The `build_epoch` of the written files: 2026-01-01T00:00:00Z.
pub const BUILD_EPOCH: u64 = 1_767_225_600;

/// Marks the start of the metadata section.
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// Zero bytes between the search tree and the data section.
const DATA_SECTION_SEPARATOR: usize = 16;

/// The longest string the format's size field can express.
const MAX_STRING_BYTES: usize = 65_821 + 0xFF_FFFF;

/// Writes a MaxMind DB file (GeoIP2-City layout) with `entries` — (network address,
/// prefix length, fields) — in an `ip_version` 4 or 6 search tree.
///
/// Fails for an IP version other than 4 or 6, a prefix longer than the address (or 0 in
/// an IPv4 tree, or 0 for an IPv6 network), an IPv6 network in an IPv4 tree, the same
/// network twice, or a string longer than the format allows.
pub fn write_city_database(
    entries: &[(IpAddr, u8, GeoFields)],
    ip_version: u8,
) -> Result<Vec<u8>, EnrichError> {
    write_with_record_size(entries, ip_version, None)
}

/// [`write_city_database`] with the record size forced (tests of 28 and 32-bit trees);
/// `None` picks the smallest that fits.
pub(crate) fn write_with_record_size(
    entries: &[(IpAddr, u8, GeoFields)],
    ip_version: u8,
    record_size: Option<u16>,
) -> Result<Vec<u8>, EnrichError> {
    if ip_version != 4 && ip_version != 6 {
        return Err(EnrichError::InvalidIpVersion(ip_version));
    }
    let mut networks = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    for (ip, prefix, fields) in entries {
        let network = Network::new(*ip, *prefix, ip_version)?;
        check_strings(*ip, *prefix, fields)?;
        if !seen.insert((network.bits, network.depth)) {
            return Err(entry_error(*ip, *prefix, "the same network is given twice"));
        }
        networks.push((network, fields));
    }
    // Shorter prefixes first: a longer one inserted later splits the shorter one's record,
    // so the most specific network wins whatever the order of `entries`.
    networks.sort_by_key(|(network, _)| (network.depth, network.bits));

    let mut data = Vec::new();
    let mut offsets: HashMap<&GeoFields, usize> = HashMap::new();
    let mut tree = Tree::new();
    for (network, fields) in &networks {
        let offset = *offsets.entry(fields).or_insert_with(|| {
            let offset = data.len();
            encode_record(&mut data, fields);
            offset
        });
        tree.insert(network, offset);
    }

    let node_count = tree.nodes.len();
    let largest = node_count + DATA_SECTION_SEPARATOR + data.len();
    let record_size = match record_size {
        Some(size) => size,
        None if largest < 1 << 24 => 24,
        None if largest < 1 << 28 => 28,
        None => 32,
    };

    let mut out = Vec::new();
    for node in &tree.nodes {
        let [left, right] = node.map(|child| child.record(node_count));
        write_node(&mut out, record_size, left, right);
    }
    out.extend_from_slice(&[0; DATA_SECTION_SEPARATOR]);
    out.extend_from_slice(&data);
    out.extend_from_slice(METADATA_MARKER);
    encode_metadata(&mut out, ip_version, node_count, record_size);
    Ok(out)
}

/// A network as a path in the search tree: its bits, left-aligned in a `u128`, and how
/// many of them are significant.
struct Network {
    bits: u128,
    depth: u32,
}

impl Network {
    fn new(ip: IpAddr, prefix: u8, ip_version: u8) -> Result<Network, EnrichError> {
        let (bits, depth) = match (ip, ip_version) {
            (IpAddr::V4(v4), _) if prefix > 32 => {
                return Err(entry_error(
                    IpAddr::V4(v4),
                    prefix,
                    "an IPv4 prefix is at most 32",
                ))
            }
            (IpAddr::V4(v4), 4) => (u128::from(u32::from(v4)) << 96, u32::from(prefix)),
            // IPv4 lives under ::/96 of an IPv6 tree.
            (IpAddr::V4(v4), _) => (u128::from(u32::from(v4)), 96 + u32::from(prefix)),
            (IpAddr::V6(v6), 4) => {
                return Err(entry_error(
                    IpAddr::V6(v6),
                    prefix,
                    "an IPv6 network in an IPv4 tree",
                ))
            }
            (IpAddr::V6(v6), _) if prefix > 128 => {
                return Err(entry_error(
                    IpAddr::V6(v6),
                    prefix,
                    "an IPv6 prefix is at most 128",
                ))
            }
            (IpAddr::V6(v6), _) => (u128::from(v6), u32::from(prefix)),
        };
        if depth == 0 {
            return Err(entry_error(
                ip,
                prefix,
                "a prefix of length 0 would cover the whole tree",
            ));
        }
        let mask = u128::MAX << (128 - depth);
        Ok(Network {
            bits: bits & mask,
            depth,
        })
    }

    /// The branch taken at depth `i` (0 = the most significant bit).
    fn bit(&self, i: u32) -> usize {
        ((self.bits >> (127 - i)) & 1) as usize
    }
}

fn entry_error(ip: IpAddr, prefix: u8, reason: &str) -> EnrichError {
    EnrichError::InvalidEntry {
        network: format!("{ip}/{prefix}"),
        reason: reason.to_string(),
    }
}

fn check_strings(ip: IpAddr, prefix: u8, fields: &GeoFields) -> Result<(), EnrichError> {
    let values = [&fields.country, &fields.region, &fields.city];
    if values
        .iter()
        .any(|v| v.as_ref().is_some_and(|s| s.len() > MAX_STRING_BYTES))
    {
        return Err(entry_error(
            ip,
            prefix,
            "a field is longer than the format allows",
        ));
    }
    Ok(())
}

/// What a record of the search tree points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    /// No data.
    Empty,
    /// Another node, by number.
    Node(usize),
    /// Data at this offset of the data section.
    Data(usize),
}

impl Child {
    /// The record's value in the file.
    fn record(self, node_count: usize) -> usize {
        match self {
            Child::Empty => node_count,
            Child::Node(n) => n,
            Child::Data(offset) => node_count + DATA_SECTION_SEPARATOR + offset,
        }
    }
}

/// The search tree being built; node 0 is the root.
struct Tree {
    nodes: Vec<[Child; 2]>,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            nodes: vec![[Child::Empty, Child::Empty]],
        }
    }

    /// Points `network`'s path at `offset`. Networks must come shortest first: a record on
    /// the way that holds a shorter network's data is split into a node whose two records
    /// both keep that data, so the addresses beside `network` still find it.
    fn insert(&mut self, network: &Network, offset: usize) {
        let mut node = 0;
        for i in 0..network.depth - 1 {
            let bit = network.bit(i);
            node = match self.nodes[node][bit] {
                Child::Node(next) => next,
                inherited => {
                    let next = self.nodes.len();
                    self.nodes.push([inherited, inherited]);
                    self.nodes[node][bit] = Child::Node(next);
                    next
                }
            };
        }
        // Shortest first and no duplicates: the last record is empty or a shorter
        // network's data, never a subtree.
        let last = network.bit(network.depth - 1);
        self.nodes[node][last] = Child::Data(offset);
    }
}

fn write_node(out: &mut Vec<u8>, record_size: u16, left: usize, right: usize) {
    // Record values are below 2^32 by the choice of record size; the casts keep the bits
    // the format stores.
    let (left, right) = (left as u32, right as u32);
    match record_size {
        24 => {
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        28 => {
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            // The middle byte: the left record's top nibble, then the right record's.
            out.push((((left >> 24) & 0x0F) << 4) as u8 | ((right >> 24) & 0x0F) as u8);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        _ => {
            out.extend_from_slice(&left.to_be_bytes());
            out.extend_from_slice(&right.to_be_bytes());
        }
    }
}

// Data section types of the format.
const TYPE_STRING: u8 = 2;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_UINT64: u8 = 9;
const TYPE_ARRAY: u8 = 11;

/// A control byte for `type_number` with payload `size`: types above 7 are "extended"
/// (type 0 in the control byte, `type - 7` in the next); sizes of 29 and more take 1, 2
/// or 3 more bytes.
fn encode_control(out: &mut Vec<u8>, type_number: u8, size: usize) {
    let type_bits = if type_number <= 7 {
        type_number << 5
    } else {
        0
    };
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, Vec::new())
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65_536 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    out.push(type_bits | size_bits);
    if type_number > 7 {
        out.push(type_number - 7);
    }
    out.extend_from_slice(&extra);
}

fn encode_string(out: &mut Vec<u8>, text: &str) {
    encode_control(out, TYPE_STRING, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// An unsigned integer in as few big-endian bytes as it needs (none for 0).
fn encode_uint(out: &mut Vec<u8>, type_number: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    encode_control(out, type_number, bytes.len() - first);
    out.extend_from_slice(&bytes[first..]);
}

/// `{"names": {"en": name}}`.
fn encode_english_names(out: &mut Vec<u8>, name: &str) {
    encode_control(out, TYPE_MAP, 1);
    encode_string(out, "names");
    encode_control(out, TYPE_MAP, 1);
    encode_string(out, "en");
    encode_string(out, name);
}

/// A region written as a subdivision `iso_code` rather than a name.
fn is_subdivision_code(region: &str) -> bool {
    (1..=3).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn encode_record(out: &mut Vec<u8>, fields: &GeoFields) {
    let present = [
        fields.city.is_some(),
        fields.country.is_some(),
        fields.region.is_some(),
    ];
    encode_control(out, TYPE_MAP, present.iter().filter(|p| **p).count());
    if let Some(city) = &fields.city {
        encode_string(out, "city");
        encode_english_names(out, city);
    }
    if let Some(country) = &fields.country {
        encode_string(out, "country");
        encode_control(out, TYPE_MAP, 1);
        encode_string(out, "iso_code");
        encode_string(out, country);
    }
    if let Some(region) = &fields.region {
        encode_string(out, "subdivisions");
        encode_control(out, TYPE_ARRAY, 1);
        if is_subdivision_code(region) {
            encode_control(out, TYPE_MAP, 1);
            encode_string(out, "iso_code");
            encode_string(out, region);
        } else {
            encode_english_names(out, region);
        }
    }
}

fn encode_metadata(out: &mut Vec<u8>, ip_version: u8, node_count: usize, record_size: u16) {
    encode_control(out, TYPE_MAP, 9);
    encode_string(out, "binary_format_major_version");
    encode_uint(out, TYPE_UINT16, 2);
    encode_string(out, "binary_format_minor_version");
    encode_uint(out, TYPE_UINT16, 0);
    encode_string(out, "build_epoch");
    encode_uint(out, TYPE_UINT64, BUILD_EPOCH);
    encode_string(out, "database_type");
    encode_string(out, DATABASE_TYPE);
    encode_string(out, "description");
    encode_control(out, TYPE_MAP, 1);
    encode_string(out, "en");
    encode_string(out, "mailpipe test geolocation database");
    encode_string(out, "ip_version");
    encode_uint(out, TYPE_UINT16, u64::from(ip_version));
    encode_string(out, "languages");
    encode_control(out, TYPE_ARRAY, 1);
    encode_string(out, "en");
    encode_string(out, "node_count");
    encode_uint(out, TYPE_UINT32, node_count as u64);
    encode_string(out, "record_size");
    encode_uint(out, TYPE_UINT16, u64::from(record_size));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GeoDatabase;

    fn fields(country: &str, region: &str, city: &str) -> GeoFields {
        GeoFields::new(country, region, city)
    }

    fn entry(net: &str, prefix: u8, f: GeoFields) -> (IpAddr, u8, GeoFields) {
        (net.parse().unwrap(), prefix, f)
    }

    #[test]
    fn control_bytes_of_each_size_class() {
        let control = |t, size| {
            let mut out = Vec::new();
            encode_control(&mut out, t, size);
            out
        };
        assert_eq!(control(TYPE_STRING, 0), [0x40]);
        assert_eq!(control(TYPE_STRING, 28), [0x40 | 28]);
        assert_eq!(control(TYPE_STRING, 29), [0x40 | 29, 0]);
        assert_eq!(control(TYPE_STRING, 284), [0x40 | 29, 255]);
        assert_eq!(control(TYPE_STRING, 285), [0x40 | 30, 0, 0]);
        assert_eq!(control(TYPE_STRING, 65_821), [0x40 | 31, 0, 0, 0]);
        assert_eq!(control(TYPE_MAP, 3), [0xE3]);
        assert_eq!(control(TYPE_ARRAY, 1), [0x01, 0x04]);
        assert_eq!(control(TYPE_UINT64, 4), [0x04, 0x02]);
    }

    #[test]
    fn uints_are_minimal() {
        let uint = |t, v| {
            let mut out = Vec::new();
            encode_uint(&mut out, t, v);
            out
        };
        assert_eq!(uint(TYPE_UINT16, 0), [0xA0]);
        assert_eq!(uint(TYPE_UINT16, 2), [0xA1, 2]);
        assert_eq!(uint(TYPE_UINT32, 0x1_0000), [0xC3, 1, 0, 0]);
    }

    #[test]
    fn nodes_of_each_record_size() {
        let node = |size, l, r| {
            let mut out = Vec::new();
            write_node(&mut out, size, l, r);
            out
        };
        assert_eq!(node(24, 0x01_0203, 0x04_0506), [1, 2, 3, 4, 5, 6]);
        assert_eq!(node(28, 0xA01_0203, 0xB04_0506), [1, 2, 3, 0xAB, 4, 5, 6]);
        assert_eq!(node(32, 0x0102_0304, 0x0506_0708), [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn output_is_deterministic_and_order_independent() {
        let a = entry("192.0.2.0", 24, fields("US", "CA", "San Francisco"));
        let b = entry("192.0.2.128", 25, fields("US", "NY", "New York"));
        let one = write_city_database(&[a.clone(), b.clone()], 6).unwrap();
        let two = write_city_database(&[b, a], 6).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn every_record_size_reads_back() {
        let entries = [
            entry("192.0.2.0", 24, fields("US", "CA", "San Francisco")),
            entry("2001:db8:5::", 48, fields("JP", "13", "Tokyo")),
        ];
        for size in [24, 28, 32] {
            let bytes = write_with_record_size(&entries, 6, Some(size)).unwrap();
            let db = GeoDatabase::from_bytes(bytes).unwrap();
            assert_eq!(
                db.lookup("192.0.2.9"),
                Some(fields("US", "CA", "San Francisco")),
                "{size}"
            );
            assert_eq!(
                db.lookup("2001:db8:5::1"),
                Some(fields("JP", "13", "Tokyo")),
                "{size}"
            );
            assert_eq!(db.lookup("192.0.3.1"), None, "{size}");
        }
    }

    #[test]
    fn region_codes_and_names() {
        assert!(is_subdivision_code("CA"));
        assert!(is_subdivision_code("13"));
        assert!(is_subdivision_code("ENG"));
        assert!(!is_subdivision_code("Bavaria"));
        assert!(!is_subdivision_code("ca"));
        assert!(!is_subdivision_code(""));
    }

    #[test]
    fn refuses_bad_entries() {
        let f = GeoFields::default();
        let cases = [
            (
                entry("192.0.2.0", 33, f.clone()),
                6,
                "invalid database entry 192.0.2.0/33: an IPv4 prefix is at most 32",
            ),
            (
                entry("2001:db8::", 129, f.clone()),
                6,
                "invalid database entry 2001:db8::/129: an IPv6 prefix is at most 128",
            ),
            (
                entry("2001:db8::", 32, f.clone()),
                4,
                "invalid database entry 2001:db8::/32: an IPv6 network in an IPv4 tree",
            ),
            (
                entry("0.0.0.0", 0, f.clone()),
                4,
                "invalid database entry 0.0.0.0/0: a prefix of length 0 would cover the whole tree",
            ),
            (
                entry("::", 0, f.clone()),
                6,
                "invalid database entry ::/0: a prefix of length 0 would cover the whole tree",
            ),
        ];
        for (entry, version, message) in cases {
            let e = write_city_database(&[entry], version).unwrap_err();
            assert_eq!(e.to_string(), message);
        }
        assert_eq!(
            write_city_database(&[], 5).unwrap_err(),
            EnrichError::InvalidIpVersion(5)
        );
    }

    #[test]
    fn refuses_the_same_network_twice_even_with_other_host_bits() {
        let entries = [
            entry("192.0.2.0", 24, fields("US", "", "")),
            entry("192.0.2.77", 24, fields("CA", "", "")),
        ];
        let e = write_city_database(&entries, 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid database entry 192.0.2.77/24: the same network is given twice"
        );
    }

    #[test]
    fn an_empty_database_is_valid_and_finds_nothing() {
        for version in [4, 6] {
            let db = GeoDatabase::from_bytes(write_city_database(&[], version).unwrap()).unwrap();
            assert_eq!(db.lookup("192.0.2.1"), None);
        }
    }
}
