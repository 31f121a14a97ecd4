//! Kill test of the aggregate stage (issue 7): the real `mailpipe-aggregate` binary loads
//! 100,000 events — 90,000 distinct plus 10,000 copies of some of them (the identical
//! records dedupe writes again after a crash), several event types and providers, event
//! times spread over twenty minutes with some late ones — and is SIGKILLed at random points
//! (seeded) and restarted each time, until its consumer group has committed the whole
//! input. Afterwards `count() FROM email_events FINAL` and `sum(events) FROM email_stats_1m
//! FINAL` must both equal the number of distinct events, overall, per event type and per
//! minute.
//!
//! Run by `make chaos` (scripts/chaos.sh), not by `make test`: a long run that loads the
//! local broker heavily. The binaries must be built (`make build`; the pipeline helper looks
//! all of them up). The stage's log tail is printed when the test fails.
//! `AGG_KILL_SEED` replays one schedule of kills and one input (the seed used is printed);
//! `AGG_KILL_COUNT` sets the number of kills (default 6, at least 5).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mailpipe_clickhouse::{load_migrations, migrate};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{EmailEvent, EventType, Provider};
use mailpipe_settings::Settings;
use mailpipe_stage::Stage;
use mailpipe_test_support::metrics::messages_consumed;
use mailpipe_test_support::pipeline::Pipeline;
use mailpipe_test_support::{
    committed_total, create_topic, dev_settings, produce_events, EventBuilder, HeldTail, Rng,
};

const DISTINCT: usize = 90_000;
/// Every ninth distinct event is written twice: 10,000 copies, 100,000 inputs.
const COPY_EVERY: usize = 9;
/// A copy lands 0..COPY_SPREAD inputs after its original: in the same batch, a later one,
/// or after a kill and restart.
const COPY_SPREAD: u64 = 20_000;
const PARTITIONS: i32 = 4;
const RECIPIENTS: usize = 3_000;
/// Event times: 2026-11-26T10:00:00Z onwards, over twenty minutes in input order.
const BASE_MS: i64 = 1_795_687_200_000;
const SPAN_MS: i64 = 20 * 60 * 1000;
/// Every LATE_EVERY-th event occurred ten minutes before its neighbours: behind the
/// watermark, counted in its own (already reported) minute as a correction.
const LATE_EVERY: usize = 50;
const LATE_BY_MS: i64 = 10 * 60 * 1000;
const TYPES: [EventType; 6] = [
    EventType::Delivered,
    EventType::Opened,
    EventType::Clicked,
    EventType::Bounced,
    EventType::Complained,
    EventType::Unsubscribed,
];
const PROVIDERS: [Provider; 4] = [
    Provider::Sendgrid,
    Provider::Mailgun,
    Provider::Postmark,
    Provider::Ses,
];
/// Kills per run: at least MIN_KILLS, AGG_KILL_COUNT (default DEFAULT_KILLS).
const MIN_KILLS: usize = 5;
const DEFAULT_KILLS: usize = 6;
/// Inputs held back (HeldTail) and released in pieces of TAIL_PIECE, one whenever the stage
/// has committed all it was given while kills remain, the rest after the last kill.
const TAIL: usize = 5_000;
const TAIL_PIECE: usize = 500;
/// A kill comes this long after its kill point was passed: before, during or after the
/// next insert or window recomputation (a batch is due 1 s after its first row).
const KILL_DELAY_MS: std::ops::Range<u64> = 0..2_500;
/// Bound, far above what is needed, on a time without any input committed, so a stuck
/// stage fails with its log. After a kill the dead member keeps its partitions until its
/// session expires (session_timeout_ms, 6 s in config/mailpipe.toml), then the restarted
/// process gets them in the rebalance and resumes from the last commit.
const STALL_LIMIT: Duration = Duration::from_secs(90);

/// Distinct event `seq`, its type and provider drawn from `rng`.
fn event(seq: usize, rng: &mut Rng) -> EmailEvent {
    let event_type = rng.pick(&TYPES);
    let provider = rng.pick(&PROVIDERS);
    let recipient_no = rng.in_range(0..RECIPIENTS as u64);
    let domain =
        ["example.com", "example.org", "example.net", "example.io"][recipient_no as usize % 4];
    let mut occurred_at = BASE_MS + seq as i64 * SPAN_MS / DISTINCT as i64;
    if seq % LATE_EVERY == LATE_EVERY - 1 {
        occurred_at -= LATE_BY_MS;
    }
    EventBuilder::new(format!("ev-{seq}"))
        .event_type(event_type)
        .provider(provider)
        .source(provider.as_str())
        .at(occurred_at)
        .received_at(occurred_at + 700)
        .recipient(format!("user{recipient_no}@{domain}"))
        .message_id(format!("msg-{}", seq / 3))
        .campaign_id((!seq.is_multiple_of(4)).then(|| format!("campaign-{}", seq % 7)))
        .tag("kill")
        .metadata("seq", seq.to_string())
        .url((event_type == EventType::Clicked).then_some("https://example.com/x"))
        .raw_request_id(format!("req-{seq}"))
        .raw_event(format!("{{\"id\":{seq}}}"))
        .build()
}

