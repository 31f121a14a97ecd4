//! Test helpers (dev-dependency only): where the local stack is, and unique names so tests
//! never share a topic, consumer group or database.
//!
//! Addresses come from the same `MAILPIPE_*` env vars the binaries read (set by
//! `scripts/test.sh`), with the local defaults of design.md §3.6.

use std::path::Path;
use std::time::Duration;

use mailpipe_settings::Settings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// The committed development config plus `MAILPIPE_*` env, as the binaries load it.
pub fn dev_settings() -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/mailpipe.toml");
    Settings::load_from(Some(&path)).expect("config/mailpipe.toml and MAILPIPE_* env are valid")
}

/// Creates a topic for one test; panics with the broker's answer if that fails.
pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&[topic], &options)
        .await
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating topic {topic}: {code}"));
    }
}

/// Kafka bootstrap servers.
pub fn kafka_brokers() -> String {
    env_or("MAILPIPE_KAFKA__BROKERS", "127.0.0.1:9092")
}

/// Schema registry base URL.
pub fn schema_registry_url() -> String {
    env_or("MAILPIPE_SCHEMA_REGISTRY__URL", "http://127.0.0.1:8081")
}

/// ClickHouse HTTP URL.
pub fn clickhouse_url() -> String {
    env_or("MAILPIPE_CLICKHOUSE__URL", "http://127.0.0.1:8123")
}

/// Redis URL.
pub fn redis_url() -> String {
    env_or("MAILPIPE_REDIS__URL", "redis://127.0.0.1:6379")
}

/// A name no other test (or earlier run) uses: `<prefix>-<uuid v7 simple>`. Only letters,
/// digits, '-' and '_', so it is valid as a topic, group, subject or (with `_`) database.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_safe_identifiers() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
