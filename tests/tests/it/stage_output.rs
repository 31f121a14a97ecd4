//! The stages' output path against the real broker and registry (issue #15, "Hardening"):
//!
//! - a forged generic webhook of 1.5 MB (accepted by the receiver, whose limit is 5 MiB) is
//!   rejected by verify, which goes on: a correctly signed request after it is verified;
//! - an output the topic refuses as too large (broker side) and one over the producer's own
//!   limit (client side) become `unproducible` dead letters with the input's coordinates and
//!   a bounded head of its value, and the stage goes on;
//! - with a producer queue of 4 records, normalize's events of one recipient still come out
//!   in input order.

use std::collections::BTreeMap;
use std::time::Duration;

use mailpipe_avro::records::RejectedRecord;
use mailpipe_avro::records::{DeadLetterRecord, Header, RawRecord, VerifiedKind, VerifiedRecord};
use mailpipe_avro::{AvroCodec, TopicSchema, RAW_REQUEST_SCHEMA, VERIFIED_REQUEST_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_settings::Settings;
use mailpipe_stage::UNPRODUCIBLE_PAYLOAD_BYTES;
use mailpipe_test_support::{consume_exactly, create_topic, dev_settings, unique_name, Rng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

/// The generic source's key in `config/mailpipe.toml`.
const GENERIC_KEY: &str = "dev-only-generic-hmac-key";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` bytes of random letters and digits: lz4 cannot shrink them much, so the record
/// really is that large on the wire too.
fn incompressible(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// A raw generic webhook as the receiver writes it; `signed`: with the right `X-Signature`.
fn generic_raw(id: &str, body: Vec<u8>, signed: bool) -> RawRecord {
    let signature = if signed {
        hex(&mailpipe_verify_core::testing::hmac_sha256(
            GENERIC_KEY.as_bytes(),
            &[&body],
        ))
    } else {
        "0".repeat(64)
    };
    let now_ms = mailpipe_stage::now_ms();
    RawRecord {
        request_id: id.into(),
        received_at: now_ms,
        provider: "generic".into(),
        source: "generic".into(),
        method: "POST".into(),
        path: "/webhooks/generic".into(),
        query: String::new(),
        headers: vec![
            Header {
                name: "content-type".into(),
                value: b"application/json".to_vec(),
            },
            Header {
                name: "x-signature".into(),
                value: signature.into_bytes(),
            },
        ],
        remote_addr: Some("127.0.0.1".into()),
        body,
    }
}

fn generic_body(events: &[(&str, &str)], pad: usize) -> Vec<u8> {
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|(id, recipient)| {
            serde_json::json!({"event_id": id, "event_type": "delivered",
                "recipient": recipient, "occurred_at": "2026-11-26T17:00:00Z",
                "pad": incompressible(pad, 7)})
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

/// A producer for the test's inputs that takes the largest raw record.
fn input_producer(settings: &Settings) -> FutureProducer {
    let mut kafka = settings.kafka.clone();
    kafka.producer_librdkafka.clear();
    mailpipe_kafka::producer_config_for_records_up_to(&kafka, 16_000_000)
        .create()
        .unwrap()
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    let record = FutureRecord::to(topic)
        .key(key.as_bytes())
        .partition(0)
        .payload(payload);
    mailpipe_kafka::send_and_wait(producer, record, Duration::from_secs(30))
        .await
        .unwrap();
}

/// Creates `name` with one partition and `max.message.bytes` when given.
async fn create_topic_limited(settings: &Settings, name: &str, max_message_bytes: &str) {
    let admin: AdminClient<DefaultClientContext> =
        mailpipe_kafka::client::admin_config(&settings.kafka)
            .create()
            .unwrap();
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1))
        .set("max.message.bytes", max_message_bytes);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&[topic], &options).await.unwrap() {
        result.unwrap_or_else(|(topic, code)| panic!("creating topic {topic}: {code}"));
    }
}

fn prefixed(prefix: &str) -> (Settings, TopicNames) {
    prefixed_in(prefix, true)
}

/// Settings with a unique topic prefix, in exactly-once mode or not (both paths produce
/// differently: the loop's transactions, or the emitter itself with its retries).
fn prefixed_in(prefix: &str, exactly_once: bool) -> (Settings, TopicNames) {
    let mut settings = dev_settings();
    settings.kafka.exactly_once = exactly_once;
    settings.kafka.topic_prefix = format!("{}.", unique_name(prefix));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    (settings, names)
}

/// The outside report: a forged 1.5 MB generic webhook (the receiver takes up to 5 MiB and
/// answers 200) used to stop verify for good (its `mail.rejected` record was over the
/// producer's 1 MB default). Topics as `mailpipe create-topics` makes them.
#[tokio::test]
async fn a_forged_request_of_one_and_a_half_megabytes_is_rejected_and_verify_goes_on() {
    let (settings, names) = prefixed("bigforged");
    mailpipe_kafka::create_topics(&settings.kafka, settings.receiver.max_record_bytes())
        .await
        .unwrap();
    let (raw_topic, verified_topic, rejected_topic) = (
        names.name(Topic::Raw),
        names.name(Topic::Verified),
        names.name(Topic::Rejected),
    );
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&raw_topic, RAW_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = input_producer(&settings);
    let forged = generic_raw(
        "forged-big",
        generic_body(&[("e-big", "a@example.com")], 1_500_000),
        false,
    );
    let signed = generic_raw(
        "signed-after",
        generic_body(&[("e-ok", "b@example.com")], 10),
        true,
    );
    for raw in [&forged, &signed] {
        let payload = schema.encode(raw, raw.body.len() + 1024).unwrap();
        produce(&producer, &raw_topic, &raw.request_id, &payload).await;
    }

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_2_verify::run(
        settings.clone(),
        shutdown.clone(),
    ));
    let rejected = consume_exactly(&rejected_topic, 1).await;
    let record: RejectedRecord = codec.decode(&rejected[0].1).await.unwrap();
    assert_eq!(record.request_id, "forged-big");
    assert_eq!(record.reason, "bad_signature");
    assert_eq!(record.body, forged.body, "the whole body is kept");
    let verified = consume_exactly(&verified_topic, 1).await;
    let record: VerifiedRecord = codec.decode(&verified[0].1).await.unwrap();
    assert_eq!(record.request_id, "signed-after");
    assert!(!stage.is_finished(), "verify stopped: {:?}", stage.await);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

/// A `mail.rejected` that takes 1 MB at most (a cluster's default) refuses the 1.5 MB
/// rejected record: the input becomes an `unproducible` dead letter, and verify goes on.
#[tokio::test]
async fn an_output_the_topic_refuses_becomes_a_dead_letter_and_verify_goes_on() {
    output_refused_by_the_topic(true).await;
}

#[tokio::test]
async fn at_least_once_an_output_the_topic_refuses_becomes_a_dead_letter() {
    output_refused_by_the_topic(false).await;
}

async fn output_refused_by_the_topic(exactly_once: bool) {
    let (settings, names) = prefixed_in("refused", exactly_once);
    let (raw_topic, verified_topic, rejected_topic, dlq_topic) = (
        names.name(Topic::Raw),
        names.name(Topic::Verified),
        names.name(Topic::Rejected),
        names.name(Topic::Dlq),
    );
    create_topic(&raw_topic, 1).await;
    create_topic(&verified_topic, 1).await;
    create_topic_limited(&settings, &rejected_topic, "1000000").await;
    create_topic(&dlq_topic, 1).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&raw_topic, RAW_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = input_producer(&settings);
    let forged = generic_raw(
        "forged-refused",
        generic_body(&[("e-big", "a@example.com")], 1_500_000),
        false,
    );
    let forged_payload = schema.encode(&forged, forged.body.len() + 1024).unwrap();
    produce(&producer, &raw_topic, "forged-refused", &forged_payload).await;
    let signed = generic_raw(
        "signed-after",
        generic_body(&[("e-ok", "b@example.com")], 10),
        true,
    );
    let payload = schema.encode(&signed, 4096).unwrap();
    produce(&producer, &raw_topic, "signed-after", &payload).await;

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_2_verify::run(
        settings.clone(),
        shutdown.clone(),
    ));
    let dead = consume_exactly(&dlq_topic, 1).await;
    assert_eq!(dead[0].0.as_deref(), Some(b"forged-refused".as_slice()));
    let letter: DeadLetterRecord = codec.decode(&dead[0].1).await.unwrap();
    assert_eq!(
        (letter.stage.as_str(), letter.reason.as_str()),
        ("verify", "unproducible")
    );
    assert_eq!(
        (letter.topic.as_str(), letter.partition, letter.offset),
        (raw_topic.as_str(), 0, 0)
    );
    assert_eq!(letter.raw_request_id.as_deref(), Some("forged-refused"));
    assert_eq!(letter.provider.as_deref(), Some("generic"));
    // A mail.raw record carries the request's credentials: its dead letter points at it
    // and copies nothing of it.
    assert!(
        letter.payload.is_empty(),
        "{} bytes copied",
        letter.payload.len()
    );
    assert!(letter.detail.contains(&rejected_topic), "{}", letter.detail);
    assert!(
        letter.detail.contains("payload not copied"),
        "{}",
        letter.detail
    );
    assert!(letter.detail.contains("too large"), "{}", letter.detail);
    let verified = consume_exactly(&verified_topic, 1).await;
    let record: VerifiedRecord = codec.decode(&verified[0].1).await.unwrap();
    assert_eq!(record.request_id, "signed-after");
    consume_exactly(&rejected_topic, 0).await;
    assert!(!stage.is_finished(), "verify stopped: {:?}", stage.await);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

fn verified_generic(id: &str, body: Vec<u8>) -> VerifiedRecord {
    VerifiedRecord {
        request_id: id.into(),
        received_at: 1_717_000_000_000,
        provider: "generic".into(),
        source: "generic".into(),
        method: "POST".into(),
        path: "/webhooks/generic".into(),
        query: String::new(),
        headers: vec![Header {
            name: "content-type".into(),
            value: b"application/json".to_vec(),
        }],
        remote_addr: None,
        body,
        verified_at: 1_717_000_000_001,
        kind: VerifiedKind::Events,
        control_action: None,
        key_index: Some(0),
    }
}

/// Writes `inputs` to a fresh `mail.verified` and starts normalize with `librdkafka`
/// producer properties; returns the settings, topic names, codec and the stage.
async fn normalize_with(
    exactly_once: bool,
    prefix: &str,
    producer_properties: &[(&str, &str)],
    inputs: &[VerifiedRecord],
) -> (
    Settings,
    TopicNames,
    Vec<Vec<u8>>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let (mut settings, names) = prefixed_in(prefix, exactly_once);
    create_topic(&names.name(Topic::Verified), 1).await;
    create_topic(&names.name(Topic::Events), 2).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let verified_topic = names.name(Topic::Verified);
    let schema = codec
        .register(&TopicSchema::new(&verified_topic, VERIFIED_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = input_producer(&settings);
    let mut payloads = Vec::new();
    for record in inputs {
        let payload = schema.encode(record, record.body.len() + 1024).unwrap();
        let r = FutureRecord::to(&verified_topic)
            .key(record.request_id.as_bytes())
            .payload(payload.as_slice());
        // Not awaited one by one: the inputs are many in the ordering test.
        producer.send_result(r).map_err(|(e, _)| e).unwrap();
        payloads.push(payload);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    for (key, value) in producer_properties {
        settings
            .kafka
            .producer_librdkafka
            .insert(key.to_string(), value.to_string());
    }
    let shutdown = CancellationToken::new();
    let run = mailpipe_stage_3_normalize::run(settings.clone(), shutdown.clone());
    let stage = tokio::spawn(async move { run.await.map_err(|e| format!("{e:#}")) });
    (settings, names, payloads, shutdown, stage)
}

/// An event over the producer's own limit (`message.max.bytes`, checked before anything is
/// sent) dead-letters its input as `unproducible`; the next input's event is written.
#[tokio::test]
async fn an_output_over_the_producers_limit_becomes_a_dead_letter_and_normalize_goes_on() {
    output_over_the_producers_limit(true).await;
}

#[tokio::test]
async fn at_least_once_an_output_over_the_producers_limit_becomes_a_dead_letter() {
    output_over_the_producers_limit(false).await;
}

async fn output_over_the_producers_limit(exactly_once: bool) {
    let inputs = [
        verified_generic(
            "too-big",
            generic_body(&[("e-big", "a@example.com")], 400_000),
        ),
        verified_generic("fine", generic_body(&[("e-ok", "b@example.com")], 10)),
    ];
    let (settings, names, payloads, shutdown, stage) = normalize_with(
        exactly_once,
        "unproducible",
        &[("message.max.bytes", "300000")],
        &inputs,
    )
    .await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let dead = consume_exactly(&names.name(Topic::Dlq), 1).await;
    let letter: DeadLetterRecord = codec.decode(&dead[0].1).await.unwrap();
    assert_eq!(
        (letter.stage.as_str(), letter.reason.as_str()),
        ("normalize", "unproducible")
    );
    assert_eq!(
        (letter.topic.as_str(), letter.partition, letter.offset),
        (names.name(Topic::Verified).as_str(), 0, 0)
    );
    assert_eq!(letter.raw_request_id.as_deref(), Some("too-big"));
    assert_eq!(letter.payload, payloads[0][..UNPRODUCIBLE_PAYLOAD_BYTES]);
    assert!(
        letter.detail.contains(&names.name(Topic::Events)),
        "{}",
        letter.detail
    );
    let events = consume_exactly(&names.name(Topic::Events), 1).await;
    let event: EmailEvent = codec.decode(&events[0].1).await.unwrap();
    assert_eq!(event.raw_request_id, "fine");
    assert!(!stage.is_finished(), "normalize stopped: {:?}", stage.await);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

/// With room for only 4 records in the producer's queue, most records of a batch meet a
/// full queue: they must wait for room in input order, not be retried behind later ones.
#[tokio::test]
async fn a_full_producer_queue_keeps_each_recipients_events_in_input_order() {
    full_producer_queue(true).await;
}

#[tokio::test]
async fn at_least_once_a_full_producer_queue_keeps_each_recipients_events_in_input_order() {
    full_producer_queue(false).await;
}

async fn full_producer_queue(exactly_once: bool) {
    const INPUTS: usize = 300;
    let recipients = ["a@example.com", "b@example.com", "c@example.com"];
    let inputs: Vec<VerifiedRecord> = (0..INPUTS)
        .map(|i| {
            let id = format!("e-{i:04}");
            let recipient = recipients[i % recipients.len()];
            verified_generic(&format!("req-{i}"), generic_body(&[(&id, recipient)], 10))
        })
        .collect();
    let (settings, names, _, shutdown, stage) = normalize_with(
        exactly_once,
        "queuefull",
        &[("queue.buffering.max.messages", "4")],
        &inputs,
    )
    .await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let events = consume_exactly(&names.name(Topic::Events), INPUTS).await;
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, payload) in &events {
        let event: EmailEvent = codec.decode(payload).await.unwrap();
        let provider_id = serde_json::from_str::<serde_json::Value>(&event.raw_event).unwrap()
            ["event_id"]
            .as_str()
            .unwrap()
            .to_string();
        seen.entry(event.recipient.unwrap())
            .or_default()
            .push(provider_id);
    }
    for (recipient, ids) in &seen {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, &sorted, "{recipient}: events out of input order");
    }
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), INPUTS);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}
