//! Bench (ignored; run by scripts/bench-dedupe.sh): events/s through the dedupe stage next
//! to events/s through a no-op forwarder on the same consumer loop and the same in-order
//! producing (same topics layout, no decoding, no Redis), their ratio, and Redis round
//! trips per event. Both read the same pre-filled input (30 % duplicates), so group join
//! time is excluded: the clock runs from the first output record to the last, by the
//! records' own timestamps (when the stage produced them), not by when a reader saw them:
//! on Kafka the forwarder can be done before a reader's first fetch.

use std::time::Duration;

use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_kafka::{Handler, Topic, TopicNames};
use mailpipe_model::{EmailEvent, EventType};
use mailpipe_settings::Settings;
use mailpipe_stage::{DeadLetters, Emitter, Stage};
use mailpipe_stage_4_dedupe::emit::ForwardAll;
use mailpipe_stage_4_dedupe::{seen, DedupeHandler};
use mailpipe_test_support::{create_topic, dev_settings, unique_name, EventBuilder};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

fn event(seq: usize, copy: usize) -> EmailEvent {
    EventBuilder::new(format!("ev-{seq}"))
        .event_type(EventType::Opened)
        .provider_event("open")
        .at(1_717_000_000_000 + seq as i64)
        .recipient(format!("user{}@example.com", seq % 1000))
        .message_id(format!("msg-{seq}"))
        .campaign_id("spring")
        .tag("newsletter")
        .user_agent("Mozilla/5.0")
        .ip("192.0.2.1")
        .raw_request_id(format!("req-{seq}-{copy}"))
        .raw_event(format!(
            "{{\"sg_event_id\":\"ev-{seq}\",\"event\":\"open\",\"copy\":{copy}}}"
        ))
        .build()
}

/// A fresh topic prefix holding `distinct` events plus 30 % copies; returns settings and
/// the number of input records.
async fn filled(distinct: usize) -> (Settings, usize) {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name("ddbench"));
    settings.redis.key_prefix = format!("{}:", unique_name("ddbench"));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let events_topic = names.name(Topic::Events);
    for t in [Topic::Events, Topic::EventsUnique, Topic::Dlq] {
        create_topic(&names.name(t), 4).await;
    }
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&events_topic, EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap();
    // Filling is not what is measured: wait as long as it takes.
    let mut fill = settings.kafka.clone();
    fill.message_timeout_ms = 600_000;
    let producer = mailpipe_kafka::create_producer(&fill).unwrap();
    let mut pending = Vec::new();
    let mut n = 0;
    for seq in 0..distinct {
        let copies = if seq % 10 < 3 { 2 } else { 1 };
        for copy in 0..copies {
            let e = event(seq, copy);
            let payload = schema.encode(&e, 512).unwrap();
            let key = e.recipient.unwrap();
            loop {
                let r = FutureRecord::to(&events_topic)
                    .key(key.as_bytes())
                    .payload(payload.as_slice());
                match producer.send_result(r) {
                    Ok(d) => break pending.push(d),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            n += 1;
        }
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    (settings, n)
}

/// Runs `handler` on the stage's consumer loop until `expected` outputs arrived; returns
/// the seconds from the first output to the last, by their producer timestamps
/// (milliseconds).
async fn time_run<H: Handler>(settings: &Settings, handler: H, expected: usize) -> f64 {
    let shutdown = CancellationToken::new();
    let stage = {
        let (settings, shutdown) = (settings.clone(), shutdown.clone());
        tokio::spawn(async move {
            mailpipe_stage::run_consumer(Stage::Dedupe, &settings, handler, shutdown).await
        })
    };
    let unique = TopicNames::new(&settings.kafka.topic_prefix).name(Topic::EventsUnique);
    let reader: StreamConsumer =
        mailpipe_kafka::consumer_config(&settings.kafka, &unique_name("reader"))
            .create()
            .unwrap();
    reader.subscribe(&[unique.as_str()]).unwrap();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for n in 0..expected {
        let message = tokio::time::timeout(Duration::from_secs(120), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("output stalled at {n} of {expected} on {unique}"))
            .unwrap();
        let at = message
            .timestamp()
            .to_millis()
            .expect("outputs carry their create time");
        (first, last) = (first.min(at), last.max(at));
    }
    // At least a millisecond, so a run within one millisecond is not infinitely fast.
    let secs = ((last - first).max(1) as f64) / 1000.0;
    shutdown.cancel();
    stage.await.unwrap().unwrap();
    secs
}

#[tokio::test]
#[ignore = "bench: run by scripts/bench-dedupe.sh"]
async fn bench_dedupe_against_a_forwarder() {
    let distinct: usize = std::env::var("DEDUPE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (fwd_settings, inputs) = filled(distinct).await;
    let producer = mailpipe_kafka::create_producer(&fwd_settings.kafka).unwrap();
    let codec = AvroCodec::new(&fwd_settings.schema_registry.url).unwrap();
    let dead_letters = DeadLetters::new(Stage::Dedupe, &fwd_settings, &codec)
        .await
        .unwrap();
    let emitter = Emitter::producing(producer, dead_letters);
    let topic = TopicNames::new(&fwd_settings.kafka.topic_prefix).name(Topic::EventsUnique);
    let forwarder = ForwardAll { emitter, topic };
    let fwd_secs = time_run(&fwd_settings, forwarder, inputs).await;

    let (dd_settings, _) = filled(distinct).await;
    let handler = DedupeHandler::new(&dd_settings).await.unwrap();
    let trips_before = seen::round_trips();
    let dd_secs = time_run(&dd_settings, handler, distinct).await;
    let trips = seen::round_trips() - trips_before;

    let fwd_rate = inputs as f64 / fwd_secs;
    let dd_rate = inputs as f64 / dd_secs;
    println!("inputs: {inputs} ({distinct} distinct ids, 30 % duplicates)");
    println!("no-op forwarder: {fwd_rate:.0} events/s");
    println!("dedupe stage:    {dd_rate:.0} events/s");
    println!("ratio:           {:.2}", dd_rate / fwd_rate);
    println!(
        "redis round trips per event: {:.4} ({trips} round trips)",
        trips as f64 / inputs as f64
    );
}
