//! Semantic checks that serde cannot express. All problems are collected, not just the
//! first, so an operator fixes a config file in one pass.

use crate::Settings;

const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

impl Settings {
    /// Every problem found, each naming its key; empty when the settings are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, why: String| {
            if !ok {
                problems.push(format!("{key}: {why}"));
            }
        };
        let kafka = &self.kafka;
        check(
            kafka.brokers.split(',').all(|b| is_host_port(b.trim())),
            "kafka.brokers",
            format!("expected host:port[,host:port...], got {:?}", kafka.brokers),
        );
        check(
            kafka
                .topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "kafka.topic_prefix",
            format!(
                "only letters, digits, '.', '_' and '-' are allowed in topic names, got {:?}",
                kafka.topic_prefix
            ),
        );
        check(
            !kafka.client_id.is_empty(),
            "kafka.client_id",
            "must not be empty".into(),
        );
        check(
            (6000..=3_600_000).contains(&kafka.session_timeout_ms),
            "kafka.session_timeout_ms",
            format!("must be 6000..=3600000, got {}", kafka.session_timeout_ms),
        );
        check(
            kafka.message_timeout_ms >= 1000,
            "kafka.message_timeout_ms",
            format!("must be at least 1000, got {}", kafka.message_timeout_ms),
        );
        check(
            kafka.linger_ms <= 1000,
            "kafka.linger_ms",
            format!("must be at most 1000, got {}", kafka.linger_ms),
        );
        check(
            COMPRESSIONS.contains(&kafka.compression.as_str()),
            "kafka.compression",
            format!(
                "expected one of {COMPRESSIONS:?}, got {:?}",
                kafka.compression
            ),
        );
        check(
            kafka.replication_factor >= 1,
            "kafka.replication_factor",
            format!("must be at least 1, got {}", kafka.replication_factor),
        );
        let p = &kafka.partitions;
        for (name, count) in [
            ("raw", p.raw),
            ("verified", p.verified),
            ("rejected", p.rejected),
            ("events", p.events),
            ("dlq", p.dlq),
            ("events_unique", p.events_unique),
            ("actions", p.actions),
            ("suppressions", p.suppressions),
        ] {
            check(
                (1..=10_000).contains(&count),
                &format!("kafka.partitions.{name}"),
                format!("must be 1..=10000, got {count}"),
            );
        }
        let c = &kafka.consumer;
        for (name, value) in [
            (
                "max_in_flight_per_partition",
                c.max_in_flight_per_partition as u64,
            ),
            ("max_batch", c.max_batch as u64),
            ("commit_interval_ms", c.commit_interval_ms),
        ] {
            check(
                value >= 1,
                &format!("kafka.consumer.{name}"),
                "must be at least 1".into(),
            );
        }
        check(
            is_url(&self.schema_registry.url, &["http", "https"]),
            "schema_registry.url",
            format!(
                "expected an http(s) URL, got {:?}",
                self.schema_registry.url
            ),
        );
        check(
            is_url(&self.clickhouse.url, &["http", "https"]),
            "clickhouse.url",
            format!("expected an http(s) URL, got {:?}", self.clickhouse.url),
        );
        check(
            !self.clickhouse.database.is_empty()
                && self
                    .clickhouse
                    .database
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "clickhouse.database",
            format!(
                "expected letters, digits and '_', got {:?}",
                self.clickhouse.database
            ),
        );
        check(
            self.clickhouse.timeout_ms >= 100,
            "clickhouse.timeout_ms",
            format!("must be at least 100, got {}", self.clickhouse.timeout_ms),
        );
        check(
            is_url(&self.redis.url, &["redis", "rediss", "redis+unix", "unix"]),
            "redis.url",
            "expected a redis:// or rediss:// URL".into(),
        );
        for id in self.sources.keys() {
            check(
                !id.is_empty()
                    && id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c)),
                &format!("sources.{id}"),
                "source ids use lower-case letters, digits, '_' and '-' (they appear in URLs)"
                    .into(),
            );
        }
        problems
    }
}

fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn is_url(s: &str, schemes: &[&str]) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => schemes.contains(&scheme) && !rest.is_empty(),
        None => false,
    }
}
