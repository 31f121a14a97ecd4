//! The broker goes away mid-test and comes back: requests get 503 within the produce bound
//! and never 200 while it is down, `/readyz` says not ready, and once it is back (a fresh
//! broker process, topic recreated) requests succeed again without restarting the receiver.
//! The broker is a Tansu process of this test's own, on a free port.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{get_status, raw_topic, read_raw_until, start, test_settings};
use tokio::process::{Child, Command};

fn tansu_bin() -> PathBuf {
    std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cargo/bin/tansu")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a memory-storage broker on `port`, waits until it answers, creates `topic`.
async fn start_broker(port: u16, topic: &str, log: &std::path::Path) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        // Tansu would validate records against a registry named in its environment.
        .env_remove("SCHEMA_REGISTRY")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("tansu starts (cargo install tansu, see stack-notes)");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                topic,
                "--partitions",
                "1",
                "--broker",
                &url,
            ])
            .output()
            .await
            .unwrap();
        if created.status.success() {
            return child;
        }
        assert!(
            Instant::now() < deadline,
            "broker on {port} not up: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn post(client: &reqwest::Client, url: &str) -> (u16, Duration, Option<String>) {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"event":"delivered"}"#)
        .send()
        .await
        .expect("the receiver answers even when the broker is down");
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status == 503 {
        assert!(retry_after, "503 without Retry-After");
    }
    let id = body["request_id"].as_str().map(str::to_owned);
    (status, started.elapsed(), id)
}

#[tokio::test]
async fn broker_down_gives_503_within_the_bound_and_recovery_needs_no_restart() {
    let port = free_port();
    let dir = tempfile_dir();
    let log = dir.join("tansu.log");
    let mut settings = test_settings("rcv-outage");
    settings.kafka.brokers = format!("127.0.0.1:{port}");
    settings.receiver.produce_timeout_ms = 2000;
    let bound =
        Duration::from_millis(settings.receiver.produce_timeout_ms) + Duration::from_millis(1500);
    let brokers = settings.kafka.brokers.clone();
    let topic = raw_topic(&settings);
    let mut broker = start_broker(port, &topic, &log).await;
    let receiver = start(settings, true).await;
    let client = reqwest::Client::new();
    let url = receiver.url("/webhooks/sendgrid");
    assert_eq!(post(&client, &url).await.0, 200, "before the outage");

    broker.kill().await.unwrap();
    // Concurrent and then sequential requests while the broker is gone.
    let burst: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn({
                let (client, url) = (client.clone(), url.clone());
                async move { post(&client, &url).await }
            })
        })
        .collect();
    for handle in burst {
        let (status, elapsed, _) = handle.await.unwrap();
        assert_eq!(status, 503, "while the broker is down");
        assert!(elapsed <= bound, "503 after {elapsed:?}, bound {bound:?}");
    }
    for _ in 0..3 {
        let (status, elapsed, _) = post(&client, &url).await;
        assert_eq!(status, 503);
        assert!(elapsed <= bound, "503 after {elapsed:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_status(&receiver.url("/readyz")).await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz still ready with the broker down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A new broker process on the same port (memory storage: the topic must be recreated).
    let _broker = start_broker(port, &topic, &log).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut acknowledged = Vec::new();
    loop {
        let (status, _, id) = post(&client, &url).await;
        assert!(status == 200 || status == 503, "unexpected {status}");
        if status == 200 {
            acknowledged.push(id.unwrap());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "requests still fail 90 s after the broker returned; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..5 {
        let (status, _, id) = post(&client, &url).await;
        assert_eq!(status, 200, "after recovery");
        acknowledged.push(id.unwrap());
    }
    // Everything answered 200 after the restart is on the new broker's topic.
    let wanted = acknowledged.clone();
    let records = read_raw_until(&brokers, &topic, move |records| {
        wanted.iter().all(|id| records.iter().any(|r| &r.key == id))
    })
    .await;
    for id in &acknowledged {
        assert!(
            records.iter().any(|r| &r.key == id),
            "{id} answered 200 but not on the topic"
        );
    }
    receiver.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir); // kept when the test fails, for the broker log
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(mailpipe_test_support::unique_name("rcv-outage"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
