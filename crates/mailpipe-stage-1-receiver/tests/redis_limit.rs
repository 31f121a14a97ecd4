//! The Redis-backed rate limit against the local Redis: two receivers share one budget,
//! and a Redis that does not answer lets requests through (counted), never refuses them.

mod common;

use common::{start_with_topic, test_settings, Running};
use mailpipe_settings::RateLimitBackend;
use mailpipe_telemetry::names;
use mailpipe_test_support::unique_name;

async fn post(receiver: &Running) -> (u16, Option<String>) {
    let response = reqwest::Client::new()
        .post(receiver.url("/webhooks/mailjet"))
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after)
}

#[tokio::test]
async fn two_receivers_share_one_bucket_in_redis() {
    let mut settings = test_settings("rcv-redis");
    settings.redis.key_prefix = format!("{}:", unique_name("rl"));
    let rl = &mut settings.receiver.rate_limit;
    rl.backend = RateLimitBackend::Redis;
    rl.redis_timeout_ms = 1000;
    rl.per_source_per_second = 0.2; // one token every 5 s: none comes back during the test
    rl.per_source_burst = 4;
    let first = start_with_topic(settings.clone()).await;
    let second = common::start(settings, true).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let receiver = if i % 2 == 0 { &first } else { &second };
        statuses.push(post(receiver).await);
    }
    let allowed = statuses.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(
        allowed, 4,
        "burst of 4 shared by both receivers: {statuses:?}"
    );
    for (status, retry_after) in &statuses[4..] {
        assert_eq!(*status, 429);
        let secs: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=5).contains(&secs), "Retry-After {secs}");
    }
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

#[tokio::test]
async fn unreachable_redis_allows_and_counts() {
    let mut settings = test_settings("rcv-redis-down");
    // Nothing listens on port 1.
    settings.redis.url = "redis://127.0.0.1:1".into();
    let rl = &mut settings.receiver.rate_limit;
    rl.backend = RateLimitBackend::Redis;
    rl.per_source_per_second = 0.01;
    rl.per_source_burst = 1;
    let receiver = start_with_topic(settings).await;
    for _ in 0..3 {
        assert_eq!(
            post(&receiver).await.0,
            200,
            "a dead limiter must not refuse"
        );
    }
    let metrics = reqwest::get(receiver.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fallbacks: f64 = metrics
        .lines()
        .find(|l| l.starts_with(names::RECEIVER_RATE_LIMIT_FALLBACKS))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        fallbacks >= 3.0,
        "fallbacks counted: {fallbacks}\n{metrics}"
    );
    receiver.stop().await.unwrap();
}
