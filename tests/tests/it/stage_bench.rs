//! Bench (ignored; run by scripts/bench-stages.sh): the cost of exactly-once per stage.
//! Each of the verify, normalize and dedupe stages — the release binary, one process —
//! works through the same pre-filled input with `kafka.exactly_once` off and on; the bench
//! prints both throughputs (input records/s) and their ratio on/off (issue 16's goal:
//! >= 0.8), and how many inputs a transaction held. It asserts nothing about timings.
//!
//! Inputs, built once from `mailpipe-samples` (seeded; every provider but SES, whose
//! certificate would need a server), produced to the stage's input topic (4 partitions)
//! of a fresh topic prefix before the stage starts, the same records for both modes:
//! - verify: the signed requests as `mail.raw` records (signed with the development
//!   config's keys, which the stage verifies them with);
//! - normalize: the same requests as `mail.verified` records;
//! - dedupe: the events those requests hold as `mail.events` records, every fourth sent
//!   twice (an ESP retry: same event id).
//!
//! A run's clock starts when the stage's group is `Stable` with the stage as member (the
//! first join is not counted) and stops when the group's committed offsets cover the
//! whole input (sampled every 50 ms). With exactly-once on, offsets are committed by the
//! transactions themselves, so that is when the last output became visible to
//! `read_committed` readers. Both modes commit every 100 ms here (off:
//! `kafka.consumer.commit_interval_ms`, 1 s by default; on: `kafka.transactions.interval_ms`,
//! 100 ms by default), so the end of a run is seen as early in both. The modes alternate run by run (off, on, then on, off, ...)
//! over `STAGE_BENCH_ROUNDS` rounds, so a drift of the machine's load does not favour one;
//! each mode's figure is its median.
//!
//! Environment: `STAGE_BENCH_EVENTS` (events planned, default 100,000),
//! `STAGE_BENCH_ROUNDS` (default 2), `STAGE_BENCH_STAGES` (default
//! "verify,normalize,dedupe").

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpipe_avro::records::{Header, RawRecord, VerifiedKind, VerifiedRecord};
use mailpipe_avro::{
    AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA, RAW_REQUEST_SCHEMA, VERIFIED_REQUEST_SCHEMA,
};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{EmailEvent, Provider};
use mailpipe_samples::{DevKeys, PlanOptions, WebhookRequest, DEFAULT_SNS_CERT_URL};
use mailpipe_settings::Settings;
use mailpipe_stage::Stage;
use mailpipe_telemetry::names;
use mailpipe_test_support::metrics::{metric_sum, metric_sum_labelled, scrape};
use mailpipe_test_support::{
    create_topic, dev_config_path, dev_settings, env_or, free_port, unique_name, workspace_binary,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;
/// Bound on a run without progress, so a stuck stage fails with its log.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// One stage's input: (key, Avro payload) per record, and the schema they are written with.
struct Input {
    stage: Stage,
    schema: &'static str,
    records: Vec<(Vec<u8>, EncodeLater)>,
}

/// A record, encoded per run (each run's topic has a subject, and so a schema id, of
/// its own).
enum EncodeLater {
    Raw(Box<RawRecord>),
    Verified(Box<VerifiedRecord>),
    Event(Box<EmailEvent>),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The signed sample requests: every provider but SES, `events` events in all.
fn requests(settings: &Settings, events: usize) -> Vec<WebhookRequest> {
    let providers: Vec<Provider> = Provider::ALL
        .into_iter()
        .filter(|p| *p != Provider::Ses)
        .collect();
    let keys_dir = dev_config_path().parent().unwrap().join("dev-keys");
    let keys = DevKeys::load(settings, &keys_dir, &providers, DEFAULT_SNS_CERT_URL)
        .expect("the development keys of config/mailpipe.toml's sources");
    let now = now_ms();
    let options = PlanOptions {
        seed: 16,
        count: events,
        providers,
        duplicates: 0.0,
        bad: false,
        now_ms: now,
    };
    mailpipe_samples::generate(&options, &keys, now / 1000).expect("rendering the samples")
}

fn headers(request: &WebhookRequest) -> Vec<Header> {
    request
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: name.to_ascii_lowercase(),
            value: value.as_bytes().to_vec(),
        })
        .collect()
}

