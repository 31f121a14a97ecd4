//! The kill-test harness of the stages that read a topic and write topics (verify,
//! normalize, dedupe): the real stage binary works through a test's input and is SIGKILLed
//! at seeded random points spread over it, restarted at once each time with the same
//! `MAILPIPE_KAFKA__INSTANCE_ID` (as a supervisor restarts "the same" instance), until its
//! consumer group has committed the whole input. Then the output topics are read
//! `read_committed` from the start and compared with what the input should give:
//!
//! - exactly-once (`[kafka] exactly_once`, the default): every expected output exactly
//!   once — 0 missing, 0 extra (no id twice), 0 spurious (no id that was not expected);
//! - at-least-once (`MAILPIPE_KAFKA__EXACTLY_ONCE=false` in the test's environment, which
//!   the stage inherits): 0 missing and 0 spurious; extra copies are counted, not asserted;
//! - both: per-key order. Outputs of one key that come from one input partition appear in
//!   the order of their inputs (first appearances, so a re-emitted copy does not count).
//!   Across input partitions nothing orders them, and nothing is asserted.
//!
//! A test gives its inputs as encoded records with their partition, and decodes the
//! outputs into [`Observed`] ids; [`compare`] is pure. The figures (inputs, outputs, kills,
//! missing, extra, wall time, seed) are printed in one line per run.
//!
//! Environment: `<STAGE>_KILL_SEED` replays one schedule (input and kill points; the seed
//! is printed), `<STAGE>_KILL_COUNT` sets the number of kills (default 6, at least 5), with
//! `<STAGE>` = VERIFY, NORMALIZE or DEDUPE.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_settings::{KafkaSettings, Settings};
use mailpipe_stage::Stage;
use mailpipe_telemetry::names;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use crate::metrics::{metric_sum, metric_sum_labelled, scrape};
use crate::{
    create_topic, dev_config_path, dev_settings, env_or, free_port, try_committed_total,
    unique_name, workspace_binary, HeldTail, Rng,
};

/// Kills per run: at least MIN_KILLS, `<STAGE>_KILL_COUNT` (default DEFAULT_KILLS).
pub const MIN_KILLS: usize = 5;
pub const DEFAULT_KILLS: usize = 6;
/// A kill comes this long after its kill point was passed.
const KILL_DELAY_MS: std::ops::Range<u64> = 0..2_000;
/// Bound, far above what is needed, on a time without any input committed, so a stuck
/// stage fails with its log. After a kill the dead member keeps its partitions until its
/// session expires (session_timeout_ms, 6 s in config/mailpipe.toml), then the restarted
/// process gets them in the rebalance and resumes from the last commit.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// The instance id every run of the stage gets: a restart is "the same" instance, so its
/// transactional producer's initialisation aborts the killed run's open transaction at
/// once instead of leaving `read_committed` readers waiting for the broker's timeout.
pub const INSTANCE_ID: &str = "kill-test-0";

/// One input record, produced to the given partition of the input topic.
#[derive(Debug, Clone)]
pub struct Input {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub partition: i32,
}

/// One record read from an output topic.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// One output the input should give, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// What identifies the output across the stage's topics (a request id, an event id).
    pub id: String,
    /// The partition of the input it comes from.
    pub input_partition: i32,
}

/// One output read, in the order read (each partition's records in offset order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub id: String,
}

/// What was read, compared with what was expected.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub expected: usize,
    pub outputs: usize,
    /// Expected ids not read (sorted).
    pub missing: Vec<String>,
    /// Records beyond the first of their id (copies).
    pub extra: usize,
    /// Ids read that were not expected (sorted, distinct).
    pub spurious: Vec<String>,
    /// (topic, key) whose outputs from one input partition are not in input order.
    pub out_of_order: Vec<(String, String)>,
}

