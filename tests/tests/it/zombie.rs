//! Zombie test of exactly-once (issue 16): two instances of the `mailpipe-dedupe` binary
//! (instance ids of their own, metrics ports of their own) share the stage's consumer group
//! on a 4-partition `mail.events`. Instance A holds partitions and has completed inputs
//! staged but not committed (its Redis claims made, its transaction not run yet) when it
//! is SIGSTOPped. It stays stopped past the session timeout (6 s in config/mailpipe.toml),
//! so the group gives its partitions to B, which redoes A's uncommitted inputs from the
//! last committed offsets; more input arrives and B takes it too. Then A is SIGCONTed:
//! its transaction's time has come while it slept, so it tries to commit work of
//! partitions it no longer owns with a stale group generation — which must fail.
//!
//! Asserted: `mail.events.unique` read `read_committed` holds every distinct event id
//! exactly once (0 missing, 0 extra; ESP retries never pass), the group's committed
//! offsets cover the whole input and never move after A's resumption (a zombie commit of
//! its stale offsets would move them back), A committed no transaction in its whole life,
//! and A either aborted its transaction (`mailpipe_kafka_transactions_total
//! {outcome="aborted"}`) or dropped its staged work at the rebalance without trying, or
//! ended because it was fenced (exit code != 0, a log line with "fenced"); which one
//! happened is printed.
//!
//! A's transactions are made long (`interval_ms` 15 s, `max_records` huge), so that it is
//! sure to hold staged work when stopped and its transaction is due while it sleeps (it
//! stays stopped until then); B runs with the defaults. About 30 s; the binary must be built (`make build`, or `cargo
//! build -p mailpipe-stage-4-dedupe`). The instances' logs are kept in temporary files
//! when the test fails (their tails are printed).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailpipe_avro::AvroCodec;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use mailpipe_test_support::metrics::{metric_sum, metric_sum_labelled, scrape};
use mailpipe_test_support::{
    committed_total, create_topic, delivered_event, dev_config_path, dev_settings, free_port,
    produce_events, unique_name, workspace_binary,
};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;
/// Distinct event ids per input phase; every fourth is sent a second time (an ESP retry,
/// same event_id, another raw request), so a phase is 2,500 inputs.
const DISTINCT_PER_PHASE: usize = 2_000;
const RETRY_EVERY: usize = 4;
const RECIPIENTS: usize = 200;
/// A's transaction bound: longer than A's start to its stop (it commits nothing before);
/// A is resumed only once it has passed (its transaction is due when A wakes up).
const ZOMBIE_INTERVAL: Duration = Duration::from_secs(15);
/// A stays stopped at least this long: past its session timeout (6 s).
const MIN_STOP: Duration = Duration::from_secs(10);
/// Bound on every wait of the test, so a stuck stage fails with its log.
const WAIT_LIMIT: Duration = Duration::from_secs(40);

/// Event `seq`; `copy` 1 is an ESP retry of it (same id, another raw request).
fn event(seq: usize, copy: usize) -> EmailEvent {
    delivered_event(seq, copy, RECIPIENTS)
}

/// Phase `phase`'s inputs: its ids in order, every fourth one's retry three places later.
fn phase_input(phase: usize) -> Vec<EmailEvent> {
    let first = phase * DISTINCT_PER_PHASE;
    let mut out = Vec::new();
    for seq in first..first + DISTINCT_PER_PHASE {
        out.push(event(seq, 0));
        if seq % RETRY_EVERY == RETRY_EVERY - 1 {
            out.push(event(seq + 1 - RETRY_EVERY, 1));
        }
    }
    out
}

/// One instance of the stage binary with its own instance id and metrics port, logging
/// (text) to a file of its own; SIGKILLed when dropped.
struct Instance {
    name: &'static str,
    child: Child,
    metrics_url: String,
    log_path: PathBuf,
    exit: Option<std::process::ExitStatus>,
}