fn raw(id: &str, request: &WebhookRequest, received_at: i64) -> RawRecord {
    RawRecord {
        request_id: id.to_string(),
        received_at,
        provider: request.provider.as_str().into(),
        source: request.source.clone(),
        method: "POST".into(),
        path: request.path.clone(),
        query: String::new(),
        headers: headers(request),
        remote_addr: Some("127.0.0.1".into()),
        body: request.body.clone(),
    }
}

fn verified(raw: &RawRecord) -> VerifiedRecord {
    VerifiedRecord {
        request_id: raw.request_id.clone(),
        received_at: raw.received_at,
        provider: raw.provider.clone(),
        source: raw.source.clone(),
        method: raw.method.clone(),
        path: raw.path.clone(),
        query: raw.query.clone(),
        headers: raw.headers.clone(),
        remote_addr: raw.remote_addr.clone(),
        body: raw.body.clone(),
        verified_at: raw.received_at + 1,
        kind: VerifiedKind::Events,
        control_action: None,
        key_index: Some(0),
    }
}

/// The events normalize makes of a request.
fn events_of(raw: &RawRecord, provider: Provider) -> Vec<EmailEvent> {
    let headers: Vec<(String, Vec<u8>)> = raw
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let input = mailpipe_normalize_core::ParseInput {
        source: &raw.source,
        raw_request_id: &raw.request_id,
        received_at_ms: raw.received_at,
        headers: &headers,
        query: &raw.query,
        body: &raw.body,
    };
    mailpipe_normalize_core::parse(provider, &input).expect("a sample parses")
}

/// The three stages' inputs from one set of samples.
fn inputs(settings: &Settings, events: usize) -> Vec<Input> {
    let received_at = now_ms();
    let (mut raws, mut verifieds, mut events_in) = (Vec::new(), Vec::new(), Vec::new());
    let mut n_events = 0;
    for (i, request) in requests(settings, events).iter().enumerate() {
        let raw = raw(&format!("bench-{i:08}"), request, received_at);
        for event in events_of(&raw, request.provider) {
            let key = event.recipient.clone().unwrap_or_default().into_bytes();
            if n_events % 4 == 0 {
                let mut retry = event.clone();
                retry.raw_request_id.push_str("-retry");
                events_in.push((key.clone(), EncodeLater::Event(Box::new(retry))));
            }
            events_in.push((key, EncodeLater::Event(Box::new(event))));
            n_events += 1;
        }
        let key = raw.request_id.clone().into_bytes();
        verifieds.push((key.clone(), EncodeLater::Verified(Box::new(verified(&raw)))));
        raws.push((key, EncodeLater::Raw(Box::new(raw))));
    }
    vec![
        Input {
            stage: Stage::Verify,
            schema: RAW_REQUEST_SCHEMA,
            records: raws,
        },
        Input {
            stage: Stage::Normalize,
            schema: VERIFIED_REQUEST_SCHEMA,
            records: verifieds,
        },
        Input {
            stage: Stage::Dedupe,
            schema: EMAIL_EVENT_SCHEMA,
            records: events_in,
        },
    ]
}

/// The topics a stage reads and writes.
fn topics(stage: Stage) -> &'static [Topic] {
    match stage {
        Stage::Verify => &[Topic::Raw, Topic::Verified, Topic::Rejected, Topic::Dlq],
        Stage::Normalize => &[Topic::Verified, Topic::Events, Topic::Dlq],
        _ => &[Topic::Events, Topic::EventsUnique, Topic::Dlq],
    }
}