/// The distinct events, and the input: each distinct event in order, every COPY_EVERY-th
/// one again (identical) somewhere up to COPY_SPREAD places later.
fn input_stream(rng: &mut Rng) -> (Vec<EmailEvent>, Vec<EmailEvent>) {
    let distinct: Vec<EmailEvent> = (0..DISTINCT).map(|seq| event(seq, rng)).collect();
    let mut slots: Vec<(u64, &EmailEvent)> = Vec::with_capacity(DISTINCT + DISTINCT / COPY_EVERY);
    for (seq, e) in distinct.iter().enumerate() {
        slots.push((2 * seq as u64, e));
        if seq.is_multiple_of(COPY_EVERY) {
            let at = seq as u64 + rng.in_range(0..COPY_SPREAD);
            slots.push((2 * at + 1, e));
        }
    }
    slots.sort_by_key(|(at, _)| *at);
    let input = slots.into_iter().map(|(_, e)| e.clone()).collect();
    (distinct, input)
}

/// The sum of the stage group's committed offsets over the input's partitions.
async fn committed(group: &str, topic: &str) -> i64 {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || committed_total(&group, &topic, PARTITIONS))
        .await
        .unwrap()
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct KeyCount {
    key: String,
    n: u64,
}

/// Runs `sql` (with `{db}` replaced) returning (key, n) rows.
async fn counts(settings: &Settings, sql: &str) -> BTreeMap<String, u64> {
    let sql = sql.replace("{db}", &settings.clickhouse.database);
    let rows: Vec<KeyCount> = mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&sql)
        .fetch_all()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| (r.key, r.n)).collect()
}

