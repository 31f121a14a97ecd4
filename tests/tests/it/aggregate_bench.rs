//! Bench (ignored; run by scripts/bench-aggregate.sh):
//! 1. rows/s into ClickHouse through the aggregate stage (consumer loop, Avro decode,
//!    batched insert into `email_events`, window recomputation, commit) from a pre-filled
//!    `mail.events.unique`, next to a plain bulk insert of the same rows with the
//!    `clickhouse` crate (same batch size), alternated for AGG_BENCH_ROUNDS rounds (3),
//!    and the ratio of the medians;
//! 2. latency from producing to `mail.events.unique` to the row being queryable in
//!    `email_events`, at a steady 5,000 events/s (AGG_BENCH_RATE), p50/p99/max;
//!
//! and, to tell where the stage's time goes, the consumer loop alone over the same topic
//! and the Avro decoding alone (field by field, and the generic way).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_clickhouse::{load_migrations, migrate};
use mailpipe_kafka::consumer::{Delivery, Handler, HandlerError, LoopConfig};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{EmailEvent, EventType};
use mailpipe_settings::Settings;
use mailpipe_stage::EventReader;
use mailpipe_stage::Stage;
use mailpipe_stage_5_aggregate::row::EventRow;
use mailpipe_test_support::{
    committed_total, create_topic, dev_settings, env_or, unique_name, EventBuilder,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;

fn event(seq: usize, occurred_at: i64) -> EmailEvent {
    let types = [EventType::Delivered, EventType::Opened, EventType::Clicked];
    EventBuilder::new(format!("bench-{seq}"))
        .event_type(types[seq % types.len()])
        .provider_event("open")
        .source("sendgrid")
        .at(occurred_at)
        .recipient(format!("user{}@example.com", seq % 5_000))
        .message_id(format!("msg-{seq}"))
        .campaign_id(format!("campaign-{}", seq % 10))
        .tag("newsletter")
        .metadata("seq", seq.to_string())
        .url("https://example.com/landing")
        .user_agent("Mozilla/5.0 (X11; Linux x86_64)")
        .ip("192.0.2.1")
        .raw_request_id(format!("req-{seq}"))
        .raw_event(format!(
            "{{\"sg_event_id\":\"bench-{seq}\",\"event\":\"open\"}}"
        ))
        .build()
}

struct Bench {
    settings: Settings,
    input: String,
    schema: RegisteredSchema,
    producer: FutureProducer,
}

async fn bench(name: &str) -> Bench {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name(name));
    settings.clickhouse.database = unique_name(name);
    settings.aggregate.retention_months = 0;
    settings.kafka.consumer.max_batch = 5_000;
    settings.kafka.message_timeout_ms = 600_000;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let input = names.name(Topic::EventsUnique);
    create_topic(&input, PARTITIONS).await;
    // The stage also loads the rules stage's records (none here).
    create_topic(&names.name(Topic::Actions), 1).await;
    create_topic(&names.name(Topic::Suppressions), 1).await;
    create_topic(&names.name(Topic::Deliveries), 1).await;
    create_topic(&names.name(Topic::Rejected), 1).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/clickhouse");
    migrate(&settings.clickhouse, &load_migrations(&dir).unwrap())
        .await
        .unwrap();
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&input, EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();
    Bench {
        settings,
        input,
        schema,
        producer,
    }
}

