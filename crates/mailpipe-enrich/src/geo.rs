//! IP geolocation from a MaxMind-format (`.mmdb`) file: GeoLite2-City, GeoIP2-City, or
//! any database with their record layout (a Country database gives countries only).
//!
//! The file is read into memory once, checked completely ([`maxminddb::Reader::verify`]),
//! and then only looked up: no network call, no file access per lookup. Checking a full
//! GeoLite2-City file takes a few seconds once at startup; in exchange a corrupt or
//! truncated file is refused with an error naming it, instead of giving wrong answers.
//!
//! Where this is weak: the location is the connecting address's, so an open through a
//! mail proxy (Gmail, Yahoo, Apple Mail Privacy Protection) is located at the proxy, not
//! the reader; VPNs and mobile carriers' gateways likewise. Free databases are often
//! right about the country and much less often about the city.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use maxminddb::{geoip2, Reader};

use crate::ip::{is_public, parse_ip};
use crate::EnrichError;

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct GeoFields {
    /// ISO 3166-1 alpha-2 country code ("DE", "US"), from `country.iso_code`.
    pub country: Option<String>,
    /// The largest subdivision (state, region): its ISO 3166-2 code without the country
    /// part ("BY", "CA"), from `subdivisions[0].iso_code`, else its English name.
    pub region: Option<String>,
    /// The English city name, from `city.names.en`.
    pub city: Option<String>,
}

impl GeoFields {
    /// Fields from text, an empty text being absent (for writing test databases).
    pub fn new(country: &str, region: &str, city: &str) -> GeoFields {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        GeoFields {
            country: some(country),
            region: some(region),
            city: some(city),
        }
    }
}

/// An open MaxMind-format geolocation database, held in memory. Cheap to share between
/// threads behind an `Arc`; lookups take `&self`.
pub struct GeoDatabase {
    reader: Reader<Vec<u8>>,
    /// The file's path, or "in-memory bytes".
    origin: String,
}

impl GeoDatabase {
    /// Reads and checks the database at `path`. Fails, naming the path, when the file
    /// cannot be read or is not a valid MaxMind DB file; never panics.
    pub fn open(path: &Path) -> Result<Self, EnrichError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| EnrichError::ReadDatabase {
            path: origin.clone(),
            reason: e.to_string(),
        })?;
        Self::load(bytes, origin)
    }

    /// Checks and takes a database already in memory (tests, an embedded file).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, EnrichError> {
        Self::load(bytes, "in-memory bytes".to_string())
    }

    fn load(bytes: Vec<u8>, origin: String) -> Result<Self, EnrichError> {
        let invalid = |e: maxminddb::MaxMindDbError| EnrichError::InvalidDatabase {
            origin: origin.clone(),
            reason: e.to_string(),
        };
        let reader = Reader::from_source(bytes).map_err(invalid)?;
        reader.verify().map_err(invalid)?;
        Ok(GeoDatabase { reader, origin })
    }

    /// Locates `ip` (IPv4, IPv6, IPv4-mapped IPv6, optionally with a port).
    ///
    /// `None` for an unparsable address, a private, loopback or otherwise non-public one,
    /// an address the database does not have, an IPv6 address in an IPv4-only database,
    /// or a record with none of the three fields. Never panics.
    pub fn lookup(&self, ip: &str) -> Option<GeoFields> {
        let ip = parse_ip(ip)?;
        if !is_public(ip) {
            return None;
        }
        self.lookup_ip(ip)
    }

    fn lookup_ip(&self, ip: IpAddr) -> Option<GeoFields> {
        let found = self.reader.lookup(ip).ok()?;
        let record: geoip2::City<'_> = found.decode().ok()??;
        let region = record.subdivisions.first().and_then(|subdivision| {
            non_empty(subdivision.iso_code).or_else(|| non_empty(subdivision.names.english))
        });
        let fields = GeoFields {
            country: non_empty(record.country.iso_code),
            region,
            city: non_empty(record.city.names.english),
        };
        if fields == GeoFields::default() {
            None
        } else {
            Some(fields)
        }
    }

    /// One line for the startup log: database type, build date and epoch, IP version,
    /// size, and where it was loaded from.
    pub fn description(&self) -> String {
        let m = self.reader.metadata();
        format!(
            "{} built {} (build_epoch {}), ip_version {}, {} nodes, from {}",
            m.database_type,
            utc_date(m.build_epoch),
            m.build_epoch,
            m.ip_version,
            m.node_count,
            self.origin
        )
    }
}

impl fmt::Debug for GeoDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.reader.metadata();
        f.debug_struct("GeoDatabase")
            .field("origin", &self.origin)
            .field("database_type", &m.database_type)
            .field("build_epoch", &m.build_epoch)
            .field("ip_version", &m.ip_version)
            .finish_non_exhaustive()
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds, by the usual days-to-civil arithmetic on
/// the proleptic Gregorian calendar.
fn utc_date(epoch_seconds: u64) -> String {
    let days = (epoch_seconds / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmdb_writer::write_city_database;

    fn fields(country: &str, region: &str, city: &str) -> GeoFields {
        GeoFields::new(country, region, city)
    }

    fn database() -> GeoDatabase {
        let entries = [
            (
                "81.2.69.0".parse().unwrap(),
                24,
                fields("GB", "ENG", "London"),
            ),
            (
                "2001:db8::".parse().unwrap(),
                32,
                fields("DE", "Bavaria", ""),
            ),
            ("198.51.100.0".parse().unwrap(), 24, GeoFields::default()),
        ];
        GeoDatabase::from_bytes(write_city_database(&entries, 6).unwrap()).unwrap()
    }

    #[test]
    fn looks_up_v4_v6_mapped_and_with_port() {
        let db = database();
        let london = Some(fields("GB", "ENG", "London"));
        assert_eq!(db.lookup("81.2.69.160"), london);
        assert_eq!(db.lookup(" ::ffff:81.2.69.1 "), london);
        assert_eq!(db.lookup("81.2.69.1:8080"), london);
        assert_eq!(
            db.lookup("2001:db8:1::7"),
            Some(fields("DE", "Bavaria", ""))
        );
    }

    #[test]
    fn nothing_for_garbage_private_missing_and_empty_records() {
        let db = database();
        for ip in [
            "",
            "nope",
            "10.0.0.1",
            "127.0.0.1",
            "::1",
            "fd12::1",
            "8.8.8.8",
            "198.51.100.1",
        ] {
            assert_eq!(db.lookup(ip), None, "{ip}");
        }
    }

    #[test]
    fn garbage_bytes_are_an_error_not_a_panic() {
        let e = GeoDatabase::from_bytes(b"not a database".to_vec()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid geolocation database in-memory bytes: "),
            "{e}"
        );
    }

    #[test]
    fn description_names_type_date_and_origin() {
        let text = database().description();
        assert!(
            text.starts_with("mailpipe-test-City built 2026-01-01 (build_epoch 1767225600)"),
            "{text}"
        );
        assert!(text.ends_with("from in-memory bytes"), "{text}");
        let debug = format!("{:?}", database());
        assert!(debug.contains("mailpipe-test-City"), "{debug}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_767_225_599), "2025-12-31");
        assert_eq!(utc_date(1_767_225_600), "2026-01-01");
        assert!(utc_date(u64::MAX).len() >= 10);
    }
}
