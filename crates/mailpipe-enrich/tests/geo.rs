//! The test-database writer and the reader together: databases written by
//! `mmdb_writer` are read back through `GeoDatabase` (that is, through `maxminddb`), from
//! memory and from a file.

use std::net::IpAddr;
use std::path::Path;

use mailpipe_enrich::mmdb_writer::write_city_database;
use mailpipe_enrich::{EnrichError, GeoDatabase, GeoFields};

fn fields(country: &str, region: &str, city: &str) -> GeoFields {
    GeoFields::new(country, region, city)
}

fn entry(network: &str, prefix: u8, f: GeoFields) -> (IpAddr, u8, GeoFields) {
    (network.parse().unwrap(), prefix, f)
}

fn world() -> Vec<(IpAddr, u8, GeoFields)> {
    vec![
        // Most specific first on purpose: the order must not matter.
        entry("192.0.2.200", 32, fields("US", "NY", "New York")),
        entry("192.0.2.128", 25, fields("US", "CA", "San Francisco")),
        entry("192.0.2.0", 24, fields("US", "", "")),
        entry("198.51.100.0", 24, fields("DE", "Bavaria", "Munich")),
        entry("203.0.113.77", 32, fields("JP", "13", "Tokyo")),
        entry("64.0.0.0", 2, fields("ZZ", "", "")),
        entry("2001:db8::", 32, fields("FR", "IDF", "Paris")),
        entry("2001:db8:beef::", 48, fields("FR", "ARA", "Lyon")),
        entry("2001:db8:beef:1::", 64, GeoFields::default()),
    ]
}

fn v4_only(entries: &[(IpAddr, u8, GeoFields)]) -> Vec<(IpAddr, u8, GeoFields)> {
    entries
        .iter()
        .filter(|(ip, _, _)| ip.is_ipv4())
        .cloned()
        .collect()
}

fn check_v4(db: &GeoDatabase) {
    let cases = [
        ("192.0.2.1", Some(fields("US", "", ""))),
        ("192.0.2.127", Some(fields("US", "", ""))),
        ("192.0.2.128", Some(fields("US", "CA", "San Francisco"))),
        ("192.0.2.199", Some(fields("US", "CA", "San Francisco"))),
        ("192.0.2.200", Some(fields("US", "NY", "New York"))),
        ("192.0.2.201", Some(fields("US", "CA", "San Francisco"))),
        ("198.51.100.9", Some(fields("DE", "Bavaria", "Munich"))),
        ("203.0.113.77", Some(fields("JP", "13", "Tokyo"))),
        ("203.0.113.76", None),
        ("203.0.113.78", None),
        ("8.8.8.8", None),
        // A /2: 64.0.0.0 to 127.255.255.255, less what is not public.
        ("64.0.0.0", Some(fields("ZZ", "", ""))),
        ("100.63.255.255", Some(fields("ZZ", "", ""))),
        ("100.64.0.1", None),
        ("126.255.255.255", Some(fields("ZZ", "", ""))),
        ("63.255.255.255", None),
        ("128.0.0.0", None),
        // Not public: never looked up.
        ("10.0.0.1", None),
        ("127.0.0.1", None),
        ("192.168.0.1", None),
        // An IPv4-mapped IPv6 address is the IPv4 address.
        (
            "::ffff:198.51.100.9",
            Some(fields("DE", "Bavaria", "Munich")),
        ),
        (
            "[::ffff:192.0.2.200]:443",
            Some(fields("US", "NY", "New York")),
        ),
        // Not an address.
        ("", None),
        ("192.0.2", None),
        ("example.com", None),
    ];
    for (ip, expected) in cases {
        assert_eq!(db.lookup(ip), expected, "{ip}");
    }
}

#[test]
fn ipv4_networks_in_an_ipv6_tree() {
    let db = GeoDatabase::from_bytes(write_city_database(&world(), 6).unwrap()).unwrap();
    check_v4(&db);
}