/// Compares the outputs read with the expected ones (see the module's doc). Panics if an
/// expected id is listed twice (the test's input is wrong then).
pub fn compare(expected: &[Expected], observed: &[Observed]) -> Comparison {
    let mut position: HashMap<&str, (usize, i32)> = HashMap::with_capacity(expected.len());
    for (i, e) in expected.iter().enumerate() {
        let earlier = position.insert(e.id.as_str(), (i, e.input_partition));
        assert!(earlier.is_none(), "expected output {} listed twice", e.id);
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(observed.len());
    let mut spurious = std::collections::BTreeSet::new();
    // Per (topic, key, input partition): the input position of the last first appearance.
    let mut last: HashMap<(&str, &[u8], i32), usize> = HashMap::new();
    let mut out_of_order = std::collections::BTreeSet::new();
    for o in observed {
        let count = seen.entry(o.id.as_str()).or_insert(0);
        *count += 1;
        let Some(&(at, partition)) = position.get(o.id.as_str()) else {
            spurious.insert(o.id.clone());
            continue;
        };
        // Keyless records are spread over the partitions: no order among them.
        let (Some(key), 1) = (o.key.as_deref(), *count) else {
            continue;
        };
        let before = last.insert((o.topic.as_str(), key, partition), at);
        if before.is_some_and(|before| before > at) {
            out_of_order.insert((o.topic.clone(), String::from_utf8_lossy(key).into_owned()));
        }
    }
    let mut missing: Vec<String> = expected
        .iter()
        .filter(|e| !seen.contains_key(e.id.as_str()))
        .map(|e| e.id.clone())
        .collect();
    missing.sort_unstable();
    Comparison {
        expected: expected.len(),
        outputs: observed.len(),
        missing,
        extra: seen.values().map(|n| n - 1).sum(),
        spurious: spurious.into_iter().collect(),
        out_of_order: out_of_order.into_iter().collect(),
    }
}

/// A partition for `key` among `partitions` (FNV-1a): stable, so a test knows where each
/// input went.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key {
        hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1) as u32) as i32
}

/// One kill test: its stage, settings (a topic and key prefix of its own), seed and number
/// of kills, the input topic and the output topics.
pub struct KillTest {
    pub stage: Stage,
    /// The test's settings: the committed dev config and `MAILPIPE_*` env, with prefixes of
    /// its own. `settings.kafka.exactly_once` is the mode under test.
    pub settings: Settings,
    pub seed: u64,
    pub max_kills: usize,
    pub input_topic: String,
    pub input_partitions: i32,
    pub output_topics: Vec<String>,
    /// Inputs held back (see [`HeldTail`]) and the size of each piece released.
    pub tail: usize,
    pub tail_piece: usize,
    /// More environment for the stage process (on top of the test's own).
    pub env: Vec<(String, String)>,
    /// Stage metrics to report besides the harness's own, summed over the runs (the
    /// last scrape of each run).
    pub metrics: Vec<&'static str>,
}

/// What a run of the kill loop gives: every record of the output topics, read
/// `read_committed`, and the figures.
pub struct KillRun {
    pub inputs: usize,
    pub outputs: Vec<Output>,
    pub kills: usize,
    /// From the input being produced to the output read.
    pub wall: Duration,
    /// Metric name (or `name{label}`) → sum over the runs of its last scrape.
    pub metrics: BTreeMap<String, f64>,
    pub log_path: PathBuf,
}

impl KillTest {
    /// A kill test of `stage` reading `input_partitions` partitions; the seed and the number
    /// of kills come from `<STAGE>_KILL_SEED` / `<STAGE>_KILL_COUNT` (or the defaults).
    pub fn new(stage: Stage, default_seed: u64, input_partitions: i32) -> KillTest {
        let upper = stage.name().to_uppercase();
        let seed = env_or(&format!("{upper}_KILL_SEED"), default_seed);
        let max_kills = env_or(&format!("{upper}_KILL_COUNT"), DEFAULT_KILLS).max(MIN_KILLS);
        let mut settings = dev_settings();
        let id = unique_name(&format!("{}kill", stage.name()));
        settings.kafka.topic_prefix = format!("{id}.");
        settings.redis.key_prefix = format!("{id}:");
        let input_topic = TopicNames::new(&settings.kafka.topic_prefix).name(stage.input());
        KillTest {
            stage,
            settings,
            seed,
            max_kills,
            input_topic,
            input_partitions,
            output_topics: Vec::new(),
            tail: 2_500,
            tail_piece: 250,
            env: Vec::new(),
            metrics: Vec::new(),
        }
    }

