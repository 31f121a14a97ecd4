//! The broker goes away mid-test and comes back: requests get 503 within the produce bound
//! and never 200 while it is down, `/readyz` says not ready, and once it is back (the same
//! broker restarted on its own data) requests succeed again without restarting the receiver.
//! The broker is an Apache Kafka process of this test's own (the local stack's jars and
//! configuration, `scripts/stack.sh kafka-exec`), on free ports.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{get_status, raw_topic, read_raw_until, start, test_settings};
use mailpipe_test_support::broker::KafkaBroker;
use mailpipe_test_support::create_topic_on;

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
    let dir = tempfile_dir();
    let mut broker = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || KafkaBroker::start_new(&dir)
    })
    .await
    .unwrap();
    let log = broker.log_path();
    let mut settings = test_settings("rcv-outage");
    settings.kafka.brokers = broker.bootstrap();
    settings.receiver.produce_timeout_ms = 2000;
    // librdkafka would keep a record for 120 s; the receiver must answer by its own bound
    // (2 s). The bound checked is generous (a loaded machine answers late), yet far below
    // what waiting for librdkafka would take.
    settings.kafka.message_timeout_ms = 120_000;
    let bound =
        Duration::from_millis(settings.receiver.produce_timeout_ms) + Duration::from_secs(20);
    let brokers = settings.kafka.brokers.clone();
    let topic = raw_topic(&settings);
    create_topic_on(&brokers, &topic, 1).await;
    let receiver = start(settings, true).await;
    // Every request is bounded: a receiver that stopped answering fails the test, not hangs it.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = receiver.url("/webhooks/sendgrid");
    assert_eq!(post(&client, &url).await.0, 200, "before the outage");

    let mut broker = tokio::task::spawn_blocking(move || {
        broker.kill();
        broker
    })
    .await
    .unwrap();
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

    // The same broker restarted on its data (the topic is still there), as after a crash.
    let _broker = tokio::task::spawn_blocking(move || {
        broker.start();
        broker
    })
    .await
    .unwrap();
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
    // Everything answered 200 after the restart is on the topic.
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