/// A fresh topic prefix (and Redis key prefix) whose stage input holds `input`.
async fn fill(input: &Input) -> Settings {
    let mut settings = dev_settings();
    let id = unique_name("stbench");
    settings.kafka.topic_prefix = format!("{id}.");
    settings.redis.key_prefix = format!("{id}:");
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    for topic in topics(input.stage) {
        create_topic(&names.name(*topic), PARTITIONS).await;
    }
    let topic = names.name(input.stage.input());
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&topic, input.schema).unwrap())
        .await
        .unwrap();
    // Filling is not measured: wait as long as it takes.
    let mut kafka = settings.kafka.clone();
    kafka.message_timeout_ms = 600_000;
    let producer = mailpipe_kafka::create_producer(&kafka).unwrap();
    let mut pending = Vec::with_capacity(input.records.len());
    for (key, record) in &input.records {
        let payload = match record {
            EncodeLater::Raw(r) => schema.encode(r, r.body.len() + 512),
            EncodeLater::Verified(r) => schema.encode(r, r.body.len() + 512),
            EncodeLater::Event(e) => schema.encode(e, 512),
        }
        .unwrap();
        loop {
            let r = FutureRecord::to(&topic)
                .key(key.as_slice())
                .payload(payload.as_slice());
            match producer.send_result(r) {
                Ok(d) => break pending.push(d),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    settings
}

/// What one run measured.
struct Run {
    /// Group stable -> whole input committed.
    secs: f64,
    /// Process start -> group stable.
    join_secs: f64,
    transactions_committed: f64,
    transactions_aborted: f64,
    /// Seconds the loop spent in transactions (begin to commit or abort), summed.
    transaction_secs: f64,
}

/// The group's state and members, and the sum of its committed offsets on `topic`.
fn probe(consumer: &BaseConsumer, group: &str, topic: &str) -> (bool, i64) {
    let stable = consumer
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .is_ok_and(|list| {
            list.groups()
                .iter()
                .any(|g| g.state() == "Stable" && !g.members().is_empty())
        });
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .map(|offsets| {
            offsets
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0);
    (stable, committed)
}

/// Starts the stage's release binary on `settings`' prefix with `exactly_once`, waits for
/// its group to commit all `n` inputs, stops it (SIGTERM).
async fn run_stage(stage: Stage, settings: &Settings, n: usize, exactly_once: bool) -> Run {
    let binary = workspace_binary(
        &format!("mailpipe-{}", stage.name()),
        &format!("cargo build --release -p mailpipe-{}-stage", stage.name()),
    );
    let port = free_port();
    let log_path: PathBuf = std::env::temp_dir().join(format!(
        "{}{}.log",
        settings.kafka.topic_prefix,
        stage.name()
    ));
    let log = File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child: Child = Command::new(&binary)
        .env("MAILPIPE_CONFIG", dev_config_path())
        .env("MAILPIPE_KAFKA__TOPIC_PREFIX", &settings.kafka.topic_prefix)
        .env("MAILPIPE_REDIS__KEY_PREFIX", &settings.redis.key_prefix)
        .env("MAILPIPE_KAFKA__EXACTLY_ONCE", exactly_once.to_string())
        .env("MAILPIPE_KAFKA__CONSUMER__COMMIT_INTERVAL_MS", "100")
        .env("MAILPIPE_KAFKA__INSTANCE_ID", "bench")
        .env(
            format!(
                "MAILPIPE_TELEMETRY__METRICS_LISTEN__{}",
                stage.name().to_uppercase()
            ),
            format!("127.0.0.1:{port}"),
        )
        .env("MAILPIPE_TELEMETRY__LOG_FORMAT", "text")
        .env_remove("MAILPIPE_RUN_DIR")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));

    let group = stage.group_id(settings);
    let topic = TopicNames::new(&settings.kafka.topic_prefix).name(stage.input());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut joined: Option<Instant> = None;
    let (mut last, mut progress_at) = (0, Instant::now());
    let done = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}); log: {}",
                stage.name(),
                log_path.display()
            );
        }
        let (stable, committed) = tokio::task::block_in_place(|| probe(&consumer, &group, &topic));
        let now = Instant::now();
        if stable && joined.is_none() {
            joined = Some(now);
        }
        if committed == n as i64 {
            break now;
        }
        if committed != last {
            (last, progress_at) = (committed, now);
        } else if progress_at.elapsed() > STALL_LIMIT {
            let _ = child.kill();
            panic!(
                "{} stalled at {committed} of {n} inputs committed; log: {}",
                stage.name(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Stable is seen at most one probe after it happened; never after the end.
    let joined = joined.unwrap_or(done);
    let text = scrape(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/metrics"),
    )
    .await
    .unwrap_or_default();
    let transactions = |outcome: &str| -> f64 {
        metric_sum_labelled(
            &text,
            names::KAFKA_TRANSACTIONS,
            &format!("outcome=\"{outcome}\""),
        )
    };
    let run = Run {
        secs: (done - joined).as_secs_f64().max(0.001),
        join_secs: (joined - started).as_secs_f64(),
        transactions_committed: transactions("committed"),
        transactions_aborted: transactions("aborted"),
        transaction_secs: metric_sum(&text, &format!("{}_sum", names::KAFKA_TRANSACTION_SECONDS))
            + 0.0,
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stop = Instant::now();
    while child.try_wait().unwrap().is_none() && stop.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log_path);
    run
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by scripts/bench-stages.sh"]
async fn bench_stages_with_exactly_once_on_and_off() {
    let events: usize = env_or("STAGE_BENCH_EVENTS", 100_000);
    let rounds: usize = env_or("STAGE_BENCH_ROUNDS", 2).max(1);
    let wanted: String = env_or("STAGE_BENCH_STAGES", "verify,normalize,dedupe".to_string());
    let settings = dev_settings();
    let inputs = inputs(&settings, events);

    // (stage, input records, runs off, runs on)
    let mut results: Vec<(Stage, usize, Vec<Run>, Vec<Run>)> = Vec::new();
    for input in inputs {
        if !wanted.split(',').any(|s| s.trim() == input.stage.name()) {
            continue;
        }
        let n = input.records.len();
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for exactly_once in order {
                let run_settings = fill(&input).await;
                let run = run_stage(input.stage, &run_settings, n, exactly_once).await;
                eprintln!(
                    "stage bench: {} exactly_once={exactly_once} round {}: {n} inputs in {:.2} s \
                     ({:.0}/s; join {:.1} s; transactions {} committed, {} aborted, {:.2} s in \
                     them)",
                    input.stage.name(),
                    round + 1,
                    run.secs,
                    n as f64 / run.secs,
                    run.join_secs,
                    run.transactions_committed,
                    run.transactions_aborted,
                    run.transaction_secs
                );
                let runs = if exactly_once { &mut on } else { &mut off };
                runs.push(run);
            }
        }
        results.push((input.stage, n, off, on));
    }

    println!(
        "### Exactly-once cost per stage: input records/s, exactly_once off vs on (median of \
         {rounds} run(s) each; samples of every provider but SES, {events} events planned)"
    );
    println!();
    println!(
        "| stage | input records | off: records/s | on: records/s | on/off (goal >= 0.8) | \
         on: transactions committed (inputs per transaction) | on: aborted | on: mean time per \
         transaction |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (stage, n, off, on) in &results {
        let rate = |runs: &[Run]| median(runs.iter().map(|r| *n as f64 / r.secs).collect());
        let (off_rate, on_rate) = (rate(off), rate(on));
        let committed = median(on.iter().map(|r| r.transactions_committed).collect());
        let aborted: f64 = on.iter().map(|r| r.transactions_aborted).sum();
        let count: f64 = on
            .iter()
            .map(|r| r.transactions_committed + r.transactions_aborted)
            .sum();
        let secs: f64 = on.iter().map(|r| r.transaction_secs).sum();
        let (per, mean) = if committed > 0.0 {
            (
                format!("{committed:.0} ({:.0})", *n as f64 / committed),
                format!("{:.0} ms", secs / count * 1000.0),
            )
        } else {
            ("0".into(), "-".into())
        };
        println!(
            "| {} | {n} | {off_rate:.0} | {on_rate:.0} | {:.2} | {per} | {aborted:.0} | {mean} |",
            stage.name(),
            on_rate / off_rate
        );
    }
    println!();
    // Runs of one round are next to each other in time, so their ratio suffers least from
    // a change of the machine's load (other work on the shared cores) between rounds.
    println!("Every round (records/s off / on = ratio; 2 shared cores here, figures are noisy):");
    for (stage, n, off, on) in &results {
        let rounds: Vec<String> = off
            .iter()
            .zip(on)
            .map(|(off, on)| {
                let (off, on) = (*n as f64 / off.secs, *n as f64 / on.secs);
                format!("{off:.0} / {on:.0} = {:.2}", on / off)
            })
            .collect();
        println!("- {}: {}", stage.name(), rounds.join("; "));
    }
}
