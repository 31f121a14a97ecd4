//! Bench (ignored; run by scripts/bench-pipeline.sh): the whole pipeline — receiver and
//! every stage as separate processes — fed by `mailpipe send-samples` (all twelve
//! providers, as fast as it can post). Reports:
//! - sustained events/s from the receiver to ClickHouse (distinct events queryable in
//!   `email_events` over the time from the first request received to the last row visible);
//! - latency from the receiver taking the request (`received_at`, just before its 2xx) to
//!   the row being queryable, p50/p99/max;
//! - each process's peak RSS (VmHWM) and its largest RSS sampled during the run.
//!
//! Run with release binaries (`cargo build --release --workspace`, done by the script);
//! `mailpipe_binary` finds them next to the release test executable.

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpipe_test_support::dev_settings;
use mailpipe_test_support::pipeline::{mailpipe_binary, repo_root, Pipeline, PROCESSES};

/// (VmRSS, VmHWM) of a process in MiB.
fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct Seen {
    event_id: String,
    source: String,
    received_at_ms: i64,
}

#[tokio::test]
#[ignore = "bench: run by scripts/bench-pipeline.sh"]
async fn bench_whole_pipeline() {
    let count: usize = std::env::var("PIPELINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut pipeline = Pipeline::new(
        "pipebench",
        &[("MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK", "true")],
    );
    pipeline.prepare();
    let cert_url = pipeline.serve_dev_cert();
    pipeline.start_all();
    // Let every consumer join its group before traffic starts.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let summary = tempfile::NamedTempFile::new().unwrap();
    let count_arg = count.to_string();
    let mut sender = Command::new(mailpipe_binary())
        .args(["send-samples", "--quiet", "--url", &pipeline.receiver_url])
        .args([
            "--count",
            &count_arg,
            "--sns-cert-url",
            &cert_url,
            "--seed",
            "11",
        ])
        .args(["--summary-json", summary.path().to_str().unwrap()])
        .envs(&pipeline.env)
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let client = mailpipe_clickhouse::client(&dev_settings().clickhouse);
    let db = pipeline.database.clone();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut first_received = i64::MAX;
    let mut last_visible = 0i64;
    let mut rss: BTreeMap<&str, f64> = BTreeMap::new();
    let mut high_water = 0i64;
    let started = Instant::now();
    let mut sender_done = false;
    let mut idle_since: Option<Instant> = None;
    loop {
        // New rows since the last poll (received_at only grows within a few seconds).
        let sql = format!(
            "SELECT event_id, source, received_at_ms FROM {db}.email_events \
             WHERE received_at_ms >= {}",
            high_water - 30_000
        );
        let rows: Vec<Seen> = client.query(&sql).fetch_all().await.unwrap_or_default();
        let visible = now_ms();
        let mut new = 0;
        for row in rows {
            if seen.insert((row.source, row.event_id)) {
                new += 1;
                latencies.push((visible - row.received_at_ms) as f64 / 1000.0);
                first_received = first_received.min(row.received_at_ms);
                high_water = high_water.max(row.received_at_ms);
                last_visible = visible;
            }
        }
        for (stage, _, _) in PROCESSES {
            if let Some((now, _)) = pipeline.pid(stage).and_then(rss_mib) {
                let max = rss.entry(stage).or_insert(0.0);
                *max = max.max(now);
            }
        }
        if !sender_done {
            sender_done = sender.try_wait().unwrap().is_some();
        }
        if seen.len() >= count {
            break;
        }
        if sender_done && new == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(60) {
                break;
            }
        } else {
            idle_since = None;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "bench stalled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sender_status = sender.wait().unwrap();
    let peaks: BTreeMap<&str, f64> = PROCESSES
        .iter()
        .filter_map(|(stage, _, _)| Some((*stage, pipeline.pid(stage).and_then(rss_mib)?.1)))
        .collect();
    pipeline.stop_all();
    let _ = client
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await;

    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let secs = (last_visible - first_received) as f64 / 1000.0;
    println!("send-samples: {count} events, exit {sender_status}");
    println!(
        "events in ClickHouse: {} of {count}; sustained {:.0} events/s (first received -> last visible, {secs:.1} s)",
        seen.len(),
        seen.len() as f64 / secs
    );
    println!(
        "latency received -> queryable: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        pct(0.50),
        pct(0.99),
        latencies.last().unwrap()
    );
    println!("| process | peak RSS (VmHWM) | largest sampled RSS |");
    println!("|---|---|---|");
    for (stage, _, _) in PROCESSES {
        println!(
            "| {stage} | {:.1} MiB | {:.1} MiB |",
            peaks.get(stage).copied().unwrap_or(f64::NAN),
            rss.get(stage).copied().unwrap_or(f64::NAN)
        );
    }
}
