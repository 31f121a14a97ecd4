//! Arbitrary bytes as a user agent and IP (classify_user_agent, machine_open), as a whole
//! geolocation database (GeoDatabase::from_bytes, then lookups), and as edits to a valid
//! database written by mmdb_writer (to reach the tree and data section, which random
//! bytes rarely do): never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mailpipe_enrich::mmdb_writer::write_city_database;
use mailpipe_enrich::{classify_user_agent, machine_open, GeoDatabase, GeoFields};

/// Addresses that walk the IPv4 subtree, an IPv6 network and misses.
const PROBES: &[&str] = &[
    "192.0.2.1",
    "192.0.2.200",
    "198.51.100.7",
    "2001:db8::1",
    "2001:db9::1",
    "8.8.8.8",
];

fn valid_database() -> &'static Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let fields = |country: &str, region: &str, city: &str| GeoFields {
            country: Some(country.to_string()),
            region: Some(region.to_string()),
            city: Some(city.to_string()),
        };
        let entries = [
            ("192.0.2.0".parse().unwrap(), 24, fields("US", "CA", "San Francisco")),
            ("192.0.2.200".parse().unwrap(), 32, fields("US", "NY", "New York")),
            ("198.51.100.0".parse().unwrap(), 24, fields("DE", "Bavaria", "Munich")),
            ("2001:db8::".parse().unwrap(), 32, fields("FR", "IDF", "Paris")),
        ];
        write_city_database(&entries, 6).unwrap()
    })
}

fn lookups(bytes: Vec<u8>, extra: &str) {
    if let Ok(db) = GeoDatabase::from_bytes(bytes) {
        for ip in PROBES {
            let _ = db.lookup(ip);
        }
        let _ = db.lookup(extra);
        let _ = db.description();
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = classify_user_agent(&text);
    let _ = machine_open(Some(&text), Some(&text), None);

    match data.first() {
        // Edits of a valid database: (offset high, offset low, value) triples.
        Some(mode) if mode & 1 == 1 => {
            let mut bytes = valid_database().clone();
            for edit in data[1..].chunks_exact(3) {
                let at = usize::from(u16::from_be_bytes([edit[0], edit[1]])) % bytes.len();
                bytes[at] = edit[2];
            }
            if mode & 2 == 2 {
                let keep = data.len().min(bytes.len());
                bytes.truncate(bytes.len() - keep);
            }
            lookups(bytes, &text);
        }
        _ => lookups(data.to_vec(), &text),
    }
});
