//! Properties: nothing here panics on any input, and the test-database writer agrees with
//! a naive longest-prefix match for random nested IPv4 networks.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use mailpipe_enrich::mmdb_writer::write_city_database;
use mailpipe_enrich::{classify_user_agent, machine_open, GeoDatabase, GeoFields};
use proptest::prelude::*;

/// Pieces of real user agents, so random strings reach the table rules and woothee's
/// branches, not only the "unknown" answer.
const FRAGMENTS: &[&str] = &[
    "Mozilla/5.0",
    " ",
    "(",
    ")",
    ";",
    "Macintosh",
    "iPhone",
    "iPad",
    "Android",
    "Mobile",
    "Mobile/15E148",
    "AppleWebKit/605.1.15",
    "Safari/604.1",
    "Version/17.4",
    "Chrome/124.0",
    "Firefox/125.0",
    "Windows NT 10.0",
    "X11; Linux x86_64",
    "CrOS",
    "GoogleImageProxy",
    "YahooMailProxy",
    "Microsoft Outlook 16.0",
    "MacOutlook/16",
    "Outlook-iOS/",
    "Thunderbird/",
    "SamsungEmail/",
    "(Linux; Android 14",
    "Mimecast",
    "bot",
    "curl/",
    "Edg/",
    "OPR/",
    "é",
    "🐘",
    "\u{0}",
    "GSA/",
];

fn user_agent() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..12)
            .prop_map(|parts| parts.concat()),
    ]
}

fn ip_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<u32>().prop_map(|n| Ipv4Addr::from(n).to_string()),
        any::<u128>().prop_map(|n| std::net::Ipv6Addr::from(n).to_string()),
        any::<u32>().prop_map(|n| format!("::ffff:{}", Ipv4Addr::from(n))),
        (any::<u32>(), any::<u16>()).prop_map(|(n, port)| format!("{}:{port}", Ipv4Addr::from(n))),
    ]
}

fn sample_database() -> &'static Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let f = |c: &str, r: &str, city: &str| GeoFields {
            country: Some(c.to_string()),
            region: Some(r.to_string()),
            city: Some(city.to_string()),
        };
        let entries = [
            (
                "192.0.2.0".parse().unwrap(),
                24,
                f("US", "CA", "San Francisco"),
            ),
            (
                "192.0.2.128".parse().unwrap(),
                25,
                f("US", "NY", "New York"),
            ),
            (
                "2001:db8::".parse().unwrap(),
                32,
                f("DE", "Bavaria", "Munich"),
            ),
        ];
        write_city_database(&entries, 6).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn classify_never_panics(ua in user_agent()) {
        let info = classify_user_agent(&ua);
        // A proxy is only ever reported with the proxy device.
        if info.proxy.is_some() {
            prop_assert_eq!(info.device, mailpipe_enrich::Device::Proxy);
        }
    }

    #[test]
    fn machine_open_never_panics(
        ua in prop::option::of(user_agent()),
        ip in prop::option::of(ip_text()),
        flag in any::<Option<bool>>(),
    ) {
        let verdict = machine_open(ua.as_deref(), ip.as_deref(), flag);
        prop_assert_eq!(verdict.machine, verdict.reason.is_some());
        if let Some(flag) = flag {
            prop_assert_eq!(verdict.machine, flag);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        ip in ip_text(),
    ) {
        if let Ok(db) = GeoDatabase::from_bytes(bytes) {
            let _ = db.lookup(&ip);
            let _ = db.description();
        }
    }

    #[test]
    fn mutated_databases_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        ips in prop::collection::vec(ip_text(), 1..8),
    ) {
        let mut bytes = sample_database().clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(db) = GeoDatabase::from_bytes(bytes) {
            for ip in &ips {
                let _ = db.lookup(ip);
            }
            let _ = db.lookup("192.0.2.200");
            let _ = db.lookup("2001:db8::1");
        }
    }

    /// Random nested IPv4 networks: the written database answers like a naive
    /// longest-prefix match over the entries, in an IPv4 and an IPv6 tree.
    #[test]
    fn writer_matches_longest_prefix(
        networks in prop::collection::vec((any::<u32>(), 1u8..=32, 0usize..4), 0..24),
        probes in prop::collection::vec(any::<u32>(), 0..32),
    ) {
        let some = |s: &str| Some(s.to_string());
        let choices = [
            GeoFields { country: some("US"), region: some("CA"), city: some("San José") },
            GeoFields { country: some("DE"), region: some("Bavaria"), city: None },
            GeoFields { country: some("JP"), region: None, city: some("Tokyo") },
            GeoFields::default(),
        ];
        // Keep the first of each network (mask, prefix); the writer refuses duplicates.
        let mut entries: Vec<(IpAddr, u8, GeoFields)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (addr, prefix, choice) in &networks {
            let network = addr & mask(*prefix);
            if seen.insert((network, *prefix)) {
                let ip = IpAddr::V4(Ipv4Addr::from(*addr));
                entries.push((ip, *prefix, choices[*choice].clone()));
            }
        }
        // Probe inside each network too, not only at random.
        let mut probes = probes;
        probes.extend(networks.iter().map(|(addr, _, _)| *addr));

        for version in [4, 6] {
            let bytes = write_city_database(&entries, version).unwrap();
            let db = GeoDatabase::from_bytes(bytes).unwrap();
            for probe in &probes {
                let expected = entries
                    .iter()
                    .filter(|(ip, prefix, _)| match ip {
                        IpAddr::V4(v4) => u32::from(*v4) & mask(*prefix) == probe & mask(*prefix),
                        IpAddr::V6(_) => false,
                    })
                    .max_by_key(|(_, prefix, _)| *prefix)
                    .map(|(_, _, fields)| fields.clone())
                    .filter(|fields| *fields != GeoFields::default());
                let probe_ip = Ipv4Addr::from(*probe);
                let looked_up = db.lookup(&probe_ip.to_string());
                if is_public(probe_ip) {
                    prop_assert_eq!(looked_up, expected, "{} in an IPv{} tree", probe_ip, version);
                } else {
                    prop_assert_eq!(looked_up, None);
                }
            }
        }
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The crate's idea of a locatable IPv4 address, restated.
fn is_public(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || (a == 100 && (b & 0xC0) == 64))
}
