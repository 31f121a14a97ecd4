//! Kill test of the dedupe stage (issue 6): the real `mailpipe-dedupe` binary works through
//! 50,000 events — 40,000 distinct ids plus 10,000 ESP retries of them (same event_id, new
//! raw request, up to 5,000 inputs later) on 4 partitions — and is SIGKILLed at random points
//! spread over the input (seeded; `DEDUPE_KILL_COUNT` kills, default 6, at least 5) and
//! restarted each time, until its consumer group has committed the whole input. Afterwards
//! every distinct id must be on `mail.events.unique`, each recipient's events in input order,
//! and no retry may have passed. The extra copies (outputs acknowledged but not yet committed
//! when the stage was killed, emitted again on redelivery) are counted and printed, not
//! asserted: the guarantee is at-least-once, the goal 0.
//!
//! Ignored in `make test`: a long run that loads the local broker heavily. `make chaos`
//! (scripts/chaos.sh) runs it, or by hand against a running stack:
//! `cargo test -p mailpipe-tests --test dedupe_kill -- --ignored --nocapture`.
//! The binary must be built (`make build`, or `cargo build -p mailpipe-dedupe-stage`); its
//! log is kept in a temporary file when the test fails and its tail printed.
//! `DEDUPE_KILL_SEED` replays one schedule of kills (the seed used is printed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailpipe_avro::AvroCodec;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{EmailEvent, EventType, Provider};
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use mailpipe_test_support::metrics::{metric_sum, scrape};
use mailpipe_test_support::{
    committed_total, create_topic, dev_config_path, dev_settings, free_port, produce_events,
    unique_name, workspace_binary, HeldTail, Rng,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

const DISTINCT: usize = 40_000;
/// Every fourth id is sent twice: 10,000 retries, 50,000 inputs.
const RETRY_EVERY: usize = 4;
const RECIPIENTS: usize = 400;
const PARTITIONS: i32 = 4;
/// A retry lands 0..RETRY_SPREAD inputs after its original: in the same batch, a later one,
/// or after a kill and restart.
const RETRY_SPREAD: u64 = 5_000;
/// Kills per run of the test: at least MIN_KILLS, DEDUPE_KILL_COUNT (default 6) at most.
const MIN_KILLS: usize = 5;
const DEFAULT_KILLS: usize = 6;
/// Inputs held back (HeldTail) and released in pieces of TAIL_PIECE, one whenever the stage
/// has committed all it was given while kills remain, the rest after the last kill: on
/// Kafka the stage gets through the input in seconds.
const TAIL: usize = 2_500;
const TAIL_PIECE: usize = 250;
/// A kill comes this long after its kill point was passed.
const KILL_DELAY_MS: std::ops::Range<u64> = 0..2_000;
/// Bound, far above what is needed, on a time without any input committed, so a stuck
/// stage fails with its log. After a kill the dead member keeps its partitions until its
/// session expires (session_timeout_ms, 6 s in config/mailpipe.toml), then the restarted
/// process gets them in the rebalance and resumes from the last commit.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Event `seq`; `copy` 1 is an ESP retry of it (same id, another raw request).
fn event(seq: usize, copy: usize) -> EmailEvent {
    EmailEvent {
        event_id: format!("ev-{seq}"),
        event_type: EventType::Delivered,
        provider_event: "delivered".into(),
        provider: Provider::Sendgrid,
        source: "main".into(),
        occurred_at: 1_717_000_000_000 + seq as i64,
        received_at: 1_717_000_000_000 + seq as i64,
        recipient_domain: Some("example.com".into()),
        recipient: Some(format!("user{}@example.com", seq % RECIPIENTS)),
        message_id: Some(format!("msg-{seq}")),
        campaign_id: None,
        tags: Vec::new(),
        metadata: BTreeMap::new(),
        reject_reason: None,
        bounce_class: None,
        url: None,
        user_agent: None,
        ip: None,
        geo: None,
        mta_response: Some("250 ok".into()),
        description: None,
        raw_request_id: format!("req-{seq}-{copy}"),
        raw_event: format!("{{\"sg_event_id\":\"ev-{seq}\",\"copy\":{copy}}}"),
    }
}

/// The input: originals in id order, each retry somewhere up to RETRY_SPREAD places after
/// its original.
fn input_stream(rng: &mut Rng) -> Vec<EmailEvent> {
    let mut slots: Vec<(u64, EmailEvent)> = Vec::with_capacity(DISTINCT + DISTINCT / 4);
    for seq in 0..DISTINCT {
        slots.push((2 * seq as u64, event(seq, 0)));
        if seq % RETRY_EVERY == 0 {
            let at = seq as u64 + rng.in_range(0..RETRY_SPREAD);
            slots.push((2 * at + 1, event(seq, 1)));
        }
    }
    slots.sort_by_key(|(at, _)| *at);
    slots.into_iter().map(|(_, e)| e).collect()
}

/// Reads the output topic from the start (a group of its own) while the stage runs; once
/// `stop` is cancelled, reads on until nothing came for `quiet`, and returns every record
/// as (key, payload).
fn read_output(
    settings: &Settings,
    topic: &str,
    stop: CancellationToken,
    quiet: Duration,
) -> tokio::task::JoinHandle<Vec<(Vec<u8>, Vec<u8>)>> {
    let consumer: StreamConsumer =
        mailpipe_kafka::consumer_config(&settings.kafka, &unique_name("ddkill_reader"))
            .create()
            .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    tokio::spawn(async move {
        let mut records = Vec::new();
        loop {
            let m = if stop.is_cancelled() {
                match tokio::time::timeout(quiet, consumer.recv()).await {
                    Ok(m) => m,
                    Err(_) => return records,
                }
            } else {
                tokio::select! {
                    _ = stop.cancelled() => continue,
                    m = consumer.recv() => m,
                }
            };
            let m = m.expect("reading the output topic");
            records.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    })
}

/// One run of the `mailpipe-dedupe` binary, serving its metrics on a port of its own;
/// killed (SIGKILL) when dropped.
struct StageProcess {
    child: Child,
    metrics_url: String,
}

/// What a run reported on its `/metrics` so far.
#[derive(Debug, Default, Clone, Copy)]
struct RunMetrics {
    consumed: f64,
    redelivered: f64,
}

impl StageProcess {
    fn spawn(binary: &Path, env: &[(&str, String)], log: &File) -> StageProcess {
        let port = free_port();
        let child = Command::new(binary)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(
                "MAILPIPE_TELEMETRY__METRICS_LISTEN__DEDUPE",
                format!("127.0.0.1:{port}"),
            )
            // A run directory variable of the scripts, not a config key.
            .env_remove("MAILPIPE_RUN_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        StageProcess {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// Whether the process is still running (it should never exit on its own here).
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its counters, or None while its metrics endpoint is not up yet.
    async fn metrics(&self, http: &reqwest::Client) -> Option<RunMetrics> {
        let text = scrape(http, &self.metrics_url).await?;
        Some(RunMetrics {
            consumed: metric_sum(&text, names::KAFKA_MESSAGES_CONSUMED),
            redelivered: metric_sum(&text, names::DEDUPE_REDELIVERED),
        })
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `bytes` of the stage's log, for failure messages.
fn log_tail(path: &Path, bytes: u64) -> String {
    let mut file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.seek(SeekFrom::Start(len.saturating_sub(bytes)))
        .unwrap();
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    tail
}

/// Fails the test with `what` and the end of the stage's log.
fn fail_with_log(log_path: &Path, what: String) -> ! {
    panic!(
        "{what}\n--- tail of the stage's log ({}) ---\n{}",
        log_path.display(),
        log_tail(log_path, 6_000)
    )
}

/// The sum of the stage group's committed offsets over the input's partitions.
async fn committed(group: &str, topic: &str) -> i64 {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || committed_total(&group, &topic, PARTITIONS))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos: minutes of broker load; run by `make chaos` (scripts/chaos.sh)"]
async fn sigkilled_stage_loses_no_event() {
    let started = Instant::now();
    let binary: PathBuf =
        workspace_binary("mailpipe-dedupe", "cargo build -p mailpipe-dedupe-stage");
    let seed = std::env::var("DEDUPE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d61_696c_7069_7065);
    let mut rng = Rng::new(seed);
    let max_kills = std::env::var("DEDUPE_KILL_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_KILLS)
        .max(MIN_KILLS);

    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name("ddkill"));
    settings.redis.key_prefix = format!("{}:", unique_name("ddkill"));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let events_topic = names.name(Topic::Events);
    let unique_topic = names.name(Topic::EventsUnique);
    create_topic(&events_topic, PARTITIONS).await;
    create_topic(&unique_topic, PARTITIONS).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let group = format!("{}mailpipe-dedupe", settings.kafka.topic_prefix);

    let input = input_stream(&mut rng);
    let total = input.len();
    let codec = Arc::new(AvroCodec::new(&settings.schema_registry.url).unwrap());
    let head_len = total - TAIL;
    let produce = |batch: Vec<EmailEvent>, what: &'static str| {
        let produced = produce_events(settings.clone(), events_topic.clone(), batch);
        tokio::spawn(async move {
            produced.await;
            eprintln!(
                "dedupe kill test: {what} produced after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        })
    };
    let mut producing = vec![produce(input[..head_len].to_vec(), "head of the input")];
    let mut tail = HeldTail::new(input[head_len..].to_vec(), head_len, TAIL_PIECE);
    let stop_reading = CancellationToken::new();
    let reader = read_output(
        &settings,
        &unique_topic,
        stop_reading.clone(),
        Duration::from_secs(3),
    );

    // The child reads the same config file and MAILPIPE_* env (broker, registry, Redis of
    // the test stack) as this test, plus this test's prefixes (and a metrics port per run).
    let env = [
        (
            "MAILPIPE_CONFIG",
            dev_config_path().to_string_lossy().into_owned(),
        ),
        (
            "MAILPIPE_KAFKA__TOPIC_PREFIX",
            settings.kafka.topic_prefix.clone(),
        ),
        (
            "MAILPIPE_REDIS__KEY_PREFIX",
            settings.redis.key_prefix.clone(),
        ),
    ];
    // Kept when the test fails (its path is in the failure message), removed when it passes.
    let log_path = std::env::temp_dir().join(format!(
        "{}mailpipe-dedupe.log",
        settings.kafka.topic_prefix
    ));
    let log = File::create(&log_path).unwrap();
    let fail = |what: String| fail_with_log(&log_path, what);

    // Kill points spread over the head of the input (the tail is held back, see HeldTail,
    // so the input cannot be done before every kill happened): the i-th kill comes 0-2 s after the committed
    // input passed a random point of the i-th of `max_kills + 1` equal slices of it, and
    // never before the running process consumed a message, so each kill lands while the
    // stage processes (not while it is still waiting for its partitions). It is restarted at
    // once: the new member's join starts a rebalance, which hands it the dead member's
    // partitions once that member's session has expired. The last run completes the input.
    let slice = head_len as u64 / (max_kills as u64 + 1);
    let kill_points: Vec<i64> = (1..=max_kills as u64)
        .map(|i| (slice * i - slice / 2 + rng.in_range(0..slice)) as i64)
        .collect();
    let http = reqwest::Client::new();
    let mut kills = 0;
    let mut redelivered = 0.0;
    let mut stage = StageProcess::spawn(&binary, &env, &log);
    let mut run = RunMetrics::default();
    let mut kill_at: Option<Instant> = None;
    let (mut done_so_far, mut progress_at) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !stage.running() {
            fail(format!("the stage exited on its own after {kills} kills"));
        }
        run = stage.metrics(&http).await.unwrap_or(run);
        let now = committed(&group, &events_topic).await;
        if now == total as i64 {
            break;
        }
        if now != done_so_far {
            (done_so_far, progress_at) = (now, Instant::now());
        } else if progress_at.elapsed() > STALL_LIMIT {
            fail(format!(
                "no input committed for {STALL_LIMIT:?} ({now} of {total}, {kills} kills so far)"
            ));
        }
        if let Some(piece) = tail.next(now, kills == max_kills) {
            producing.push(produce(piece, "a piece of the held-back tail"));
        }
        if kills == max_kills || run.consumed == 0.0 || now < kill_points[kills] {
            continue;
        }
        let at = *kill_at.get_or_insert_with(|| {
            Instant::now() + Duration::from_millis(rng.in_range(KILL_DELAY_MS))
        });
        if Instant::now() < at {
            continue;
        }
        stage.kill();
        kills += 1;
        redelivered += run.redelivered;
        eprintln!(
            "dedupe kill test: kill {kills} at {:.1} s, {} of {total} inputs committed",
            started.elapsed().as_secs_f64(),
            committed(&group, &events_topic).await
        );
        stage = StageProcess::spawn(&binary, &env, &log);
        (run, kill_at, progress_at) = (RunMetrics::default(), None, Instant::now());
    }
    // Every offset committed means every output acknowledged (the stage commits only after).
    redelivered += stage.metrics(&http).await.unwrap_or(run).redelivered;
    assert_eq!(tail.remaining(), 0, "all input released");
    for handle in producing {
        handle.await.unwrap();
    }
    stop_reading.cancel();
    let output = reader.await.unwrap();
    stage.kill();
    let wall = started.elapsed();

    // Decode, and compare with the input.
    let mut decoded = Vec::with_capacity(output.len());
    for (key, payload) in &output {
        let e: EmailEvent = codec.decode(payload).await.unwrap();
        let recipient = e.recipient.clone().unwrap();
        assert_eq!(key, recipient.as_bytes(), "key = recipient");
        decoded.push(e);
    }
    let distinct: HashSet<&str> = input.iter().map(|e| e.event_id.as_str()).collect();
    let present: HashSet<&str> = decoded.iter().map(|e| e.event_id.as_str()).collect();
    let mut missing: Vec<&str> = distinct.difference(&present).copied().collect();
    missing.sort_unstable();
    let extra_copies = decoded.len() - present.len();
    // A retry arrives after its original has claimed the id in Redis (same partition, later
    // offset; the claim precedes the original's output), so it can never pass.
    let retries_passed = decoded
        .iter()
        .filter(|e| !e.raw_request_id.ends_with("-0"))
        .count();
    eprintln!(
        "dedupe kill test: {total} in, {} distinct, {extra_copies} extra copies, {kills} kills, \
         {} missing, {redelivered} re-emitted as redeliveries (stage metrics, last scrape per \
         run), wall {:.1} s (seed {seed})",
        distinct.len(),
        missing.len(),
        wall.as_secs_f64()
    );
    assert!(
        missing.is_empty(),
        "{} distinct ids missing on the output, e.g. {:?} (stage log: {})",
        missing.len(),
        &missing[..missing.len().min(10)],
        log_path.display()
    );
    assert_eq!(retries_passed, 0, "ESP retries passed the dedupe stage");
    assert!(
        kills >= MIN_KILLS,
        "the stage finished its input after only {kills} kills"
    );

    // Each recipient's events in input order: the first appearance of each id on the output
    // follows the order of the ids' first appearance in the input (extra copies, emitted
    // again on redelivery, come later and are skipped).
    let mut expected: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut seen = HashSet::new();
    for e in &input {
        if seen.insert(e.event_id.as_str()) {
            let recipient = e.recipient.as_deref().unwrap();
            expected.entry(recipient).or_default().push(&e.event_id);
        }
    }
    let mut got: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut seen = HashSet::new();
    for e in &decoded {
        if seen.insert(e.event_id.as_str()) {
            let recipient = e.recipient.as_deref().unwrap();
            got.entry(recipient).or_default().push(&e.event_id);
        }
    }
    for (recipient, ids) in &expected {
        assert_eq!(
            got.get(recipient),
            Some(ids),
            "events of {recipient} out of input order"
        );
    }
    let _ = std::fs::remove_file(&log_path);
}
