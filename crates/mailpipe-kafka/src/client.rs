//! librdkafka client settings: our producer defaults (durable, ordered, Java-compatible
//! partitioning) and the consumer settings the loop relies on (no auto commit).

use std::collections::BTreeMap;

use mailpipe_settings::KafkaSettings;
use rdkafka::ClientConfig;

/// Producer settings: `acks=all` + idempotence (no loss, no reordering on retry), lz4 by
/// default, a small linger, `murmur2_random` so keys land where Java clients put them, and
/// a bounded delivery timeout so a caller is never left waiting for ever.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", &settings.compression)
        .set("linger.ms", settings.linger_ms.to_string())
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            settings.message_timeout_ms.to_string(),
        );
    apply_overrides(&mut config, &settings.librdkafka);
    apply_overrides(&mut config, &settings.producer_librdkafka);
    config
}

/// Consumer settings for [`crate::consumer::run`]: offsets are committed only by the loop
/// (auto commit and auto offset store off); a new group starts at the earliest offset so
/// nothing already on the topic is skipped; only committed records are read
/// (`read_committed`: never an output of an aborted or still open transaction).
pub fn consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set(
            "session.timeout.ms",
            settings.session_timeout_ms.to_string(),
        )
        // Keep heartbeats well inside a short (local) session timeout.
        .set(
            "heartbeat.interval.ms",
            (settings.session_timeout_ms / 4).max(500).to_string(),
        );
    apply_overrides(&mut config, &settings.librdkafka);
    apply_overrides(&mut config, &settings.consumer_librdkafka);
    config
}

/// [`producer_config`] able to produce records of up to `max_record_bytes`
/// (`message.max.bytes`, librdkafka's default being 1 MB), unless the operator set that
/// property. The stages pass `ReceiverSettings::max_derived_record_bytes`, so a copy of
/// any request the receiver accepted can be forwarded.
pub fn producer_config_for_records_up_to(
    settings: &KafkaSettings,
    max_record_bytes: u64,
) -> ClientConfig {
    let mut config = producer_config(settings);
    if !operator_set(settings, &settings.producer_librdkafka, "message.max.bytes") {
        config.set("message.max.bytes", max_record_bytes.to_string());
    }
    config
}

/// librdkafka's consumer defaults: `max.partition.fetch.bytes`, `fetch.max.bytes`,
/// `receive.message.max.bytes`.
const DEFAULT_PARTITION_FETCH_BYTES: u64 = 1_048_576;
const DEFAULT_FETCH_BYTES: u64 = 52_428_800;
const DEFAULT_RECEIVE_BYTES: u64 = 100_000_000;
/// Room for the protocol's framing of a fetch response above `fetch.max.bytes`
/// (librdkafka requires at least 512 bytes).
const FETCH_RESPONSE_OVERHEAD_BYTES: u64 = 64 * 1024;

/// [`consumer_config`] whose fetch sizes hold a record of `max_record_bytes` whole:
/// `max.partition.fetch.bytes` and `fetch.max.bytes` at least that (never below
/// librdkafka's defaults), and `receive.message.max.bytes` above `fetch.max.bytes` plus
/// the response framing. A property the operator set is kept; `receive.message.max.bytes`
/// then follows the operator's `fetch.max.bytes`.
pub fn consumer_config_for_records_up_to(
    settings: &KafkaSettings,
    group_id: &str,
    max_record_bytes: u64,
) -> ClientConfig {
    let mut config = consumer_config(settings, group_id);
    let by_operator = |key: &str| operator_set(settings, &settings.consumer_librdkafka, key);
    if !by_operator("max.partition.fetch.bytes") {
        let bytes = max_record_bytes.max(DEFAULT_PARTITION_FETCH_BYTES);
        config.set("max.partition.fetch.bytes", bytes.to_string());
    }
    if !by_operator("fetch.max.bytes") {
        let bytes = max_record_bytes.max(DEFAULT_FETCH_BYTES);
        config.set("fetch.max.bytes", bytes.to_string());
    }
    if !by_operator("receive.message.max.bytes") {
        let fetch = config
            .get("fetch.max.bytes")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(DEFAULT_FETCH_BYTES);
        let bytes = (fetch + FETCH_RESPONSE_OVERHEAD_BYTES).max(DEFAULT_RECEIVE_BYTES);
        config.set("receive.message.max.bytes", bytes.to_string());
    }
    config
}

/// Whether the operator gave `key` in `[kafka.librdkafka]` or the role's own section.
fn operator_set(settings: &KafkaSettings, role: &BTreeMap<String, String>, key: &str) -> bool {
    settings.librdkafka.contains_key(key) || role.contains_key(key)
}

/// Settings for admin clients (topic creation).
pub fn admin_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    apply_overrides(&mut config, &settings.librdkafka);
    config
}

fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", &settings.client_id);
    config
}

