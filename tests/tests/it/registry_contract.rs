//! The registry contract: our schema handling against the real registry of the local stack
//! (Apicurio Registry's Confluent-compatible API, BACKWARD compatibility enforced), through
//! the same client crate and codec our binaries use: registration, lookups by id, an
//! evolved schema accepted, an incompatible one refused with the subject and what broke,
//! and Avro records through the real broker.

use std::time::Duration;

use mailpipe_avro::{parse_schema, value_subject, AvroCodec, AvroError, TopicSchema};
use mailpipe_test_support::other_client::subject_schema_ids;
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

/// v1 plus a field with a default: reads v1 data (BACKWARD compatible).
const SCHEMA_V2: &str = r#"{
  "type": "record", "name": "Probe", "namespace": "io.mailpipe.test",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "recipient", "type": "string"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "campaign", "type": "string", "default": ""}
  ]
}"#;

/// v2 plus a field without a default: cannot read v2 data.
const SCHEMA_NO_DEFAULT: &str = r#"{
  "type": "record", "name": "Probe", "namespace": "io.mailpipe.test",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "recipient", "type": "string"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "campaign", "type": "string", "default": ""},
    {"name": "channel", "type": "string"}
  ]
}"#;

/// v2 with `id` turned into a string: a long cannot be read as one.
const SCHEMA_TYPE_CHANGED: &str = r#"{
  "type": "record", "name": "Probe", "namespace": "io.mailpipe.test",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "recipient", "type": "string"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "campaign", "type": "string", "default": ""}
  ]
}"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Probe {
    id: i64,
    recipient: String,
    tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ProbeV2 {
    id: i64,
    recipient: String,
    tags: Vec<String>,
    campaign: String,
}

fn probe(id: i64) -> Probe {
    Probe {
        id,
        recipient: format!("user{id}@example.com"),
        tags: vec!["welcome".into(), format!("t{}", id % 3)],
    }
}

#[tokio::test]
async fn register_look_up_evolve_and_refuse_incompatible_changes() {
    let codec = AvroCodec::new(&schema_registry_url()).unwrap();
    let topic = unique_name("contract");
    let subject = value_subject(&topic);
    let schema = |text| TopicSchema::new(&topic, text).unwrap();

    // Registration, as every producer does at start-up: again is a no-op with the same id.
    let v1 = codec.register(&schema(SCHEMA_V1)).await.unwrap();
    let again = codec.register(&schema(SCHEMA_V1)).await.unwrap();
    assert_eq!(again.id(), v1.id(), "registering the same schema twice");
    assert_eq!(subject_schema_ids(&subject).await, [v1.id()]);

    // Lookup by id gives the schema back.
    let fetched = codec.writer_schema(v1.id()).await.unwrap();
    assert_eq!(
        fetched.canonical_form(),
        parse_schema(SCHEMA_V1).unwrap().canonical_form()
    );
    let v1_bytes = v1.encode(&probe(1), 64).unwrap();
    assert_eq!(codec.decode::<Probe>(&v1_bytes).await.unwrap(), probe(1));

    // An evolved schema (a field with a default) is accepted as a new version; records of
    // both versions decode by their own ids.
    let v2 = codec.register(&schema(SCHEMA_V2)).await.unwrap();
    assert_ne!(v2.id(), v1.id());
    assert_eq!(subject_schema_ids(&subject).await, [v1.id(), v2.id()]);
    let with_campaign = ProbeV2 {
        id: 2,
        recipient: "b@example.com".into(),
        tags: vec![],
        campaign: "spring".into(),
    };
    let v2_bytes = v2.encode(&with_campaign, 64).unwrap();
    assert_eq!(
        codec.decode::<ProbeV2>(&v2_bytes).await.unwrap(),
        with_campaign
    );
    assert_eq!(codec.decode::<Probe>(&v1_bytes).await.unwrap(), probe(1));

    // Incompatible changes are refused, naming the subject and what broke; the subject
    // keeps its two versions.
    for (text, broke) in [
        (SCHEMA_NO_DEFAULT, "channel"),
        (SCHEMA_TYPE_CHANGED, "/fields/0"),
    ] {
        let err = codec.register(&schema(text)).await.unwrap_err();
        assert!(matches!(err, AvroError::Refused { .. }), "{err:?}");
        assert!(!err.is_retriable());
        let message = err.to_string();
        assert!(message.contains(&subject), "{message}");
        assert!(message.contains(broke), "{message}");
    }
    assert_eq!(subject_schema_ids(&subject).await, [v1.id(), v2.id()]);

    // The one-shot encoder registers on first use and refuses the same way.
    #[derive(Serialize)]
    struct WithChannel {
        id: i64,
        recipient: String,
        tags: Vec<String>,
        campaign: String,
        channel: String,
    }
    let value = WithChannel {
        id: 1,
        recipient: "a@example.com".into(),
        tags: vec![],
        campaign: String::new(),
        channel: "email".into(),
    };
    assert!(codec
        .encode(&schema(SCHEMA_NO_DEFAULT), &value)
        .await
        .is_err());
}

