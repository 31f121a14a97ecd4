//! Avro records through the real broker and the schema registry, and the registry's
//! refusal of an incompatible schema.

use std::time::Duration;

use mailpipe_avro::{AvroCodec, TopicSchema};
use mailpipe_test_support::{create_topic, dev_settings, schema_registry_url, unique_name};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};

const SCHEMA_V1: &str = r#"{
  "type": "record", "name": "Probe", "namespace": "io.mailpipe.test",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "recipient", "type": "string"},
    {"name": "tags", "type": {"type": "array", "items": "string"}}
  ]
}"#;

/// v1 plus a field without a default: v2 cannot read v1 data.
const SCHEMA_INCOMPATIBLE: &str = r#"{
  "type": "record", "name": "Probe", "namespace": "io.mailpipe.test",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "recipient", "type": "string"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "campaign", "type": "string"}
  ]
}"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Probe {
    id: i64,
    recipient: String,
    tags: Vec<String>,
}

#[tokio::test]
async fn avro_records_round_trip_through_broker_and_registry() {
    let settings = dev_settings();
    let topic = unique_name("avro");
    create_topic(&topic, 2).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let target = TopicSchema::new(&topic, SCHEMA_V1).unwrap();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();
    let sent: Vec<Probe> = (0..20)
        .map(|id| Probe {
            id,
            recipient: format!("user{id}@example.com"),
            tags: vec!["welcome".into(), format!("t{}", id % 3)],
        })
        .collect();
    for probe in &sent {
        let payload = codec.encode(&target, probe).await.unwrap();
        assert_eq!(payload[0], 0, "Confluent magic byte");
        let record = FutureRecord::to(&topic)
            .key(probe.recipient.as_bytes())
            .payload(payload.as_slice());
        mailpipe_kafka::send_and_wait(&producer, record, Duration::from_secs(10))
            .await
            .unwrap();
    }

    let consumer: StreamConsumer =
        mailpipe_kafka::consumer_config(&settings.kafka, &unique_name("group"))
            .create()
            .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records arrive")
            .unwrap();
        let decoded: Probe = codec.decode(message.payload().unwrap()).await.unwrap();
        received.push(decoded);
    }
    received.sort_by_key(|p| p.id);
    assert_eq!(received, sent);
}

#[tokio::test]
async fn incompatible_schema_is_refused_with_409() {
    let subject = format!("{}-value", unique_name("compat"));
    let http = reqwest::Client::new();
    let register = |schema: &str| {
        http.post(format!(
            "{}/subjects/{subject}/versions",
            schema_registry_url()
        ))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
        .send()
    };
    let first = register(SCHEMA_V1).await.unwrap();
    assert_eq!(first.status(), 200);
    let refused = register(SCHEMA_INCOMPATIBLE).await.unwrap();
    assert_eq!(refused.status(), 409);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error_code"], 409, "{body}");

    // The codec surfaces the refusal as an error instead of writing unregistered data.
    let topic = subject.trim_end_matches("-value").to_string();
    let codec = AvroCodec::new(&schema_registry_url()).unwrap();
    let target = TopicSchema::new(&topic, SCHEMA_INCOMPATIBLE).unwrap();
    #[derive(Serialize)]
    struct WithCampaign {
        id: i64,
        recipient: String,
        tags: Vec<String>,
        campaign: String,
    }
    let value = WithCampaign {
        id: 1,
        recipient: "a@example.com".into(),
        tags: vec![],
        campaign: "c".into(),
    };
    assert!(codec.encode(&target, &value).await.is_err());
}