impl Bench {
    /// Enqueues one event (waiting while the client's queue is full).
    async fn send(&self, e: &EmailEvent) -> rdkafka::producer::DeliveryFuture {
        let payload = self.schema.encode(e, 512).unwrap();
        let key = e.recipient.clone().unwrap();
        loop {
            let r = FutureRecord::to(&self.input)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            match self.producer.send_result(r) {
                Ok(d) => return d,
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    fn start_stage(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let run = mailpipe_stage_5_aggregate::run(self.settings.clone(), shutdown.clone());
        (
            shutdown,
            tokio::spawn(async move { run.await.expect("aggregate stage") }),
        )
    }

    fn client(&self) -> clickhouse::Client {
        mailpipe_clickhouse::client(&self.settings.clickhouse)
    }

    async fn rows(&self) -> u64 {
        let sql = format!(
            "SELECT count() FROM {}.email_events",
            self.settings.clickhouse.database
        );
        self.client()
            .query(&sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    }

    async fn stats_sum(&self) -> u64 {
        let sql = format!(
            "SELECT toUInt64(sum(events)) FROM {}.email_stats_1m FINAL",
            self.settings.clickhouse.database
        );
        self.client()
            .query(&sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or(0)
    }

    async fn drop_database(&self) {
        let sql = format!(
            "DROP DATABASE IF EXISTS {}",
            self.settings.clickhouse.database
        );
        let _ = self.client().query(&sql).execute().await;
    }
}

/// Acknowledges every delivery; notes when the first arrived and when `n` had.
struct CountOnly {
    n: usize,
    received: usize,
    first: Option<(Instant, usize)>,
    done: Option<tokio::sync::oneshot::Sender<f64>>,
}

impl Handler for CountOnly {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        self.received += batch.len();
        for d in batch {
            d.ack.complete();
        }
        let (started, first) = *self.first.get_or_insert((Instant::now(), self.received));
        if self.received >= self.n {
            if let Some(done) = self.done.take() {
                let rate = (self.n - first) as f64 / started.elapsed().as_secs_f64();
                let _ = done.send(rate);
            }
        }
        Ok(())
    }
}

/// Records/s of the consumer loop alone over `topic`'s first `n` records, from the first
/// batch received (group join excluded).
async fn consume_only(settings: &Settings, topic: &str, n: usize) -> f64 {
    let (done, rate) = tokio::sync::oneshot::channel();
    let handler = CountOnly {
        n,
        received: 0,
        first: None,
        done: Some(done),
    };
    let group = format!("{}consume-only", settings.kafka.topic_prefix);
    let client = mailpipe_kafka::consumer_config(&settings.kafka, &group);
    let config = LoopConfig::from(&settings.kafka.consumer);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let topics = [topic.to_string()];
    let consumer = tokio::spawn(async move {
        mailpipe_kafka::consumer::run(client, &topics, config, handler, None, stop).await
    });
    let rate = rate.await.unwrap();
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    rate
}

/// 1a. rows/s through the stage from `b`'s topic, pre-filled with `events`. The clock
/// starts at the first rows in ClickHouse (group join excluded) and stops when the roll-up
/// counts every event (both tables loaded; the offset commit that follows is not waited
/// for). Rows already there at the start are not counted.
async fn stage_round(b: &Bench, events: &[EmailEvent]) -> f64 {
    let n = events.len();
    let mut pending = Vec::new();
    for e in events {
        pending.push(b.send(e).await);
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    let (shutdown, stage) = b.start_stage();
    let mut first_rows = b.rows().await;
    while first_rows == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        first_rows = b.rows().await;
    }
    let started = Instant::now();
    while b.stats_sum().await < n as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stage stalled"
        );
    }
    let rate = (n - first_rows as usize) as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    stage.await.unwrap();
    rate
}

/// 1b. rows/s of a plain bulk insert of the same rows, same batch size, fresh database.
async fn plain_round(events: &[EmailEvent]) -> f64 {
    let plain = bench("aggplain").await;
    let rows: Vec<EventRow> = events.iter().cloned().map(EventRow::from_event).collect();
    let client = plain
        .client()
        .with_database(&plain.settings.clickhouse.database);
    let started = Instant::now();
    for chunk in rows.chunks(plain.settings.aggregate.max_rows) {
        let mut insert = client.insert::<EventRow>("email_events").await.unwrap();
        for row in chunk {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    assert_eq!(plain.rows().await, events.len() as u64);
    plain.drop_database().await;
    rate
}

/// 1c/1d. For the diagnosis: records/s of the consumer loop alone over `b`'s topic
/// (acknowledging only), and rows/s of decoding the same Avro payloads alone on one core,
/// the stage's way (field by field) and the generic way (registry converter + serde).
async fn diagnose(b: &Bench, events: &[EmailEvent]) -> (f64, f64, f64) {
    let n = events.len();
    let consume_rate = consume_only(&b.settings, &b.input, n).await;
    let codec = AvroCodec::new(&b.settings.schema_registry.url).unwrap();
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| b.schema.encode(e, 512).unwrap())
        .collect();
    let reader = EventReader::new().unwrap();
    let started = Instant::now();
    for payload in &payloads {
        let event = reader.read(&codec, payload).await.unwrap();
        std::hint::black_box(EventRow::from_event(event));
    }
    let decode_rate = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for payload in &payloads {
        let event: EmailEvent = codec.decode(payload).await.unwrap();
        std::hint::black_box(EventRow::from_event(event));
    }
    let generic_rate = n as f64 / started.elapsed().as_secs_f64();
    (consume_rate, decode_rate, generic_rate)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// Two workers, as the stage binary's runtime on this machine (one per core).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by scripts/bench-aggregate.sh"]
async fn bench_aggregate_throughput_and_latency() {
    let n = env_or("AGG_BENCH_EVENTS", 200_000);
    let rate = env_or("AGG_BENCH_RATE", 5_000);
    let seconds = env_or("AGG_BENCH_SECONDS", 10);
    let base_ms = 1_795_687_200_000i64;
    let events: Vec<EmailEvent> = (0..n).map(|s| event(s, base_ms + s as i64 * 10)).collect();

    // 1. Stage and plain insert, alternated for AGG_BENCH_ROUNDS rounds (fresh topic and
    // databases each time); the ratio is of the medians, so a background merge or a busy
    // moment in one round does not decide it.
    let rounds = env_or("AGG_BENCH_ROUNDS", 3).max(1);
    let mut stage_rates = Vec::new();
    let mut plain_rates = Vec::new();
    let mut diagnosis = None;
    for round in 0..rounds {
        let b = bench("aggbench").await;
        stage_rates.push(stage_round(&b, &events).await);
        if round == 0 {
            diagnosis = Some(diagnose(&b, &events).await);
        }
        b.drop_database().await;
        plain_rates.push(plain_round(&events).await);
    }
    let (consume_rate, decode_rate, generic_rate) = diagnosis.unwrap();

    // 2. Latency at a steady rate: produced → queryable in email_events.
    let l = bench("agglat").await;
    let group = Stage::Aggregate.group_id(&l.settings);
    let (shutdown, stage) = l.start_stage();
    // Let the stage join its group before the clock matters.
    let warm = event(usize::MAX / 2, base_ms - 60_000);
    l.send(&warm).await.await.unwrap().unwrap();
    while committed_total(&group, &l.input, PARTITIONS) < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = rate * seconds;
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let done = CancellationToken::new();
    let poller = {
        let (client, db) = (l.client(), l.settings.clickhouse.database.clone());
        let (sent_at, done) = (sent_at.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = vec![false; total];
            let mut latencies = Vec::with_capacity(total);
            let mut low = 0usize;
            loop {
                let sql = format!(
                    "SELECT occurred_at_ms FROM {db}.email_events WHERE occurred_at_ms >= {}",
                    base_ms + low as i64
                );
                let found: Vec<i64> = client.query(&sql).fetch_all().await.unwrap_or_default();
                let now = Instant::now();
                for ms in found {
                    let seq = (ms - base_ms) as usize;
                    if seq < total && !seen[seq] {
                        seen[seq] = true;
                        let at = sent_at.lock().unwrap()[seq].expect("sent before visible");
                        latencies.push((now - at).as_secs_f64());
                    }
                }
                while low < total && seen[low] {
                    low += 1;
                }
                if low == total || done.is_cancelled() {
                    return latencies;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(total);
    for seq in 0..total {
        if seq % per_tick == 0 {
            tokio::time::sleep_until((started + tick * (seq / per_tick) as u32).into()).await;
        }
        let e = event(seq, base_ms + seq as i64);
        sent_at.lock().unwrap()[seq] = Some(Instant::now());
        deliveries.push(l.send(&e).await);
    }
    let send_secs = started.elapsed().as_secs_f64();
    for d in deliveries {
        d.await.unwrap().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !poller.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.cancel();
    let mut latencies = poller.await.unwrap();
    shutdown.cancel();
    stage.await.unwrap();
    l.drop_database().await;
    latencies.sort_by(f64::total_cmp);

    let (stage_rate, plain_rate) = (median(&stage_rates), median(&plain_rates));
    let listed = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "rows: {n} per round, {rounds} rounds (max_rows {})",
        l.settings.aggregate.max_rows
    );
    println!(
        "aggregate stage (topic -> email_events + email_stats_1m): {stage_rate:.0} rows/s median ({})",
        listed(&stage_rates)
    );
    println!(
        "plain bulk insert (clickhouse crate, email_events only):  {plain_rate:.0} rows/s median ({})",
        listed(&plain_rates)
    );
    println!(
        "ratio of the medians: {:.2} (per round: {})",
        stage_rate / plain_rate,
        stage_rates
            .iter()
            .zip(&plain_rates)
            .map(|(s, p)| format!("{:.2}", s / p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("(consumer loop alone over the same topic, acknowledging only: {consume_rate:.0} records/s)");
    println!(
        "(Avro decode + row conversion alone, one core: {decode_rate:.0} rows/s; generic decoder {generic_rate:.0} rows/s)"
    );
    println!(
        "latency produced -> queryable at {:.0} events/s for {send_secs:.1} s ({} of {total} seen): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        total as f64 / send_secs,
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
}
