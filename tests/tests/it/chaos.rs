//! Chaos (issue 8, `make chaos`): the whole pipeline — receiver, verify, normalize, dedupe,
//! aggregate, each its own process — takes `mailpipe send-samples` traffic (100,000 ESP
//! events of all twelve providers, 10 % of the requests posted twice) while a random one
//! of its processes is SIGKILLed every 2–6 s (seeded) and restarted. When the sender is
//! done, the pipeline is left to drain (every stage's group committed its whole input),
//! then ClickHouse is compared with what the sender got accepted: printed as sent / unique
//! / in ClickHouse / lost / duplicated, and lost = duplicated = 0 asserted (`FINAL`), per
//! (provider, type) and as sets of event ids. `mail.events.unique`, read `read_committed`
//! as its consumers read it, must hold the set of accepted event ids and no other, and
//! (exactly-once, the default) no id twice; with `MAILPIPE_KAFKA__EXACTLY_ONCE=false` in the
//! environment (the at-least-once path, inherited by every process) copies from dedupe
//! kills are reported, not asserted (ClickHouse's FINAL absorbs them).
//!
//! Environment (all optional): `CHAOS_EVENTS` (100000), `CHAOS_SEED` (printed; the same
//! seed gives the same samples and kill intervals, the victims depend on timing),
//! `CHAOS_DUPLICATES` (0.1), `CHAOS_DRAIN_SECONDS` (bound on draining after the sender,
//! 3600; draining also ends when no stage commits anything for 3 minutes). The binaries
//! must be built (`make build`).
//!
//! A consumer stage is killed only after its current process has consumed something, so
//! each kill lands while the stage processes (not while it is still waiting for its
//! partitions). Every killed process is restarted at once with its slot's instance id
//! (`MAILPIPE_KAFKA__INSTANCE_ID`, see `Pipeline::start`), so its transactional producer
//! aborts the killed process's open transaction at once; for a consumer stage, the new
//! member's join starts a rebalance, which hands it the dead member's partitions once that
//! member's session has expired (session_timeout_ms, 6 s in config/mailpipe.toml).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailpipe_settings::Settings;
use mailpipe_test_support::kill::read_committed;
use mailpipe_test_support::lag::{self, lags};
use mailpipe_test_support::metrics::messages_consumed;
use mailpipe_test_support::pipeline::{mailpipe_binary, repo_root, Pipeline, PROCESSES};
use mailpipe_test_support::{accepted_event_ids, dev_settings, env_or, Rng};

/// Seconds between kills: uniformly in this range.
const KILL_EVERY_MS: std::ops::Range<u64> = 2_000..6_000;
/// Bound on the sender (it retries each request for a few minutes at most).
const SENDER_LIMIT: Duration = Duration::from_secs(3 * 3600);
/// Draining gives up when no stage's group committed anything for this long.
const DRAIN_STALL: Duration = Duration::from_secs(180);

/// A child process killed (SIGKILL) and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Per consumer stage: (messages on its input topic, of which committed by its group).
async fn progress_now(settings: &Settings) -> BTreeMap<&'static str, (i64, i64)> {
    lag::progress_now(&settings.kafka, &lag::stage_inputs(settings)).await
}

async fn clickhouse_strings(settings: &Settings, sql: &str) -> Vec<String> {
    let sql = sql.replace("{db}", &settings.clickhouse.database);
    mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&sql)
        .fetch_all::<String>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn clickhouse_u64(settings: &Settings, sql: &str) -> u64 {
    let sql = sql.replace("{db}", &settings.clickhouse.database);
    mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct Cell {
    provider: String,
    event_type: String,
    n: u64,
}

type Cells = BTreeMap<(String, String), u64>;

async fn cells(settings: &Settings, sql: &str) -> Cells {
    let sql = sql.replace("{db}", &settings.clickhouse.database);
    let rows: Vec<Cell> = mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&sql)
        .fetch_all()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|c| ((c.provider, c.event_type), c.n))
        .collect()
}

/// Per (provider, type): expected − found where positive (lost), found − expected where
/// positive (duplicated).
fn compare(expected: &Cells, found: &Cells) -> (Cells, Cells) {
    let keys: BTreeSet<&(String, String)> = expected.keys().chain(found.keys()).collect();
    let (mut lost, mut duplicated) = (Cells::new(), Cells::new());
    for key in keys {
        let e = expected.get(key).copied().unwrap_or(0);
        let f = found.get(key).copied().unwrap_or(0);
        if e > f {
            lost.insert(key.clone(), e - f);
        } else if f > e {
            duplicated.insert(key.clone(), f - e);
        }
    }
    (lost, duplicated)
}

