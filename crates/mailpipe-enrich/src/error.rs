//! The crate's one error type. Classifying user agents and judging machine opens cannot
//! fail (unknown input gives unknown answers); only loading a geolocation database and
//! writing a test database can. Messages are lower-case, without a trailing period, and
//! name the file or the network at fault so the operator knows what to fix.

/// Everything that can be refused here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrichError {
    /// The geolocation database file could not be read at all (missing, no permission).
    #[error("cannot read geolocation database {path}: {reason}")]
    ReadDatabase { path: String, reason: String },
    /// The bytes are not a usable MaxMind DB file (truncated, corrupt, wrong format).
    /// `origin` is the file's path, or `in-memory bytes` for [`crate::GeoDatabase::from_bytes`].
    #[error("invalid geolocation database {origin}: {reason}")]
    InvalidDatabase { origin: String, reason: String },
    /// An entry given to [`crate::mmdb_writer::write_city_database`] that cannot be written
    /// (prefix too long, IPv6 network in an IPv4 tree, the same network twice).
    #[error("invalid database entry {network}: {reason}")]
    InvalidEntry { network: String, reason: String },
    /// [`crate::mmdb_writer::write_city_database`] was asked for an IP version other than
    /// 4 or 6.
    #[error("invalid ip version {0}: expected 4 or 6")]
    InvalidIpVersion(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_culprit_and_are_lower_case() {
        let e = EnrichError::ReadDatabase {
            path: "/data/GeoLite2-City.mmdb".into(),
            reason: "no such file or directory".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot read geolocation database /data/GeoLite2-City.mmdb: no such file or directory"
        );
        let e = EnrichError::InvalidIpVersion(5);
        assert_eq!(e.to_string(), "invalid ip version 5: expected 4 or 6");
    }
}
