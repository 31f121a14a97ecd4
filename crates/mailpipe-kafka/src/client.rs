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
/// nothing already on the topic is skipped.
pub fn consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
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

    #[test]
    fn producer_defaults_are_durable() {
        let c = producer_config(&kafka());
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("partitioner"), Some("murmur2_random"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
    }

    #[test]
    fn consumer_never_auto_commits() {
        let c = consumer_config(&kafka(), "g");
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
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