fn render(cells: &Cells) -> String {
    let total: u64 = cells.values().sum();
    if total == 0 {
        return "0".into();
    }
    let parts: Vec<String> = cells
        .iter()
        .map(|((p, t), n)| format!("{p}/{t} {n}"))
        .collect();
    format!("{total} ({})", parts.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos: run by make chaos"]
async fn chaos_kills_lose_nothing_and_count_nothing_twice() {
    let started = Instant::now();
    let events: usize = env_or("CHAOS_EVENTS", 100_000);
    let seed: u64 = env_or("CHAOS_SEED", 0x6368_616f_7321);
    let duplicates: f64 = env_or("CHAOS_DUPLICATES", 0.1);
    let drain_limit = Duration::from_secs(env_or("CHAOS_DRAIN_SECONDS", 3_600));
    let mut rng = Rng::new(seed);
    eprintln!(
        "chaos: {events} events, {:.0} % of requests posted twice, a random process killed every \
         {}-{} s, seed {seed}",
        duplicates * 100.0,
        KILL_EVERY_MS.start / 1000,
        KILL_EVERY_MS.end / 1000
    );

    let mut pipeline = Pipeline::new(
        "chaos",
        &[("MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK", "true")],
    );
    pipeline.prepare();
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = pipeline.topic_prefix.clone();
    settings.clickhouse.database = pipeline.database.clone();
    let metrics_urls: BTreeMap<&str, String> = PROCESSES
        .iter()
        .map(|(stage, _, _)| {
            let url = match *stage {
                "receiver" => format!("{}/metrics", pipeline.receiver_url),
                stage => format!(
                    "http://{}/metrics",
                    pipeline.env[&format!(
                        "MAILPIPE_TELEMETRY__METRICS_LISTEN__{}",
                        stage.to_uppercase()
                    )]
                ),
            };
            (*stage, url)
        })
        .collect();
    let cert_url = pipeline.serve_dev_cert();
    pipeline.start_all();

    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let sender_out = dir.path().join("send-samples.txt");
    let (count_arg, seed_arg, dup_arg) =
        (events.to_string(), seed.to_string(), duplicates.to_string());
    let sending_started = Instant::now();
    let mut sender = Guard(
        Command::new(mailpipe_binary())
            .args(["send-samples", "--quiet", "--url", &pipeline.receiver_url])
            .args(["--count", &count_arg, "--duplicates", &dup_arg])
            .args(["--seed", &seed_arg, "--sns-cert-url", &cert_url])
            // Receiver outages last a moment, but a request may meet several of them: retry
            // longer than by default, still well within the 5 min timestamp tolerance.
            .args(["--max-attempts", "40", "--retry-for", "240"])
            .args(["--summary-json", summary_path.to_str().unwrap()])
            .envs(&pipeline.env)
            .current_dir(repo_root())
            .stdout(std::fs::File::create(&sender_out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mailpipe send-samples"),
    );

    // Kill a random running process every 2-6 s while the sender runs, and restart it at
    // once.
    let http = reqwest::Client::new();
    let mut kills: BTreeMap<&str, usize> = PROCESSES.iter().map(|(s, _, _)| (*s, 0)).collect();
    let mut next_kill = Instant::now() + Duration::from_millis(rng.in_range(KILL_EVERY_MS));
    let mut last_report = Instant::now();
    let sender_status = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(status) = sender.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            sending_started.elapsed() < SENDER_LIMIT,
            "send-samples still running after {SENDER_LIMIT:?}"
        );
        check_alive(&mut pipeline);
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let in_clickhouse =
                clickhouse_u64(&settings, "SELECT count() FROM {db}.email_events FINAL").await;
            eprintln!(
                "chaos: {:.0} s, {} kills, {in_clickhouse} events in ClickHouse, lag {:?}",
                started.elapsed().as_secs_f64(),
                kills.values().sum::<usize>(),
                lags(&progress_now(&settings).await)
            );
        }
        if Instant::now() < next_kill {
            continue;
        }
        // Candidates: running, and for a consumer stage, having consumed since its start.
        let mut candidates = Vec::new();
        for (stage, _, _) in PROCESSES {
            if !pipeline.is_running(stage) {
                continue;
            }
            if stage == "receiver"
                || messages_consumed(&http, &metrics_urls[stage])
                    .await
                    .unwrap_or(0.0)
                    > 0.0
            {
                candidates.push(stage);
            }
        }
        if candidates.is_empty() {
            continue;
        }
        let victim = candidates[rng.in_range(0..candidates.len() as u64) as usize];
        pipeline.kill(victim);
        *kills.get_mut(victim).unwrap() += 1;
        pipeline.start(victim);
        next_kill = Instant::now() + Duration::from_millis(rng.in_range(KILL_EVERY_MS));
    };
    let sending = sending_started.elapsed();
    let total_kills: usize = kills.values().sum();
    assert!(
        total_kills >= 1,
        "the sender finished after {sending:?}, before the first kill: raise CHAOS_EVENTS"
    );
    let sender_text = std::fs::read_to_string(&sender_out).unwrap_or_default();
    eprintln!(
        "chaos: send-samples finished ({sender_status}) after {:.1} s:\n{sender_text}",
        sending.as_secs_f64()
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&summary_path)
            .unwrap_or_else(|e| panic!("send-samples wrote no summary ({e}):\n{sender_text}")),
    )
    .unwrap();

    // Drain: every process up, until each stage's group has committed its whole input.
    let draining_started = Instant::now();
    // Ends early when no group commits anything for DRAIN_STALL (a stuck stage).
    let mut settled = 0;
    let mut lag = BTreeMap::new();
    let (mut committed_before, mut progress_at) = (0, Instant::now());
    while draining_started.elapsed() < drain_limit && progress_at.elapsed() < DRAIN_STALL {
        tokio::time::sleep(Duration::from_secs(2)).await;
        check_alive(&mut pipeline);
        let now = progress_now(&settings).await;
        let committed: i64 = now.values().map(|(_, c)| c).sum();
        if committed != committed_before {
            (committed_before, progress_at) = (committed, Instant::now());
        }
        lag = lags(&now);
        settled = if lag.values().all(|l| *l == 0) {
            settled + 1
        } else {
            0
        };
        if settled >= 2 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "chaos: draining {:.0} s, lag {lag:?}",
                draining_started.elapsed().as_secs_f64()
            );
        }
    }
    let draining = draining_started.elapsed();

    // Compare.
    let mut expected = Cells::new();
    for (provider, types) in summary["accepted"].as_object().unwrap() {
        for (event_type, n) in types.as_object().unwrap() {
            let n = n.as_u64().unwrap();
            if n > 0 {
                expected.insert((provider.clone(), event_type.clone()), n);
            }
        }
    }
    let unique: u64 = expected.values().sum();
    let found = cells(
        &settings,
        "SELECT provider, event_type, count() AS n FROM {db}.email_events FINAL \
         GROUP BY provider, event_type",
    )
    .await;
    let stats = cells(
        &settings,
        "SELECT provider, event_type, toUInt64(sum(events)) AS n FROM {db}.email_stats_1m FINAL \
         GROUP BY provider, event_type",
    )
    .await;
    let count_final: u64 = found.values().sum();
    let sum_final: u64 = stats.values().sum();
    let count_raw = clickhouse_u64(&settings, "SELECT count() FROM {db}.email_events").await;
    let (lost, duplicated) = compare(&expected, &found);
    // By event id, not only by count per cell (a lost and a spurious event in one cell
    // cancel out there).
    let expected_ids = accepted_event_ids(&summary);
    let stored_ids: BTreeSet<String> =
        clickhouse_strings(&settings, "SELECT event_id FROM {db}.email_events FINAL")
            .await
            .into_iter()
            .collect();
    let lost_ids: Vec<&String> = expected_ids.difference(&stored_ids).collect();
    let spurious_ids: Vec<&String> = stored_ids.difference(&expected_ids).collect();
    // The dedupe stage's own output, as a consumer of the topic sees it (read_committed):
    // every accepted event exactly once (in exactly-once mode; at least once otherwise).
    let unique_topic = format!("{}mail.events.unique", pipeline.topic_prefix);
    let on_unique = committed_event_ids(&settings, &unique_topic).await;
    let unique_missing = expected_ids
        .iter()
        .filter(|id| !on_unique.contains_key(*id))
        .count();
    let unique_spurious = on_unique
        .keys()
        .filter(|id| !expected_ids.contains(*id))
        .count();
    let unique_copies: usize = on_unique.values().map(|n| n - 1).sum();
    let (stats_lost, stats_duplicated) = compare(&expected, &stats);
    let requests = &summary["requests"];
    let kills_total: usize = kills.values().sum();
    let kills_text: Vec<String> = kills.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let wall = started.elapsed();
    println!(
        "chaos: sent {} ESP events in {} requests + {} duplicate posts ({} retries), {} accepted; \
         send-samples {:.1} s",
        summary["events"]["sent"],
        requests["sent"].as_u64().unwrap_or(0) - requests["duplicates"].as_u64().unwrap_or(0),
        requests["duplicates"],
        requests["retries"],
        summary["events"]["accepted"],
        sending.as_secs_f64()
    );
    println!("chaos: unique expected {unique}");
    println!(
        "chaos: in ClickHouse: count() FINAL = {count_final}, sum(events) FINAL = {sum_final}; \
         count() without FINAL = {count_raw} ({} copies in parts not merged yet, collapsed by FINAL)",
        count_raw.saturating_sub(count_final)
    );
    println!(
        "chaos: lost {}; duplicated {} (email_events FINAL); email_stats_1m FINAL: lost {}, \
         duplicated {}",
        render(&lost),
        render(&duplicated),
        render(&stats_lost),
        render(&stats_duplicated)
    );
    println!(
        "chaos: by event id: {} expected, {} in email_events FINAL, lost {}, spurious {}; \
         {unique_topic} (read_committed, {}): {} ids, missing {unique_missing}, spurious \
         {unique_spurious}, {unique_copies} extra copies",
        expected_ids.len(),
        stored_ids.len(),
        lost_ids.len(),
        spurious_ids.len(),
        if settings.kafka.exactly_once {
            "exactly-once"
        } else {
            "at-least-once"
        },
        on_unique.len()
    );
    println!(
        "chaos: kills {kills_total} ({}), every {}-{} s, seed {seed}",
        kills_text.join(", "),
        KILL_EVERY_MS.start / 1000,
        KILL_EVERY_MS.end / 1000
    );
    println!(
        "chaos: wall {:.1} s (sending {:.1} s, draining {:.1} s){}",
        wall.as_secs_f64(),
        sending.as_secs_f64(),
        draining.as_secs_f64(),
        if settled >= 2 {
            String::new()
        } else {
            format!(
                ", NOT drained after {:.0} s: lag {lag:?}",
                draining.as_secs_f64()
            )
        }
    );
    println!(
        "chaos: sent {} / unique {unique} / in ClickHouse {count_final} / lost {} / duplicated {}",
        summary["events"]["sent"],
        lost.values().sum::<u64>(),
        duplicated.values().sum::<u64>()
    );

    assert!(
        sender_status.success(),
        "send-samples failed ({sender_status}): some requests gave up:\n{sender_text}"
    );
    assert!(unique > 0, "nothing was accepted");
    if settled < 2 {
        for (stage, l) in lag.iter().filter(|(_, l)| **l > 0) {
            eprintln!(
                "--- {stage} (lag {l}): end of its log ---\n{}",
                pipeline.log_tail(stage, 30)
            );
        }
    }
    assert!(settled >= 2, "the pipeline did not drain: lag {lag:?}");
    assert!(
        lost.is_empty() && duplicated.is_empty(),
        "email_events FINAL differs from what was accepted: lost {}, duplicated {}",
        render(&lost),
        render(&duplicated)
    );
    assert_eq!(
        expected_ids.len() as u64,
        unique,
        "one id per accepted event"
    );
    assert!(
        lost_ids.is_empty() && spurious_ids.is_empty(),
        "email_events FINAL by event id: lost {:?}, spurious {:?}",
        &lost_ids[..lost_ids.len().min(5)],
        &spurious_ids[..spurious_ids.len().min(5)]
    );
    assert_eq!(
        (unique_missing, unique_spurious),
        (0, 0),
        "{unique_topic}: events missing, events that were never sent"
    );
    if settings.kafka.exactly_once {
        let twice: Vec<&String> = on_unique
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id)
            .take(5)
            .collect();
        assert_eq!(
            unique_copies, 0,
            "exactly-once: {unique_topic} (read_committed) holds ids more than once, e.g. \
             {twice:?}"
        );
    }
    assert_eq!(sum_final, unique, "sum(events) FROM email_stats_1m FINAL");
    assert!(stats_lost.is_empty() && stats_duplicated.is_empty());
    pipeline.stop_all();
    let _ = mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&format!(
            "DROP DATABASE IF EXISTS {}",
            settings.clickhouse.database
        ))
        .execute()
        .await;
}

/// How many times each event id is on `topic` (records of `EmailEvent`), read
/// `read_committed` from the start: what a consumer of the topic gets.
async fn committed_event_ids(settings: &Settings, topic: &str) -> BTreeMap<String, usize> {
    #[derive(serde::Deserialize)]
    struct Identity {
        event_id: String,
    }
    let codec = mailpipe_avro::AvroCodec::new(&settings.schema_registry.url).unwrap();
    let mut counts = BTreeMap::new();
    for record in read_committed(&settings.kafka, topic).await {
        let identity: Identity = codec
            .decode(&record.payload)
            .await
            .expect("an EmailEvent record");
        *counts.entry(identity.event_id).or_insert(0) += 1;
    }
    counts
}

/// Fails, with its log, when a process has exited on its own (a killed one is restarted at
/// once, so every process should be running).
fn check_alive(pipeline: &mut Pipeline) {
    for (stage, _, _) in PROCESSES {
        if !pipeline.is_running(stage) {
            panic!(
                "{stage} exited on its own; its log ({}):\n{}",
                pipeline.log_dir().display(),
                pipeline.log_tail(stage, 40)
            );
        }
    }
}