/// `[kafka.librdkafka]` entries, then the role's own (`[kafka.producer_librdkafka]` or
/// `[kafka.consumer_librdkafka]`), win over everything above (SASL, TLS, tuning).
fn apply_overrides(config: &mut ClientConfig, properties: &BTreeMap<String, String>) {
    for (key, value) in properties {
        config.set(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpipe_settings::Settings;

    fn kafka() -> KafkaSettings {
        Settings::load_from(None).unwrap().kafka
    }

    /// Managed clusters (Confluent Cloud, MSK) want SASL over TLS: the build must carry
    /// librdkafka's TLS, or the client refuses the setting at creation.
    #[test]
    fn sasl_over_tls_is_a_configuration_the_client_accepts() {
        let mut k = kafka();
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "mailpipe-verify"),
            ("sasl.password", "not-a-real-secret"),
        ] {
            k.librdkafka.insert(key.to_string(), value.to_string());
        }
        let created: Result<rdkafka::producer::BaseProducer, _> = producer_config(&k).create();
        assert!(created.is_ok(), "{:?}", created.err());
    }

    #[test]
    fn producer_defaults_are_durable() {
        let c = producer_config(&kafka());
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
    }

    #[test]
    fn consumer_never_auto_commits_and_reads_only_committed_records() {
        let c = consumer_config(&kafka(), "g");
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
    }

    #[test]
    fn sized_producers_take_the_largest_record_unless_the_operator_set_a_limit() {
        let mut k = kafka();
        let c = producer_config_for_records_up_to(&k, 5_500_000);
        assert_eq!(c.get("message.max.bytes"), Some("5500000"));
        assert_eq!(c.get("acks"), Some("all"));
        k.producer_librdkafka
            .insert("message.max.bytes".into(), "2000000".into());
        let c = producer_config_for_records_up_to(&k, 5_500_000);
        assert_eq!(c.get("message.max.bytes"), Some("2000000"));
    }

    #[test]
    fn sized_consumers_fetch_the_largest_record_whole() {
        let mut k = kafka();
        let get = |c: &ClientConfig, key: &str| -> u64 { c.get(key).unwrap().parse().unwrap() };
        let c = consumer_config_for_records_up_to(&k, "g", 5_500_000);
        assert_eq!(get(&c, "max.partition.fetch.bytes"), 5_500_000);
        assert_eq!(get(&c, "fetch.max.bytes"), DEFAULT_FETCH_BYTES);
        assert!(get(&c, "receive.message.max.bytes") > get(&c, "fetch.max.bytes") + 512);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        // Above librdkafka's defaults every size grows with the record.
        let c = consumer_config_for_records_up_to(&k, "g", 200_000_000);
        assert_eq!(get(&c, "max.partition.fetch.bytes"), 200_000_000);
        assert_eq!(get(&c, "fetch.max.bytes"), 200_000_000);
        assert!(get(&c, "receive.message.max.bytes") > 200_000_512);
        // The operator's fetch size is kept, and the receive size follows it.
        k.consumer_librdkafka
            .insert("fetch.max.bytes".into(), "300000000".into());
        let c = consumer_config_for_records_up_to(&k, "g", 5_500_000);
        assert_eq!(get(&c, "fetch.max.bytes"), 300_000_000);
        assert!(get(&c, "receive.message.max.bytes") > 300_000_512);
        // A configuration librdkafka accepts (it checks the sizes against each other when
        // the client is created; no broker is contacted on port 1).
        k.brokers = "127.0.0.1:1".into();
        let c = consumer_config_for_records_up_to(&k, "g", 5_500_000);
        let _: rdkafka::consumer::BaseConsumer = c.create().unwrap();
    }

    #[test]
    fn librdkafka_overrides_win() {
        let mut k = kafka();
        k.librdkafka.insert("linger.ms".into(), "50".into());
        assert_eq!(producer_config(&k).get("linger.ms"), Some("50"));
    }

    #[test]
    fn role_properties_reach_only_their_role_and_win_over_shared_ones() {
        let mut k = kafka();
        k.librdkafka.insert("client.rack".into(), "shared".into());
        k.producer_librdkafka
            .insert("batch.num.messages".into(), "1".into());
        k.consumer_librdkafka
            .insert("fetch.wait.max.ms".into(), "100".into());
        k.consumer_librdkafka
            .insert("client.rack".into(), "consumers".into());
        let (producer, consumer) = (producer_config(&k), consumer_config(&k, "g"));
        assert_eq!(producer.get("batch.num.messages"), Some("1"));
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
        assert_eq!(producer.get("client.rack"), Some("shared"));
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(consumer.get("batch.num.messages"), None);
        assert_eq!(consumer.get("client.rack"), Some("consumers"));
        let admin = admin_config(&k);
        assert_eq!(admin.get("client.rack"), Some("shared"));
        assert_eq!(admin.get("batch.num.messages"), None);
    }
}