#[tokio::test]
async fn a_writer_schema_registered_under_another_topic_keeps_its_id() {
    // What the dedupe stage does for mail.events.unique: the same schema, a second subject.
    let codec = AvroCodec::new(&schema_registry_url()).unwrap();
    let topic = unique_name("events");
    let v1 = codec
        .register(&TopicSchema::new(&topic, SCHEMA_V1).unwrap())
        .await
        .unwrap();
    let forwarded = unique_name("events-unique");
    assert!(subject_schema_ids(&value_subject(&forwarded))
        .await
        .is_empty());
    let id = codec
        .register_under_topic(&forwarded, v1.id())
        .await
        .unwrap();
    assert_eq!(id, v1.id(), "schema ids name contents, not subjects");
    assert_eq!(subject_schema_ids(&value_subject(&forwarded)).await, [id]);

    // An id the registry never gave out is a permanent error, not an outage.
    let err = codec
        .register_under_topic(&forwarded, 999_999)
        .await
        .unwrap_err();
    assert!(!err.is_retriable(), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retriable_error() {
    let codec = AvroCodec::new("http://127.0.0.1:1/apis/ccompat/v7").unwrap();
    let err = codec
        .register(&TopicSchema::new("anything", SCHEMA_V1).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err:?}");
    let err = codec
        .decode::<Probe>(&[0, 0, 0, 0, 7, 2])
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err:?}");
}

#[tokio::test]
async fn avro_records_round_trip_through_broker_and_registry() {
    let settings = dev_settings();
    let topic = unique_name("avro");
    create_topic(&topic, 2).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let target = TopicSchema::new(&topic, SCHEMA_V1).unwrap();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();
    let sent: Vec<Probe> = (0..20).map(probe).collect();
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

/// The email event schema's evolution (v1 → the current one, with the enrichment fields)
/// passes the registry's BACKWARD check, and a v1 record still decodes as an event after
/// the subject moved on.
#[tokio::test]
async fn the_email_event_schema_evolves_backward_compatibly() {
    const V1: &str = include_str!("../../../schemas/history/email_event.v1.avsc");
    let codec = AvroCodec::new(&schema_registry_url()).unwrap();
    let topic = unique_name("events-evolution");
    let subject = value_subject(&topic);
    let v1 = codec
        .register(&TopicSchema::new(&topic, V1).unwrap())
        .await
        .unwrap();
    let current = codec
        .register(&TopicSchema::new(&topic, mailpipe_avro::EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap_or_else(|e| panic!("the registry refused the evolved event schema: {e}"));
    assert_ne!(v1.id(), current.id());
    // Ids are global per content (another test may have registered either text first), so
    // the subject's list is compared as a set.
    let mut ids = subject_schema_ids(&subject).await;
    ids.sort_unstable();
    let mut want = [v1.id(), current.id()];
    want.sort_unstable();
    assert_eq!(ids, want);

    // A v1 record: an event as v1 knew it.
    #[derive(Serialize)]
    struct V1Probe<'a> {
        event_id: &'a str,
        event_type: mailpipe_model::EventType,
        provider_event: &'a str,
        provider: &'a str,
        source: &'a str,
        occurred_at: i64,
        received_at: i64,
        recipient: Option<&'a str>,
        recipient_domain: Option<&'a str>,
        message_id: Option<&'a str>,
        campaign_id: Option<&'a str>,
        tags: Vec<String>,
        metadata: std::collections::BTreeMap<String, String>,
        reject_reason: Option<&'a str>,
        bounce_class: Option<&'a str>,
        url: Option<&'a str>,
        user_agent: Option<&'a str>,
        ip: Option<&'a str>,
        geo: Option<()>,
        mta_response: Option<&'a str>,
        description: Option<&'a str>,
        raw_request_id: &'a str,
        raw_event: &'a str,
    }
    let old = V1Probe {
        event_id: "ev-old",
        event_type: mailpipe_model::EventType::Opened,
        provider_event: "open",
        provider: "sendgrid",
        source: "main",
        occurred_at: 1_700_000_000_000,
        received_at: 1_700_000_001_000,
        recipient: Some("old@example.com"),
        recipient_domain: Some("example.com"),
        message_id: None,
        campaign_id: None,
        tags: vec![],
        metadata: Default::default(),
        reject_reason: None,
        bounce_class: None,
        url: None,
        user_agent: Some("Mozilla/5.0"),
        ip: None,
        geo: None,
        mta_response: None,
        description: None,
        raw_request_id: "req-old",
        raw_event: "{}",
    };
    let bytes = v1.encode(&old, 256).unwrap();
    let event: mailpipe_model::EmailEvent = codec.decode(&bytes).await.unwrap();
    assert_eq!(event.event_id, "ev-old");
    assert_eq!(event.event_type, mailpipe_model::EventType::Opened);
    assert_eq!(event.user_agent.as_deref(), Some("Mozilla/5.0"));
    assert_eq!(
        (
            event.client_name,
            event.device_class,
            event.machine_open,
            event.geo_source
        ),
        (None, None, None, None)
    );
}
