//! `mailpipe create-topics` against the real broker: partition counts, the record size the
//! body-carrying topics take, compaction where design.md asks for it, and a second run that
//! leaves everything as it is.

use std::time::Duration;

use mailpipe_kafka::{create_topics, Topic, TopicNames};
use mailpipe_test_support::{dev_settings, unique_name};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

#[tokio::test]
async fn create_topics_sets_partitions_record_size_and_compaction_and_is_idempotent() {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name("topics"));
    // A body limit of its own, so the topic value cannot be a broker default by chance.
    settings.receiver.max_body_bytes = 7 * 1024 * 1024 + 123;
    let max_record = settings.receiver.max_record_bytes();
    assert!(max_record > settings.receiver.max_body_bytes);

    let first = create_topics(&settings.kafka, max_record).await.unwrap();
    assert_eq!(first.len(), Topic::ALL.len());
    assert!(first.iter().all(|(_, created)| *created), "{first:?}");
    let again = create_topics(&settings.kafka, max_record).await.unwrap();
    assert!(again.iter().all(|(_, created)| !*created), "{again:?}");

    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .create()
        .unwrap();
    let names_owned: Vec<String> = Topic::ALL.iter().map(|t| names.name(*t)).collect();
    let resources: Vec<ResourceSpecifier> = names_owned
        .iter()
        .map(|n| ResourceSpecifier::Topic(n))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let described = admin.describe_configs(&resources, &options).await.unwrap();
    for (topic, result) in Topic::ALL.iter().zip(described) {
        let config = result.unwrap_or_else(|e| panic!("describe {topic:?}: {e}"));
        let value = |key: &str| {
            config
                .get(key)
                .and_then(|entry| entry.value.clone())
                .unwrap_or_else(|| panic!("{topic:?} has no {key}"))
        };
        let derived = matches!(
            topic,
            Topic::Verified | Topic::Rejected | Topic::Dlq | Topic::Events | Topic::EventsUnique
        );
        if *topic == Topic::Raw {
            assert_eq!(
                value("max.message.bytes"),
                max_record.to_string(),
                "{topic:?}"
            );
        } else if derived {
            // Records derived from a raw one: the stages' margin on top.
            assert_eq!(
                value("max.message.bytes"),
                settings.receiver.max_derived_record_bytes().to_string(),
                "{topic:?}"
            );
        } else {
            // The broker's default (the local broker's message.max.bytes).
            assert_ne!(
                value("max.message.bytes"),
                max_record.to_string(),
                "{topic:?}"
            );
        }
        let policy = value("cleanup.policy");
        if *topic == Topic::Suppressions {
            assert_eq!(policy, "compact");
        } else {
            assert_eq!(policy, "delete", "{topic:?}");
        }
    }

    // Partition counts as configured.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let partitions = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.partitions().len() as i32)
            .unwrap_or_else(|| panic!("{name} not in metadata"))
    };
    assert_eq!(
        partitions(&names.name(Topic::Raw)),
        settings.kafka.partitions.raw
    );
    assert_eq!(
        partitions(&names.name(Topic::EventsUnique)),
        settings.kafka.partitions.events_unique
    );
    assert_eq!(
        partitions(&names.name(Topic::Suppressions)),
        settings.kafka.partitions.suppressions
    );
}