#[test]
fn ipv4_networks_in_an_ipv4_tree() {
    let db = GeoDatabase::from_bytes(write_city_database(&v4_only(&world()), 4).unwrap()).unwrap();
    check_v4(&db);
    // No IPv6 in an IPv4 tree: not found rather than an error.
    assert_eq!(db.lookup("2001:db8::1"), None);
    assert!(
        db.description().contains("ip_version 4"),
        "{}",
        db.description()
    );
}

#[test]
fn ipv6_networks_nest() {
    let db = GeoDatabase::from_bytes(write_city_database(&world(), 6).unwrap()).unwrap();
    assert_eq!(db.lookup("2001:db8::1"), Some(fields("FR", "IDF", "Paris")));
    assert_eq!(
        db.lookup("2001:db8:beef::1"),
        Some(fields("FR", "ARA", "Lyon"))
    );
    assert_eq!(
        db.lookup("2001:db8:beef:2::1"),
        Some(fields("FR", "ARA", "Lyon"))
    );
    // The /64 inside has an empty record: nothing, not Lyon.
    assert_eq!(db.lookup("2001:db8:beef:1::5"), None);
    assert_eq!(db.lookup("2001:db9::1"), None);
    assert_eq!(db.lookup("fe80::1"), None);
}

#[test]
fn open_reads_a_file_and_describes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, write_city_database(&world(), 6).unwrap()).unwrap();
    let db = GeoDatabase::open(&path).unwrap();
    check_v4(&db);
    let text = db.description();
    assert!(
        text.starts_with(
            "mailpipe-test-City built 2026-01-01 (build_epoch 1767225600), ip_version 6, "
        ),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("from {}", path.display())),
        "{text}"
    );
}

#[test]
fn open_names_a_missing_file() {
    let e = GeoDatabase::open(Path::new("/nonexistent/mailpipe/GeoLite2-City.mmdb")).unwrap_err();
    assert!(matches!(e, EnrichError::ReadDatabase { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "cannot read geolocation database /nonexistent/mailpipe/GeoLite2-City.mmdb: "
        ),
        "{e}"
    );
}

#[test]
fn open_refuses_corrupt_files_naming_them() {
    let good = write_city_database(&world(), 6).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = b"\xAB\xCD\xEFMaxMind.com";
    let marker_at = good
        .windows(marker.len())
        .rposition(|w| w == marker)
        .unwrap();

    let mut corrupt = Vec::new();
    // Cut in the middle of the tree, of the data section, of the metadata.
    corrupt.push(good[..good.len() / 3].to_vec());
    corrupt.push(good[..marker_at - 3].to_vec());
    corrupt.push(good[..good.len() - 5].to_vec());
    // A data record pointing past the data section: the first node's records overwritten.
    let mut bad_pointer = good.clone();
    bad_pointer[..6].copy_from_slice(&[0xFF; 6]);
    corrupt.push(bad_pointer);
    // A metadata value of the wrong type (record_size as a string would need re-encoding;
    // garbage after the marker does as well).
    let mut bad_metadata = good[..marker_at + marker.len()].to_vec();
    bad_metadata.extend_from_slice(b"\x5fgarbage");
    corrupt.push(bad_metadata);
    corrupt.push(Vec::new());

    for (i, bytes) in corrupt.into_iter().enumerate() {
        let path = dir.path().join(format!("corrupt-{i}.mmdb"));
        std::fs::write(&path, &bytes).unwrap();
        let e = GeoDatabase::open(&path).unwrap_err();
        let prefix = format!("invalid geolocation database {}: ", path.display());
        assert!(e.to_string().starts_with(&prefix), "case {i}: {e}");
        assert!(
            matches!(
                GeoDatabase::from_bytes(bytes),
                Err(EnrichError::InvalidDatabase { .. })
            ),
            "case {i}"
        );
    }
}

#[test]
fn a_record_with_no_fields_is_nothing() {
    let entries = [entry("192.0.2.0", 24, GeoFields::default())];
    let db = GeoDatabase::from_bytes(write_city_database(&entries, 4).unwrap()).unwrap();
    assert_eq!(db.lookup("192.0.2.1"), None);
}
