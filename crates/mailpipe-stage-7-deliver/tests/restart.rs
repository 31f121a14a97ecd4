//! The `mailpipe-deliver` binary SIGKILLed while retries are pending, and its Redis
//! restarted (stopped as an operator stops it, started again with its data): every pending
//! delivery still completes after the restart, and none is delivered twice — each target
//! answers 200 to exactly one attempt per delivery.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use mailpipe_avro::{AvroCodec, RULE_ACTION_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_test_support::records::{webhook_action, ActionRecord};
use mailpipe_test_support::redis::PrivateRedis;
use mailpipe_test_support::{
    create_topic, dev_config_path, dev_settings, free_port, produce_avro, topic_record_count,
    unique_name, workspace_binary,
};
use serde::Deserialize;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DELIVERIES: usize = 40;

#[derive(Debug, Deserialize)]
struct Outcome {
    action_id: String,
    outcome: String,
}

/// Per webhook-id: attempts seen, and 200s answered. The first two attempts of each get a
/// 503, the rest a 200.
type Seen = Arc<Mutex<BTreeMap<String, (u32, u32)>>>;

async fn start_target() -> (String, Seen) {
    let seen: Seen = Arc::new(Mutex::new(BTreeMap::new()));
    let log = seen.clone();
    let handler = move |headers: HeaderMap| {
        let log = log.clone();
        async move {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let mut log = log.lock().unwrap();
            let entry = log.entry(id).or_default();
            entry.0 += 1;
            if entry.0 <= 2 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                entry.1 += 1;
                StatusCode::OK
            }
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

/// The worker process, SIGKILLed when dropped (also when the test fails half way).
struct Worker(Child);

impl Worker {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_worker(prefix: &str, redis_url: &str, redis_prefix: &str, log: &std::fs::File) -> Worker {
    let binary = workspace_binary(
        "mailpipe-deliver",
        "cargo build -p mailpipe-stage-7-deliver",
    );
    Command::new(binary)
        .env("MAILPIPE_CONFIG", dev_config_path())
        .env("MAILPIPE_KAFKA__TOPIC_PREFIX", prefix)
        .env("MAILPIPE_REDIS__URL", redis_url)
        .env("MAILPIPE_DELIVERY__REDIS_PREFIX", redis_prefix)
        .env("MAILPIPE_DELIVERY__SECRETS", format!("[\"{SECRET}\"]"))
        .env("MAILPIPE_DELIVERY__ALLOW_TARGETS", "[\"127.0.0.1\"]")
        .env(
            "MAILPIPE_DELIVERY__SCHEDULE",
            "[\"1s\", \"1s\", \"1s\", \"1s\", \"1s\"]",
        )
        .env("MAILPIPE_DELIVERY__JITTER", "0")
        .env("MAILPIPE_DELIVERY__CONNECT_TIMEOUT_MS", "1000")
        .env("MAILPIPE_DELIVERY__TIMEOUT_MS", "2000")
        .env("MAILPIPE_DELIVERY__LEASE_MS", "3000")
        // Every first attempt fails on purpose: the breaker must not hold the target.
        .env("MAILPIPE_DELIVERY__BREAKER_FAILURES", "1000")
        .env("MAILPIPE_DELIVERY__TARGET_CONCURRENCY", "16")
        .env(
            "MAILPIPE_TELEMETRY__METRICS_LISTEN__DELIVER",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("MAILPIPE_TELEMETRY__LOG_FORMAT", "text")
        .env_remove("MAILPIPE_RUN_DIR")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .map(Worker)
        .expect("starting mailpipe-deliver")
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_and_a_restarted_redis_lose_and_double_no_delivery() {
    let settings = dev_settings();
    let prefix = format!("{}.", unique_name("deliver-restart"));
    let redis_prefix = format!("{}:", unique_name("deliver-restart"));
    let names = TopicNames::new(&prefix);
    let topic = names.name(Topic::Actions);
    create_topic(&topic, 2).await;
    create_topic(&names.name(Topic::Deliveries), 1).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let redis = PrivateRedis::start(free_port(), tempfile::tempdir().unwrap());
    let (url, seen) = start_target().await;

    let actions: Vec<(String, ActionRecord)> = (0..DELIVERIES)
        .map(|i| {
            let body = format!("{{\"n\":{i}}}");
            let a = webhook_action("notify", &format!("ev-{i}"), &url, &body);
            (a.action_id.clone(), a)
        })
        .collect();
    produce_avro(&settings, &topic, RULE_ACTION_SCHEMA, &actions).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();

    let log_path = std::env::temp_dir().join(format!("{}.log", unique_name("deliver-restart")));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut first = spawn_worker(&prefix, &redis.url(), &redis_prefix, &log);
    // Every delivery attempted once (and answered 503): all retries are pending.
    wait_until(
        "a first attempt of every delivery",
        Duration::from_secs(60),
        || seen.lock().unwrap().len() == DELIVERIES,
    )
    .await;
    first.kill();
    let mut redis = redis;
    redis.stop();
    let redis = redis.restart();
    let mut second = spawn_worker(&prefix, &redis.url(), &redis_prefix, &log);
    wait_until(
        "every delivery answered 200",
        Duration::from_secs(90),
        || {
            let seen = seen.lock().unwrap();
            seen.len() == DELIVERIES && seen.values().all(|(_, ok)| *ok >= 1)
        },
    )
    .await;
    // Longer than the schedule's waits and the lease: a second delivery would show.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let doubled: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, (_, ok))| *ok != 1)
        .map(|(id, counts)| (id.clone(), *counts))
        .collect();
    assert!(doubled.is_empty(), "delivered more than once: {doubled:?}");

    // Every delivery's outcome is on mail.actions (at least once: a record written twice
    // has the same action id).
    let total = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || topic_record_count(&topic)
    })
    .await
    .unwrap();
    let mut delivered = std::collections::BTreeSet::new();
    for (_, value) in mailpipe_test_support::consume_exactly(&topic, total as usize).await {
        let o: Outcome = codec.decode(&value).await.unwrap();
        if o.outcome == "delivered" {
            delivered.insert(o.action_id);
        }
    }
    assert_eq!(delivered.len(), DELIVERIES, "log: {}", log_path.display());
    second.kill();
}