    /// The name of `topic` under the test's prefix.
    pub fn topic(&self, topic: Topic) -> String {
        TopicNames::new(&self.settings.kafka.topic_prefix).name(topic)
    }

    /// "exactly-once" or "at-least-once": the mode under test.
    pub fn mode(&self) -> &'static str {
        if self.settings.kafka.exactly_once {
            "exactly-once"
        } else {
            "at-least-once"
        }
    }

    /// Creates the input topic and the output topics (name, partitions) the stage writes;
    /// the outputs are the topics read afterwards.
    pub async fn create_topics(&mut self, outputs: &[(Topic, i32)]) {
        create_topic(&self.input_topic, self.input_partitions).await;
        for (topic, partitions) in outputs {
            let name = self.topic(*topic);
            create_topic(&name, *partitions).await;
            self.output_topics.push(name);
        }
    }

    /// Runs the kill loop over `inputs` (produced in order to their partitions), then reads
    /// the output topics. Fails the test with the end of the stage's log when the stage
    /// exits on its own or stops committing.
    pub async fn run(&self, inputs: Vec<Input>) -> KillRun {
        let started = Instant::now();
        let stage = self.stage.name();
        let binary = workspace_binary(
            &format!("mailpipe-{stage}"),
            "cargo build --workspace --bins",
        );
        let mut rng = Rng::new(self.seed).fork(0x6b69_6c6c);
        let group = self.stage.group_id(&self.settings);
        let total = inputs.len();
        let tail_len = self.tail.min(total / 2);
        let head_len = total - tail_len;

        let produce = |batch: Vec<Input>, what: &'static str| {
            let (kafka, topic) = (self.settings.kafka.clone(), self.input_topic.clone());
            tokio::spawn(async move {
                produce_records(&kafka, &topic, batch).await;
                eprintln!(
                    "{stage} kill test: {what} produced after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            })
        };
        let mut inputs = inputs;
        let tail_inputs = inputs.split_off(head_len);
        let mut producing = vec![produce(inputs, "head of the input")];
        let mut tail = HeldTail::new(tail_inputs, head_len, self.tail_piece);

        // Kept when the test fails (its path is in the failure message), removed by
        // `check` when it passes.
        let log_path = std::env::temp_dir().join(format!(
            "{}mailpipe-{stage}.log",
            self.settings.kafka.topic_prefix
        ));
        let log = File::create(&log_path).unwrap();
        let spawn = || StageProcess::spawn(&binary, self, &log);

        // Kill points spread over the head of the input (the tail is held back, so the
        // input cannot be done before every kill happened): the i-th kill comes 0-2 s after
        // the committed input passed a random point of the i-th of `max_kills + 1` equal
        // slices of it, and never before the running process consumed a message, so each
        // kill lands while the stage processes (not while it waits for its partitions). It
        // is restarted at once: the new member's join starts a rebalance, which hands it
        // the dead member's partitions once that member's session has expired. The last
        // run completes the input.
        let slice = head_len as u64 / (self.max_kills as u64 + 1);
        let kill_points: Vec<i64> = (1..=self.max_kills as u64)
            .map(|i| (slice * i - slice / 2 + rng.in_range(0..slice.max(1))) as i64)
            .collect();
        let http = reqwest::Client::new();
        let mut kills = 0;
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        let mut process = spawn();
        let mut run = BTreeMap::new();
        let mut kill_at: Option<Instant> = None;
        let (mut done_so_far, mut progress_at) = (0, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(status) = process.exited() {
                fail_with_log(
                    &log_path,
                    format!("the stage exited on its own ({status}) after {kills} kills"),
                );
            }
            if let Some(now) = process.metrics(&http, &self.metrics).await {
                run = now;
            }
            // A failed look-up (a fresh broker's group coordinator not ready yet) counts as
            // no progress.
            let now = committed(&group, &self.input_topic, self.input_partitions)
                .await
                .unwrap_or(done_so_far);
            if now == total as i64 {
                break;
            }
            if now != done_so_far {
                (done_so_far, progress_at) = (now, Instant::now());
            } else if progress_at.elapsed() > STALL_LIMIT {
                fail_with_log(
                    &log_path,
                    format!(
                        "no input committed for {STALL_LIMIT:?} ({now} of {total}, {kills} \
                         kills so far)"
                    ),
                );
            }
            if let Some(piece) = tail.next(now, kills == self.max_kills) {
                producing.push(produce(piece, "a piece of the held-back tail"));
            }
            let consumed = run.get(names::KAFKA_MESSAGES_CONSUMED).copied();
            if kills == self.max_kills || consumed.unwrap_or(0.0) == 0.0 || now < kill_points[kills]
            {
                continue;
            }
            let at = *kill_at.get_or_insert_with(|| {
                Instant::now() + Duration::from_millis(rng.in_range(KILL_DELAY_MS))
            });
            if Instant::now() < at {
                continue;
            }
            process.kill();
            kills += 1;
            add(&mut totals, &std::mem::take(&mut run));
            eprintln!(
                "{stage} kill test: kill {kills} at {:.1} s, {now} of {total} inputs committed",
                started.elapsed().as_secs_f64(),
            );
            process = spawn();
            (kill_at, progress_at) = (None, Instant::now());
        }
        // The group committed every input: in exactly-once mode its outputs were committed
        // in the same transactions; in at-least-once mode they were acknowledged before.
        if let Some(now) = process.metrics(&http, &self.metrics).await {
            run = now;
        }
        add(&mut totals, &run);
        assert_eq!(tail.remaining(), 0, "all input released");
        for handle in producing {
            handle.await.unwrap();
        }
        let mut outputs = Vec::new();
        for topic in &self.output_topics {
            outputs.extend(read_committed(&self.settings.kafka, topic).await);
        }
        process.kill();
        KillRun {
            inputs: total,
            outputs,
            kills,
            wall: started.elapsed(),
            metrics: totals,
            log_path,
        }
    }

    /// Prints the run's figures and asserts what the mode promises (see the module's doc);
    /// removes the stage's log when everything holds. `what` names the inputs in the
    /// figures line (e.g. "raw requests").
    pub fn check(&self, run: &KillRun, comparison: &Comparison, what: &str) {
        let stage = self.stage.name();
        let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &run.outputs {
            *per_topic.entry(o.topic.as_str()).or_default() += 1;
        }
        let per_topic: Vec<String> = per_topic
            .iter()
            .map(|(t, n)| {
                let short = t
                    .strip_prefix(&self.settings.kafka.topic_prefix)
                    .unwrap_or(t);
                format!("{short} {n}")
            })
            .collect();
        let metrics: Vec<String> = run
            .metrics
            .iter()
            .map(|(name, v)| format!("{name} {v}"))
            .collect();
        println!(
            "{stage} kill test ({}): {} {what} in, {} expected outputs, {} outputs read ({}), \
             {} kills, {} missing, {} extra, {} spurious, {} keys out of order, wall {:.1} s, \
             seed {}",
            self.mode(),
            run.inputs,
            comparison.expected,
            comparison.outputs,
            per_topic.join(", "),
            run.kills,
            comparison.missing.len(),
            comparison.extra,
            comparison.spurious.len(),
            comparison.out_of_order.len(),
            run.wall.as_secs_f64(),
            self.seed
        );
        println!(
            "{stage} kill test: stage metrics (summed over runs): {}",
            metrics.join(", ")
        );
        let log = run.log_path.display();
        assert!(
            comparison.missing.is_empty(),
            "{} expected outputs missing, e.g. {:?} (stage log: {log})",
            comparison.missing.len(),
            &comparison.missing[..comparison.missing.len().min(10)]
        );
        assert!(
            comparison.spurious.is_empty(),
            "{} outputs that were not expected, e.g. {:?} (stage log: {log})",
            comparison.spurious.len(),
            &comparison.spurious[..comparison.spurious.len().min(10)]
        );
        if self.settings.kafka.exactly_once {
            assert_eq!(
                comparison.extra, 0,
                "exactly-once: outputs read more than once (stage log: {log})"
            );
        }
        assert!(
            comparison.out_of_order.is_empty(),
            "outputs out of input order for (topic, key) {:?} (stage log: {log})",
            &comparison.out_of_order[..comparison.out_of_order.len().min(10)]
        );
        assert!(
            run.kills >= MIN_KILLS,
            "the stage finished its input after only {} kills",
            run.kills
        );
        let _ = std::fs::remove_file(&run.log_path);
    }
}

fn add(totals: &mut BTreeMap<String, f64>, run: &BTreeMap<String, f64>) {
    for (name, v) in run {
        *totals.entry(name.clone()).or_default() += v;
    }
}

/// Produces `inputs` in order, each to its partition, with the settings' (idempotent)
/// producer; waits for every acknowledgement (each within 10 minutes).
pub async fn produce_records(kafka: &KafkaSettings, topic: &str, inputs: Vec<Input>) {
    let mut kafka = kafka.clone();
    kafka.message_timeout_ms = 600_000;
    let producer = mailpipe_kafka::create_producer(&kafka).expect("producer");
    let mut pending = Vec::with_capacity(inputs.len());
    let deadline = Instant::now() + Duration::from_secs(600);
    for input in &inputs {
        loop {
            let record = FutureRecord::to(topic)
                .key(input.key.as_slice())
                .payload(input.payload.as_slice())
                .partition(input.partition);
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                // Queue full: wait for acknowledgements; the order is kept.
                Err((e, _)) => {
                    assert!(
                        Instant::now() < deadline,
                        "the producer queue stayed full for 10 minutes: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
            }
        }
    }
    for delivery in pending {
        delivery.await.expect("delivery").expect("acknowledged");
    }
}

/// Every record of `topic` a `read_committed` consumer sees from the start: records of
/// committed transactions and non-transactional ones, never those of aborted or open
/// transactions. Reads each partition up to its end (its last stable offset: where the
/// broker reports end of partition) and returns the records, each partition's in offset
/// order. Panics when a partition gives nothing for 60 s before its end.
pub async fn read_committed(kafka: &KafkaSettings, topic: &str) -> Vec<Output> {
    let consumer: StreamConsumer =
        mailpipe_kafka::consumer_config(kafka, &unique_name("committed_reader"))
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    assert!(!partitions.is_empty(), "{topic} has no partitions");
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&assignment).expect("assign");
    let mut open: std::collections::BTreeSet<i32> = partitions.into_iter().collect();
    let mut out = Vec::new();
    while !open.is_empty() {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("{topic}: partitions {open:?} gave nothing for 60 s before their end")
            });
        match m {
            Ok(m) => out.push(Output {
                topic: topic.to_string(),
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
            Err(KafkaError::PartitionEOF(p)) => {
                open.remove(&p);
            }
            Err(e) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

/// The sum of the group's committed offsets over the input's partitions, or None (the
/// error printed) when the broker cannot tell now.
async fn committed(group: &str, topic: &str, partitions: i32) -> Option<i64> {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || try_committed_total(&group, &topic, partitions))
        .await
        .unwrap()
        .map_err(|e| eprintln!("kill test: committed offsets not read now: {e}"))
        .ok()
}

/// One run of the stage binary, serving its metrics on a port of its own; killed
/// (SIGKILL) when dropped.
struct StageProcess {
    child: Child,
    metrics_url: String,
}

impl StageProcess {
    fn spawn(binary: &Path, test: &KillTest, log: &File) -> StageProcess {
        let port = free_port();
        let stage = test.stage.name();
        let child = Command::new(binary)
            // The same config file and MAILPIPE_* env (broker, registry, Redis of the test
            // stack) as the test, plus its prefixes, mode and a stable instance id.
            .env("MAILPIPE_CONFIG", dev_config_path())
            .env(
                "MAILPIPE_KAFKA__TOPIC_PREFIX",
                &test.settings.kafka.topic_prefix,
            )
            .env(
                "MAILPIPE_REDIS__KEY_PREFIX",
                &test.settings.redis.key_prefix,
            )
            .env(
                "MAILPIPE_KAFKA__EXACTLY_ONCE",
                test.settings.kafka.exactly_once.to_string(),
            )
            .env("MAILPIPE_KAFKA__INSTANCE_ID", INSTANCE_ID)
            .env("MAILPIPE_TELEMETRY__LOG_FORMAT", "text")
            .env(
                format!(
                    "MAILPIPE_TELEMETRY__METRICS_LISTEN__{}",
                    stage.to_uppercase()
                ),
                format!("127.0.0.1:{port}"),
            )
            .envs(test.env.iter().map(|(k, v)| (k, v)))
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

    /// The exit status if the process has exited (it should never exit on its own here).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Messages consumed, transactions committed and aborted, and `extra` metrics, or None
    /// while its metrics endpoint is not up yet.
    async fn metrics(
        &self,
        http: &reqwest::Client,
        extra: &[&'static str],
    ) -> Option<BTreeMap<String, f64>> {
        let text = scrape(http, &self.metrics_url).await?;
        let mut out = BTreeMap::new();
        out.insert(
            names::KAFKA_MESSAGES_CONSUMED.to_string(),
            metric_sum(&text, names::KAFKA_MESSAGES_CONSUMED),
        );
        for outcome in ["committed", "aborted"] {
            out.insert(
                format!("{}{{outcome=\"{outcome}\"}}", names::KAFKA_TRANSACTIONS),
                metric_sum_labelled(
                    &text,
                    names::KAFKA_TRANSACTIONS,
                    &format!("outcome=\"{outcome}\""),
                ),
            );
        }
        for name in extra {
            out.insert(name.to_string(), metric_sum(&text, name));
        }
        Some(out)
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fails the test with `what` and the end of the stage's log.
fn fail_with_log(log_path: &Path, what: String) -> ! {
    let mut tail = String::new();
    if let Ok(mut file) = File::open(log_path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(6_000)));
        let _ = file.read_to_string(&mut tail);
    }
    panic!(
        "{what}\n--- tail of the stage's log ({}) ---\n{tail}",
        log_path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(ids: &[(&str, i32)]) -> Vec<Expected> {
        ids.iter()
            .map(|(id, p)| Expected {
                id: id.to_string(),
                input_partition: *p,
            })
            .collect()
    }

    fn seen(records: &[(&str, &str)]) -> Vec<Observed> {
        records
            .iter()
            .map(|(key, id)| Observed {
                topic: "t".into(),
                key: Some(key.as_bytes().to_vec()),
                id: id.to_string(),
            })
            .collect()
    }

    #[test]
    fn exactly_the_expected_outputs_in_order_compare_clean() {
        let e = expected(&[("a", 0), ("b", 1), ("c", 0)]);
        let c = compare(&e, &seen(&[("k", "a"), ("j", "b"), ("k", "c")]));
        assert_eq!(
            c,
            Comparison {
                expected: 3,
                outputs: 3,
                ..Comparison::default()
            }
        );
    }

    #[test]
    fn missing_extra_and_spurious_outputs_are_counted() {
        let e = expected(&[("a", 0), ("b", 0), ("c", 0)]);
        let c = compare(&e, &seen(&[("k", "a"), ("k", "a"), ("k", "c"), ("k", "z")]));
        assert_eq!(c.missing, vec!["b".to_string()]);
        assert_eq!(c.extra, 1);
        assert_eq!(c.spurious, vec!["z".to_string()]);
        assert!(c.out_of_order.is_empty(), "a later copy is not a reorder");
    }

    #[test]
    fn order_is_checked_per_key_and_input_partition_only() {
        // b before a on key k, both from partition 0: out of order. d before c on key j,
        // from different input partitions: nothing orders them.
        let e = expected(&[("a", 0), ("b", 0), ("c", 0), ("d", 1)]);
        let c = compare(&e, &seen(&[("k", "b"), ("k", "a"), ("j", "d"), ("j", "c")]));
        assert_eq!(c.out_of_order, vec![("t".to_string(), "k".to_string())]);
    }

    #[test]
    fn keyless_outputs_have_no_order() {
        let e = expected(&[("a", 0), ("b", 0)]);
        let mut o = seen(&[("k", "b"), ("k", "a")]);
        for r in &mut o {
            r.key = None;
        }
        assert!(compare(&e, &o).out_of_order.is_empty());
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(partition_of(b"req-1", 4), partition_of(b"req-1", 4));
        let used: std::collections::BTreeSet<i32> = (0..100)
            .map(|i| partition_of(format!("req-{i}").as_bytes(), 4))
            .collect();
        assert_eq!(used, (0..4).collect());
    }
}