impl Instance {
    fn spawn(name: &'static str, binary: &Path, env: &[(&str, String)], prefix: &str) -> Self {
        let port = free_port();
        let log_path = std::env::temp_dir().join(format!("{prefix}dedupe-{name}.log"));
        let log = File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("MAILPIPE_KAFKA__INSTANCE_ID", format!("zombie-test-{name}"))
            .env(
                "MAILPIPE_TELEMETRY__METRICS_LISTEN__DEDUPE",
                format!("127.0.0.1:{port}"),
            )
            .env("MAILPIPE_TELEMETRY__LOG_FORMAT", "text")
            // A run directory variable of the scripts, not a config key.
            .env_remove("MAILPIPE_RUN_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Instance {
            name,
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            log_path,
            exit: None,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {}", self.name);
    }

    /// Whether it still runs; remembers how it ended.
    fn running(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap();
        }
        self.exit.is_none()
    }

    async fn metrics(&self, http: &reqwest::Client) -> Option<Counters> {
        let text = scrape(http, &self.metrics_url).await?;
        // `+ 0.0`: an empty f64 sum is -0.0, printed "-0".
        let metric_sum = |text: &str, name: &str| metric_sum(text, name) + 0.0;
        Some(Counters {
            consumed: metric_sum(&text, names::KAFKA_MESSAGES_CONSUMED),
            committed: metric_sum_labelled(
                &text,
                names::KAFKA_TRANSACTIONS,
                "outcome=\"committed\"",
            ),
            aborted: metric_sum_labelled(&text, names::KAFKA_TRANSACTIONS, "outcome=\"aborted\""),
            rebalances: metric_sum(&text, names::KAFKA_REBALANCES),
            completed: metric_sum(&text, names::KAFKA_MESSAGES_COMPLETED),
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an instance reported on its `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    consumed: f64,
    /// Transactions committed / aborted.
    committed: f64,
    aborted: f64,
    rebalances: f64,
    /// Inputs the handler completed (their Redis claims made, their outputs staged for a
    /// transaction or committed).
    completed: f64,
}

/// Fails the test with `what` and the tails of both instances' logs (kept on disk).
fn fail(instances: &[&Instance], what: String) -> ! {
    let mut message = what;
    for i in instances {
        message.push_str(&format!(
            "\n--- tail of instance {}'s log ({}) ---\n{}",
            i.name,
            i.log_path.display(),
            i.log_tail(40)
        ));
    }
    panic!("{message}")
}

async fn committed(group: &str, topic: &str) -> i64 {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || committed_total(&group, &topic, PARTITIONS))
        .await
        .unwrap()
}

/// The group's state and member count (DescribeGroups).
async fn group_state(settings: &Settings, group: &str) -> (String, usize) {
    let (kafka, group) = (settings.kafka.clone(), group.to_string());
    tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = mailpipe_kafka::consumer_config(&kafka, "zombie-probe")
            .create()
            .unwrap();
        match probe.fetch_group_list(Some(&group), Duration::from_secs(5)) {
            Ok(list) => list
                .groups()
                .first()
                .map(|g| (g.state().to_string(), g.members().len()))
                .unwrap_or_default(),
            Err(_) => Default::default(),
        }
    })
    .await
    .unwrap()
}

/// Every record of `topic` (all partitions, from the start, no group) read
/// `read_committed`, until none came for `quiet`: (key, payload).
async fn read_committed(
    settings: &Settings,
    topic: &str,
    quiet: Duration,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut config =
        mailpipe_kafka::consumer_config(&settings.kafka, &unique_name("zombie_reader"));
    config.set("isolation.level", "read_committed");
    let consumer: StreamConsumer = config.create().unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let mut out = Vec::new();
    while let Ok(m) = tokio::time::timeout(quiet, consumer.recv()).await {
        let m = m.expect("reading the output topic");
        out.push((
            m.key().unwrap_or_default().to_vec(),
            m.payload().unwrap_or_default().to_vec(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_zombie_commits_nothing_and_output_stays_exactly_once() {
    let started = Instant::now();
    let binary = workspace_binary("mailpipe-dedupe", "cargo build -p mailpipe-stage-4-dedupe");
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name("zombie"));
    settings.redis.key_prefix = format!("{}:", unique_name("zombie"));
    let prefix = settings.kafka.topic_prefix.clone();
    let names = TopicNames::new(&prefix);
    let events_topic = names.name(Topic::Events);
    let unique_topic = names.name(Topic::EventsUnique);
    create_topic(&events_topic, PARTITIONS).await;
    create_topic(&unique_topic, PARTITIONS).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let group = format!("{prefix}mailpipe-dedupe");
    let http = reqwest::Client::new();
    let log = |what: &str| {
        eprintln!(
            "zombie test: {what} ({:.1} s)",
            started.elapsed().as_secs_f64()
        )
    };

    let env = [
        (
            "MAILPIPE_CONFIG",
            dev_config_path().to_string_lossy().into_owned(),
        ),
        ("MAILPIPE_KAFKA__TOPIC_PREFIX", prefix.clone()),
        (
            "MAILPIPE_REDIS__KEY_PREFIX",
            settings.redis.key_prefix.clone(),
        ),
        ("MAILPIPE_KAFKA__EXACTLY_ONCE", "true".into()),
    ];
    let mut zombie_env = env.to_vec();
    zombie_env.push((
        "MAILPIPE_KAFKA__TRANSACTIONS__INTERVAL_MS",
        ZOMBIE_INTERVAL.as_millis().to_string(),
    ));
    zombie_env.push((
        "MAILPIPE_KAFKA__TRANSACTIONS__MAX_RECORDS",
        "1000000".into(),
    ));
    let mut a = Instance::spawn("a", &binary, &zombie_env, &prefix);
    let a_spawned = Instant::now();
    let mut b = Instance::spawn("b", &binary, &env, &prefix);

    // Both members in the group, each with partitions, before any input.
    let until = Instant::now() + WAIT_LIMIT;
    loop {
        let (state, members) = group_state(&settings, &group).await;
        if state == "Stable" && members == 2 {
            break;
        }
        if !a.running() || !b.running() || Instant::now() > until {
            fail(
                &[&a, &b],
                format!("the group did not become stable with 2 members ({state}, {members})"),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log("both instances in the group");

    // Phase 1; A is stopped as soon as it has staged work (inputs completed, nothing
    // committed: its first transaction is due only ZOMBIE_INTERVAL after its start).
    let mut input = phase_input(0);
    produce_events(settings.clone(), events_topic.clone(), input.clone()).await;
    log("phase 1 produced");
    let until = Instant::now() + WAIT_LIMIT;
    let before_stop = loop {
        if let Some(m) = a.metrics(&http).await {
            if m.completed > 0.0 {
                break m;
            }
        }
        if !a.running() || Instant::now() > until {
            fail(&[&a, &b], "instance A consumed nothing of phase 1".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.signal("-STOP");
    let stopped_at = Instant::now();
    log(&format!(
        "A stopped having consumed {} inputs and completed {}, {} transactions committed",
        before_stop.consumed, before_stop.completed, before_stop.committed
    ));
    assert_eq!(
        before_stop.committed, 0.0,
        "A committed a transaction before it was stopped: the test's timing assumption \
         (interval {ZOMBIE_INTERVAL:?}) does not hold"
    );

    // B gets A's partitions once A's session expired, and redoes A's uncommitted inputs:
    // the whole of phase 1 committed can only be B's work.
    let wait_committed = |n: usize, what: &'static str| {
        let (group, events_topic) = (group.clone(), events_topic.clone());
        async move {
            let until = Instant::now() + WAIT_LIMIT;
            loop {
                let now = committed(&group, &events_topic).await;
                if now == n as i64 {
                    return Ok(());
                }
                if Instant::now() > until {
                    return Err(format!("{what}: {now} of {n} inputs committed"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    if let Err(e) = wait_committed(input.len(), "B did not take over A's partitions").await {
        fail(&[&a, &b], e);
    }
    log("phase 1 committed by B");
    // More input while A sleeps: all B's.
    let phase2 = phase_input(1);
    produce_events(settings.clone(), events_topic.clone(), phase2.clone()).await;
    input.extend(phase2);
    if let Err(e) = wait_committed(input.len(), "B did not complete phase 2").await {
        fail(&[&a, &b], e);
    }
    log("phase 2 committed by B");
    let resume_at =
        (stopped_at + MIN_STOP).max(a_spawned + ZOMBIE_INTERVAL + Duration::from_secs(1));
    tokio::time::sleep_until(resume_at.into()).await;
    let b_before_resume = b.metrics(&http).await.unwrap_or_default();

    // A wakes up: it may not commit, and the group's offsets stay where B left them.
    a.signal("-CONT");
    log(&format!(
        "A resumed after {:.1} s stopped",
        stopped_at.elapsed().as_secs_f64()
    ));
    let resumed_at = Instant::now();
    let mut after = before_stop;
    let mut settled_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = committed(&group, &events_topic).await;
        if now != input.len() as i64 {
            fail(
                &[&a, &b],
                format!(
                    "the group's committed offsets moved after A resumed: {now}, not {}",
                    input.len()
                ),
            );
        }
        if !b.running() {
            fail(&[&a, &b], format!("B exited: {:?}", b.exit));
        }
        if !a.running() {
            break;
        }
        after = a.metrics(&http).await.unwrap_or(after);
        // Done once A aborted, or went through a rebalance since it woke up (then it has
        // dropped the staged work of the partitions it lost), plus 2 s to let it try more.
        if after.aborted > 0.0 || after.rebalances > before_stop.rebalances {
            let at = *settled_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        if resumed_at.elapsed() > WAIT_LIMIT {
            fail(
                &[&a, &b],
                "A neither aborted nor rebalanced after resuming".into(),
            );
        }
    }
    let a_log = a.log();
    let a_fenced = !a.running();
    if a_fenced {
        assert!(
            !a.exit.unwrap().success() && a_log.to_lowercase().contains("fenced"),
            "A exited after resuming without saying it was fenced: {:?}\n{}",
            a.exit,
            a.log_tail(40)
        );
    }
    assert_eq!(
        after.committed,
        0.0,
        "A committed a transaction after it was resumed on partitions it had lost\n{}",
        a.log_tail(40)
    );
    let outcome = if a_fenced {
        format!("exited fenced ({:?})", a.exit.unwrap())
    } else if after.aborted > 0.0 {
        format!(
            "aborted {} transaction(s), committed none, rejoined and runs on",
            after.aborted
        )
    } else {
        "dropped its staged work at the rebalance without trying to commit it, runs on".into()
    };
    log(&format!("A {outcome}"));
    // What A's loop said after it woke up, for the record.
    for line in a_log.lines().filter(|l| {
        ["transaction", "fenced", "revoked", "assigned", "session"]
            .iter()
            .any(|w| l.contains(w))
    }) {
        eprintln!("  A: {line}");
    }

    // The output, read read_committed: each distinct id exactly once.
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let output = read_committed(&settings, &unique_topic, Duration::from_secs(3)).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut retries_passed = 0;
    for (key, payload) in &output {
        let e: EmailEvent = codec.decode(payload).await.unwrap();
        assert_eq!(key.as_slice(), e.recipient.as_deref().unwrap().as_bytes());
        if !e.raw_request_id.ends_with("-0") {
            retries_passed += 1;
        }
        *counts.entry(e.event_id).or_insert(0) += 1;
    }
    let distinct: BTreeSet<&str> = input.iter().map(|e| e.event_id.as_str()).collect();
    let missing: Vec<&str> = distinct
        .iter()
        .filter(|id| !counts.contains_key(**id))
        .copied()
        .collect();
    let extra: usize = counts.values().map(|n| n - 1).sum();
    let unknown = counts
        .keys()
        .filter(|id| !distinct.contains(id.as_str()))
        .count();
    let b_final = b.metrics(&http).await.unwrap_or(b_before_resume);
    log(&format!(
        "{} inputs, {} distinct ids, {} on the output: {} missing, {extra} extra copies; A: \
         {}; B: {} transactions committed, {} aborted",
        input.len(),
        distinct.len(),
        output.len(),
        missing.len(),
        outcome,
        b_final.committed,
        b_final.aborted
    ));
    if !missing.is_empty() || extra > 0 || unknown > 0 || retries_passed > 0 {
        fail(
            &[&a, &b],
            format!(
                "output not exactly once: {} missing (e.g. {:?}), {extra} extra copies, \
                 {unknown} unknown ids, {retries_passed} retries passed",
                missing.len(),
                &missing[..missing.len().min(10)]
            ),
        );
    }
    assert_eq!(
        committed(&group, &events_topic).await,
        input.len() as i64,
        "the group's committed offsets cover the whole input"
    );
    let _ = std::fs::remove_file(&a.log_path);
    let _ = std::fs::remove_file(&b.log_path);
}