async fn count(settings: &Settings, sql: &str) -> u64 {
    let sql = sql.replace("{db}", &settings.clickhouse.database);
    mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kill test: run by make chaos"]
async fn sigkilled_aggregate_stage_counts_exactly() {
    let started = Instant::now();
    let seed = std::env::var("AGG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6167_676b_696c_6c00);
    let mut rng = Rng::new(seed);
    let max_kills = std::env::var("AGG_KILL_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_KILLS)
        .max(MIN_KILLS);
    eprintln!("aggregate kill test: seed {seed}, {max_kills} kills planned");

    // Event times are fixed dates: keep every monthly partition, whatever today is.
    let mut pipeline = Pipeline::new("aggkill", &[("MAILPIPE_AGGREGATE__RETENTION_MONTHS", "0")]);
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = pipeline.topic_prefix.clone();
    settings.clickhouse.database = pipeline.database.clone();
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let input_topic = names.name(Topic::EventsUnique);
    create_topic(&input_topic, PARTITIONS).await;
    // The stage also loads the rules stage's records (none here).
    create_topic(&names.name(Topic::Actions), 1).await;
    create_topic(&names.name(Topic::Suppressions), 1).await;
    create_topic(&names.name(Topic::Deliveries), 1).await;
    create_topic(&names.name(Topic::Rejected), 1).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let migrations_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/clickhouse");
    migrate(
        &settings.clickhouse,
        &load_migrations(&migrations_dir).unwrap(),
    )
    .await
    .unwrap();
    let group = Stage::Aggregate.group_id(&settings);
    let metrics_url = format!(
        "http://{}/metrics",
        pipeline.env["MAILPIPE_TELEMETRY__METRICS_LISTEN__AGGREGATE"]
    );

    let (distinct, mut input) = input_stream(&mut rng);
    let total = input.len();
    // The last TAIL inputs are held back (HeldTail): on Kafka the stage gets through the
    // whole input in seconds, and a run that finished before its kills would test nothing.
    // The kill points all fall in the head.
    let tail = input.split_off(total - TAIL);
    let head_len = input.len();
    let produce = |batch: Vec<EmailEvent>, what: &'static str| {
        let produced = produce_events(settings.clone(), input_topic.clone(), batch);
        tokio::spawn(async move {
            let t = Instant::now();
            produced.await;
            eprintln!(
                "aggregate kill test: {what} produced in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        })
    };
    let mut producing = vec![produce(input, "head of the input")];
    let mut tail = HeldTail::new(tail, head_len, TAIL_PIECE);

    // Kill points spread over the head: the i-th kill comes 0-2.5 s after the committed
    // input passed a random point of the i-th of `max_kills + 1` equal slices of it, and
    // never before the running process consumed a message, so each kill lands while the
    // stage processes (not while it is still waiting for its partitions). After the last
    // kill the rest of the tail is produced, and the last run completes the input.
    let slice = head_len as u64 / (max_kills as u64 + 1);
    let kill_points: Vec<i64> = (1..=max_kills as u64)
        .map(|i| (slice * i - slice / 2 + rng.in_range(0..slice)) as i64)
        .collect();
    let http = reqwest::Client::new();
    let mut kills = 0;
    let mut kill_at: Option<Instant> = None;
    let (mut done_so_far, mut progress_at) = (0, Instant::now());
    let fail = |pipeline: &Pipeline, what: String| -> ! {
        panic!(
            "{what}\n--- tail of the stage's log ({}) ---\n{}",
            pipeline.log_dir().display(),
            pipeline.log_tail("aggregate", 60)
        )
    };
    pipeline.start("aggregate");
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !pipeline.is_running("aggregate") {
            fail(
                &pipeline,
                format!("the stage exited on its own after {kills} kills"),
            );
        }
        let now = committed(&group, &input_topic).await;
        if now == total as i64 {
            break;
        }
        if now != done_so_far {
            (done_so_far, progress_at) = (now, Instant::now());
        } else if progress_at.elapsed() > STALL_LIMIT {
            fail(
                &pipeline,
                format!(
                    "no input committed for {STALL_LIMIT:?} ({now} of {total}, {kills} kills so far)"
                ),
            );
        }
        if let Some(piece) = tail.next(now, kills == max_kills) {
            producing.push(produce(piece, "a piece of the held-back tail"));
        }
        if kills == max_kills || now < kill_points[kills] {
            continue;
        }
        if messages_consumed(&http, &metrics_url).await.unwrap_or(0.0) == 0.0 {
            continue;
        }
        let at = *kill_at.get_or_insert_with(|| {
            Instant::now() + Duration::from_millis(rng.in_range(KILL_DELAY_MS))
        });
        if Instant::now() < at {
            continue;
        }
        pipeline.kill("aggregate");
        kills += 1;
        eprintln!(
            "aggregate kill test: kill {kills} at {:.1} s, {} of {total} inputs committed",
            started.elapsed().as_secs_f64(),
            committed(&group, &input_topic).await
        );
        // Restarted at once: the new member's join starts a rebalance, which hands it the
        // dead member's partitions once that member's session has expired.
        pipeline.start("aggregate");
        (kill_at, progress_at) = (None, Instant::now());
    }
    assert_eq!(tail.remaining(), 0, "all input released");
    for handle in producing {
        handle.await.unwrap();
    }

    // Everything committed means both tables acknowledged everything: no waiting needed.
    let n = distinct.len() as u64;
    let events_final = count(&settings, "SELECT count() FROM {db}.email_events FINAL").await;
    let stats_final = count(
        &settings,
        "SELECT toUInt64(sum(events)) FROM {db}.email_stats_1m FINAL",
    )
    .await;
    let events_raw = count(&settings, "SELECT count() FROM {db}.email_events").await;
    let wall = started.elapsed();
    eprintln!(
        "aggregate kill test: {total} inputs, {n} distinct, {kills} kills, count FINAL = \
         {events_final}, sum(events) FINAL = {stats_final}, {:.1} s (seed {seed}; \
         {} rows before FINAL)",
        wall.as_secs_f64(),
        events_raw
    );
    pipeline.kill("aggregate");

    assert_eq!(events_final, n, "count() FROM email_events FINAL");
    assert_eq!(stats_final, n, "sum(events) FROM email_stats_1m FINAL");
    let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_minute: BTreeMap<String, u64> = BTreeMap::new();
    for e in &distinct {
        *per_type.entry(e.event_type.as_str().into()).or_default() += 1;
        let minute = e.occurred_at / 60_000 * 60;
        *per_minute.entry(minute.to_string()).or_default() += 1;
    }
    let events_by_type = counts(
        &settings,
        "SELECT event_type AS key, count() AS n FROM {db}.email_events FINAL GROUP BY key",
    )
    .await;
    let stats_by_type = counts(
        &settings,
        "SELECT event_type AS key, toUInt64(sum(events)) AS n FROM {db}.email_stats_1m FINAL \
         GROUP BY key",
    )
    .await;
    assert_eq!(
        events_by_type, per_type,
        "email_events FINAL per event type"
    );
    assert_eq!(
        stats_by_type, per_type,
        "email_stats_1m FINAL per event type"
    );
    let stats_by_minute = counts(
        &settings,
        "SELECT toString(toUInt32(window_start)) AS key, toUInt64(sum(events)) AS n \
         FROM {db}.email_stats_1m FINAL GROUP BY key",
    )
    .await;
    assert_eq!(
        stats_by_minute, per_minute,
        "email_stats_1m FINAL per minute (late events in their own minute)"
    );
    assert!(
        kills >= MIN_KILLS,
        "the stage finished its input after only {kills} kills"
    );
    let _ = mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&format!(
            "DROP DATABASE IF EXISTS {}",
            settings.clickhouse.database
        ))
        .execute()
        .await;
}
