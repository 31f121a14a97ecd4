//! Bench (`make bench`, ignored otherwise): deliveries per second to 64 local sinks (64
//! targets, each its own port), and the latency the deliver stage adds — from the moment a
//! `webhook` action is on `mail.actions` (its produce acknowledged) to the moment its sink
//! receives the request — p50 and p99 at a steady rate. Figures only, nothing asserted
//! beyond every delivery arriving once.
//!
//! `DELIVER_BENCH_DELIVERIES` (default 20000) for the backlog phase,
//! `DELIVER_BENCH_RATE` (default 500/s) and `DELIVER_BENCH_SECONDS` (default 20) for the
//! latency phase.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema, RULE_ACTION_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_settings::Settings;
use mailpipe_test_support::records::{webhook_action, ActionRecord};
use mailpipe_test_support::{create_topic, dev_settings, env_or, unique_name};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

const TARGETS: usize = 64;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Receipt time of each delivery (by its body, the action's sequence number), and how
/// many requests arrived in all.
#[derive(Default)]
struct Sinks {
    received: Mutex<BTreeMap<u64, Instant>>,
    requests: Mutex<u64>,
}

async fn start_sinks(sinks: Arc<Sinks>) -> Vec<String> {
    let mut urls = Vec::new();
    for _ in 0..TARGETS {
        let sinks = sinks.clone();
        let handler = move |body: Bytes| {
            let sinks = sinks.clone();
            async move {
                let now = Instant::now();
                *sinks.requests.lock().unwrap() += 1;
                if let Ok(seq) = std::str::from_utf8(&body).unwrap_or("").parse::<u64>() {
                    sinks.received.lock().unwrap().entry(seq).or_insert(now);
                }
                "ok"
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        urls.push(format!("http://{addr}/hook"));
    }
    urls
}

fn action(seq: u64, url: &str) -> ActionRecord {
    webhook_action("bench", &format!("ev-{seq}"), url, &seq.to_string())
}

async fn produce(
    producer: &FutureProducer,
    schema: &RegisteredSchema,
    topic: &str,
    seq: u64,
    url: &str,
) -> Instant {
    let a = action(seq, url);
    let payload = schema.encode(&a, 512).unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .key(a.action_id.as_bytes())
                .payload(payload.as_slice()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    Instant::now()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn settings(name: &str) -> Settings {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name(name));
    settings.delivery.redis_prefix = format!("{}:", unique_name(name));
    settings.delivery.secrets = vec![SECRET.into()];
    settings.delivery.allow_targets = vec!["127.0.0.1".into()];
    settings.delivery.target_rate_per_second = 100_000.0;
    settings.delivery.target_concurrency = 16;
    settings
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "bench: make bench"]
async fn bench_deliveries_to_64_targets() {
    let deliveries: u64 = env_or("DELIVER_BENCH_DELIVERIES", 20_000);
    let rate: u64 = env_or("DELIVER_BENCH_RATE", 500);
    let seconds: u64 = env_or("DELIVER_BENCH_SECONDS", 20);

    let sinks = Arc::new(Sinks::default());
    let urls = start_sinks(sinks.clone()).await;
    let settings = settings("deliver-bench");
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let topic = names.name(Topic::Actions);
    create_topic(&topic, 4).await;
    create_topic(&names.name(Topic::Deliveries), 4).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&topic, RULE_ACTION_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();

    // Phase 1: a backlog of deliveries, 64 targets round robin, worked through.
    for seq in 0..deliveries {
        let a = action(seq, &urls[seq as usize % TARGETS]);
        let payload = schema.encode(&a, 512).unwrap();
        loop {
            let record = FutureRecord::to(&topic)
                .key(a.action_id.as_bytes())
                .payload(payload.as_slice());
            match producer.send_result(record) {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let stage = tokio::spawn(mailpipe_stage_7_deliver::run(
        settings.clone(),
        shutdown.clone(),
    ));
    while (sinks.received.lock().unwrap().len() as u64) < deliveries {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "backlog not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backlog = started.elapsed();
    let per_second = deliveries as f64 / backlog.as_secs_f64();

    // Phase 2: a steady rate; latency from the produce acknowledgement to the sink.
    let mut sent: BTreeMap<u64, Instant> = BTreeMap::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = Instant::now();
    let total = rate * seconds;
    for i in 0..total {
        let seq = deliveries + i;
        let at = produce(
            &producer,
            &schema,
            &topic,
            seq,
            &urls[seq as usize % TARGETS],
        )
        .await;
        sent.insert(seq, at);
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    let waited = Instant::now();
    while (sinks.received.lock().unwrap().len() as u64) < deliveries + total {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "steady phase not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    stage.await.unwrap().unwrap();
    let received = sinks.received.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(seq, at)| received[seq].saturating_duration_since(*at))
        .collect();
    latencies.sort_unstable();
    let requests = *sinks.requests.lock().unwrap();
    println!("| deliver stage, {TARGETS} targets (loopback sinks answering 200) | figure |");
    println!("|---|---|");
    println!(
        "| backlog: {deliveries} deliveries | {per_second:.0} deliveries/s ({:.1} s) |",
        backlog.as_secs_f64()
    );
    println!(
        "| steady {rate}/s for {seconds} s: added latency (action on mail.actions -> request at the target) | p50 {} ms, p99 {} ms, max {} ms |",
        percentile(&latencies, 0.5).as_millis(),
        percentile(&latencies, 0.99).as_millis(),
        latencies.last().unwrap().as_millis()
    );
    println!(
        "| requests received / deliveries | {requests} / {} |",
        deliveries + total
    );
    assert_eq!(requests, deliveries + total, "every delivery arrived once");
}
