//! The deliver stage against the real broker, registry and Redis, run in process, with
//! HTTP targets on loopback (allowed explicitly in the test config): a target that fails
//! then succeeds gets exactly one successful delivery, every attempt signed (checked by the
//! Standard Webhooks reference library and by the verify stage's implementation) under the
//! same `webhook-id`;
//! `Retry-After` is honoured; a 410 disables the target until it is enabled; a slow target
//! does not delay another; the circuit breaker opens after consecutive failures and a
//! probe closes it; without the allow setting a loopback or metadata address is refused,
//! visibly, and dead-lettered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use mailpipe_avro::{AvroCodec, RULE_ACTION_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use mailpipe_test_support::records::{webhook_action, ActionRecord};
use mailpipe_test_support::{
    consume_exactly, create_topic, dev_settings, produce_avro, unique_name,
};
use mailpipe_verify_core::{testing, SourceConfig, SourceOptions};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request a target received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A target on loopback answering the n-th request with `answers[n]` (the last one
/// repeated), after `delay`.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Target {
    async fn start(
        answers: Vec<(u16, Vec<(&'static str, &'static str)>)>,
        delay: Duration,
    ) -> Target {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let answers = Arc::new(answers);
        let handler = move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let answers = answers.clone();
            async move {
                tokio::time::sleep(delay).await;
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Received {
                        at: Instant::now(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: body.to_vec(),
                    });
                    log.len() - 1
                };
                let (status, extra) = answers[n.min(answers.len() - 1)].clone();
                let mut response =
                    (StatusCode::from_u16(status).unwrap(), "answer").into_response();
                for (k, v) in extra {
                    response.headers_mut().insert(k, v.parse().unwrap());
                }
                response
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::any(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Target { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A pending webhook action to `url` (with a header the rule set), as the rules stage
/// writes it.
fn webhook(event: &str, url: &str) -> ActionRecord {
    let mut a = webhook_action(
        "notify-crm",
        event,
        url,
        &format!("{{\"event\":\"{event}\"}}"),
    );
    a.parameters.insert("header.x-team".into(), "mail".into());
    a.recipient = Some("ann@example.com".into());
    a
}

/// What the stage writes back (the fields checked here).
#[derive(Debug, Deserialize)]
struct Outcome {
    action_id: String,
    outcome: String,
    parameters: BTreeMap<String, String>,
    detail: String,
}

/// A `mail.deliveries` record (the fields checked here).
#[derive(Debug, Deserialize)]
struct Attempt {
    action_id: String,
    attempt: i32,
    status: Option<i32>,
    verdict: String,
    next_attempt_at: i64,
}

#[derive(Debug, Deserialize)]
struct DeadLetter {
    stage: String,
    reason: String,
    detail: String,
}

struct Setup {
    settings: Settings,
    names: TopicNames,
}

async fn setup(name: &str, allow: &[&str]) -> Setup {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name(name));
    settings.delivery.redis_prefix = format!("{}:", unique_name(name));
    settings.delivery.secrets = vec![SECRET.into()];
    settings.delivery.allow_targets = allow.iter().map(|s| s.to_string()).collect();
    settings.delivery.schedule = vec!["300ms".into(), "300ms".into(), "300ms".into()];
    settings.delivery.jitter = 0.0;
    settings.delivery.timeout_ms = 10_000;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    create_topic(&names.name(Topic::Actions), 2).await;
    create_topic(&names.name(Topic::Deliveries), 1).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    Setup { settings, names }
}

impl Setup {
    async fn produce(&self, actions: &[ActionRecord]) {
        let records: Vec<(String, &ActionRecord)> =
            actions.iter().map(|a| (a.action_id.clone(), a)).collect();
        let topic = self.names.name(Topic::Actions);
        produce_avro(&self.settings, &topic, RULE_ACTION_SCHEMA, &records).await;
    }

    fn start(
        &self,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let shutdown = CancellationToken::new();
        let stage = tokio::spawn(mailpipe_stage_7_deliver::run(
            self.settings.clone(),
            shutdown.clone(),
        ));
        (shutdown, stage)
    }

    /// The outcome records among the first `n` records of `mail.actions` after the inputs.
    async fn outcomes(&self, inputs: usize, n: usize) -> Vec<Outcome> {
        let codec = AvroCodec::new(&self.settings.schema_registry.url).unwrap();
        let mut out = Vec::new();
        for (_, value) in consume_exactly(&self.names.name(Topic::Actions), inputs + n).await {
            let o: Outcome = codec.decode(&value).await.unwrap();
            if o.outcome != "pending" {
                out.push(o);
            }
        }
        out
    }

    async fn attempts(&self, n: usize) -> Vec<Attempt> {
        let codec = AvroCodec::new(&self.settings.schema_registry.url).unwrap();
        let mut out = Vec::new();
        for (_, value) in consume_exactly(&self.names.name(Topic::Deliveries), n).await {
            out.push(codec.decode(&value).await.unwrap());
        }
        out.sort_by_key(|a: &Attempt| a.attempt);
        out
    }

    async fn dead_letters(&self, n: usize) -> Vec<DeadLetter> {
        let codec = AvroCodec::new(&self.settings.schema_registry.url).unwrap();
        let mut out = Vec::new();
        for (_, value) in consume_exactly(&self.names.name(Topic::Dlq), n).await {
            out.push(codec.decode(&value).await.unwrap());
        }
        out
    }

    fn store(&self) -> mailpipe_stage_7_deliver::store::Store {
        mailpipe_stage_7_deliver::connect_store(&self.settings).unwrap()
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Verifies a received request twice, independently of the signer: with the Standard
/// Webhooks reference library (`standardwebhooks`), and as the verify stage verifies a
/// Resend webhook (its own implementation of the spec, checked against svix's vectors).
/// Answers whether both accept it (and panics if they disagree).
fn verifies(r: &Received) -> bool {
    let mut map = HeaderMap::new();
    for (k, v) in &r.headers {
        map.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let reference = standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&r.body, &map)
        .is_ok();
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let now = mailpipe_stage::now_ms() / 1000;
    let source = SourceConfig::new(Provider::Resend, &[SECRET.into()], SourceOptions::default());
    let ours = testing::verify_with(&source, &testing::request(&headers, &r.body, now)).is_ok();
    assert_eq!(
        reference, ours,
        "the reference library and verify-core disagree"
    );
    reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_failing_twice_gets_one_signed_delivery_under_one_webhook_id() {
    let s = setup("deliver-retry", &["127.0.0.1"]).await;
    let target = Target::start(
        vec![(503, vec![]), (500, vec![]), (200, vec![])],
        Duration::ZERO,
    )
    .await;
    s.produce(&[webhook("ev-1", &target.url())]).await;
    let (shutdown, stage) = s.start();
    let outcomes = s.outcomes(1, 1).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].outcome, "delivered", "{outcomes:?}");
    assert_eq!(outcomes[0].action_id, "notify-crm/ev-1/0");
    assert_eq!(outcomes[0].parameters["attempts"], "3");
    assert_eq!(outcomes[0].parameters["status"], "200");
    // Nothing more comes: one successful delivery.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = target.received();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(r.header("webhook-id"), Some("notify-crm/ev-1/0"));
        assert_eq!(r.header("x-team"), Some("mail"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{\"event\":\"ev-1\"}");
        assert!(verifies(r), "the signature verifies: {:?}", r.headers);
    }
    let mut forged = received[2].clone();
    forged.body = b"{\"event\":\"ev-2\"}".to_vec();
    assert!(!verifies(&forged), "a changed body does not verify");
    // The schedule's waits (300 ms) separate the attempts.
    assert!(received[1].at - received[0].at >= Duration::from_millis(250));
    // Every attempt is on record (mail.deliveries).
    let attempts = s.attempts(3).await;
    let seen: Vec<(i32, Option<i32>, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.verdict.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some(503), "retry"),
            (2, Some(500), "retry"),
            (3, Some(200), "delivered")
        ]
    );
    assert!(attempts.iter().all(|a| a.action_id == "notify-crm/ev-1/0"));
    assert!(attempts[0].next_attempt_at > 0 && attempts[2].next_attempt_at == 0);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_is_honoured() {
    let s = setup("deliver-retry-after", &["127.0.0.1"]).await;
    let target = Target::start(
        vec![(429, vec![("retry-after", "2")]), (200, vec![])],
        Duration::ZERO,
    )
    .await;
    s.produce(&[webhook("ev-1", &target.url())]).await;
    let (shutdown, stage) = s.start();
    let outcomes = s.outcomes(1, 1).await;
    assert_eq!(outcomes[0].outcome, "delivered");
    let received = target.received();
    assert_eq!(received.len(), 2);
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(1_900),
        "waited {gap:?}, not the 2 s asked"
    );
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_410_disables_the_target_until_it_is_enabled() {
    let s = setup("deliver-gone", &["127.0.0.1"]).await;
    let target = Target::start(vec![(410, vec![]), (200, vec![])], Duration::ZERO).await;
    s.produce(&[webhook("ev-1", &target.url())]).await;
    let (shutdown, stage) = s.start();
    let outcomes = s.outcomes(1, 1).await;
    assert_eq!(outcomes[0].outcome, "failed", "{outcomes:?}");
    assert!(
        outcomes[0].detail.contains("target disabled"),
        "{outcomes:?}"
    );
    let store = s.store();
    let target_key = format!("http://{}", target.addr);
    assert!(store.disabled().await.unwrap().contains_key(&target_key));
    let letters = s.dead_letters(1).await;
    assert_eq!(
        (letters[0].stage.as_str(), letters[0].reason.as_str()),
        ("deliver", "delivery_failed")
    );
    // While disabled, another delivery to it waits, unattempted.
    s.produce(&[webhook("ev-2", &target.url())]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(target.received().len(), 1);
    let pending = store.pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0.id(), "notify-crm/ev-2/0");
    // Enabled again (as `mailpipe deliveries enable` does), what waited goes out.
    assert!(store.enable(&target_key).await.unwrap());
    wait_for("the second delivery", Duration::from_secs(10), || {
        target.received().len() == 2
    })
    .await;
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_target_does_not_delay_another() {
    let s = setup("deliver-slow", &["127.0.0.1"]).await;
    let slow = Target::start(vec![(200, vec![])], Duration::from_secs(4)).await;
    let fast = Target::start(vec![(200, vec![])], Duration::ZERO).await;
    // A backlog for the slow target: 300 deliveries, 4 at a time, 4 s each.
    let backlog: Vec<ActionRecord> = (0..300)
        .map(|i| webhook(&format!("slow-{i}"), &slow.url()))
        .collect();
    s.produce(&backlog).await;
    let (shutdown, stage) = s.start();
    wait_for(
        "the slow target's first requests",
        Duration::from_secs(10),
        || !slow.received().is_empty(),
    )
    .await;
    // Then one for the fast target, behind the backlog on mail.actions and in the schedule.
    let sent = Instant::now();
    s.produce(&[webhook("fast-1", &fast.url())]).await;
    wait_for(
        "the fast target's delivery",
        Duration::from_secs(10),
        || !fast.received().is_empty(),
    )
    .await;
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the fast target waited {:?} behind the slow one",
        sent.elapsed()
    );
    assert!(
        slow.received().len() <= 8,
        "the slow target gets 4 at a time"
    );
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loopback_and_metadata_addresses_are_refused_without_the_allow_setting() {
    let s = setup("deliver-ssrf", &[]).await;
    let target = Target::start(vec![(200, vec![])], Duration::ZERO).await;
    let by_name = format!("http://localhost:{}/hook", target.addr.port());
    s.produce(&[
        webhook("ev-1", &by_name),
        webhook("ev-2", "http://169.254.169.254/latest/meta-data/"),
    ])
    .await;
    let (shutdown, stage) = s.start();
    let mut outcomes = s.outcomes(2, 2).await;
    outcomes.sort_by(|a, b| a.action_id.cmp(&b.action_id));
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for o in &outcomes {
        assert_eq!(o.outcome, "failed", "{o:?}");
        assert!(o.detail.contains("SSRF"), "{o:?}");
    }
    assert!(outcomes[0].detail.contains("loopback"), "{:?}", outcomes[0]);
    assert!(outcomes[1].detail.contains("metadata"), "{:?}", outcomes[1]);
    assert!(target.received().is_empty(), "nothing reached the target");
    let letters = s.dead_letters(2).await;
    assert!(letters
        .iter()
        .all(|l| l.reason == "delivery_failed" && l.detail.contains("SSRF")));
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_opens_after_consecutive_failures_and_a_probe_closes_it() {
    let mut s = setup("deliver-breaker", &["127.0.0.1"]).await;
    s.settings.delivery.schedule = vec!["100ms".into(); 10];
    s.settings.delivery.breaker_failures = 3;
    s.settings.delivery.breaker_cooldown_ms = 2_000;
    let target = Target::start(
        vec![(503, vec![]), (503, vec![]), (503, vec![]), (200, vec![])],
        Duration::ZERO,
    )
    .await;
    s.produce(&[webhook("ev-1", &target.url())]).await;
    let (shutdown, stage) = s.start();
    let outcomes = s.outcomes(1, 1).await;
    assert_eq!(outcomes[0].outcome, "delivered", "{outcomes:?}");
    let received = target.received();
    assert_eq!(received.len(), 4);
    // Three failures 100 ms apart open the breaker: the fourth attempt (the probe) waits
    // for the 2 s cooldown, not the schedule's 100 ms.
    assert!(received[2].at - received[1].at < Duration::from_millis(1_000));
    let held = received[3].at - received[2].at;
    assert!(
        held >= Duration::from_millis(1_900),
        "the probe came after {held:?}"
    );
    // The probe succeeded: the breaker is closed, the next delivery goes at once.
    let sent = Instant::now();
    s.produce(&[webhook("ev-2", &target.url())]).await;
    wait_for("the next delivery", Duration::from_secs(10), || {
        target.received().len() == 5
    })
    .await;
    assert!(
        sent.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        sent.elapsed()
    );
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_can_have_its_own_schedule() {
    let mut s = setup("deliver-own-schedule", &["127.0.0.1"]).await;
    let target = Target::start(vec![(503, vec![]), (200, vec![])], Duration::ZERO).await;
    let own = mailpipe_settings::DeliveryTargetSettings {
        schedule: Some(vec!["1500ms".into()]),
        ..Default::default()
    };
    s.settings
        .delivery
        .targets
        .insert(format!("http://{}", target.addr), own);
    s.produce(&[webhook("ev-1", &target.url())]).await;
    let (shutdown, stage) = s.start();
    let outcomes = s.outcomes(1, 1).await;
    assert_eq!(outcomes[0].outcome, "delivered");
    let received = target.received();
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(1_400),
        "waited {gap:?}: the target's 1.5 s, not [delivery]'s 300 ms"
    );
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

/// The store's fencing: a result stored under a lease that was taken over is discarded; an
/// operator's retry does not start a second attempt of a delivery under a live lease.
#[tokio::test]
async fn a_result_under_a_lost_lease_is_discarded() {
    use mailpipe_stage_7_deliver::job::{ActionView, Job, Origin};
    use mailpipe_stage_7_deliver::store::{Retried, Stored};
    let s = setup("deliver-lease", &[]).await;
    let store = s.store();
    let record = webhook("ev-1", "http://crm.example.com/hook");
    let action: ActionView =
        serde_json::from_value(serde_json::to_value(&record).unwrap()).unwrap();
    let job = Job {
        action,
        origin: Origin::new("t", 0, 0, b""),
        attempts: 0,
        created_ms: 0,
        last: None,
        lease: String::new(),
    };
    assert!(store.enqueue(&job, 1_000).await.unwrap());
    assert!(!store.enqueue(&job, 1_000).await.unwrap(), "enqueued once");
    let first = store.claim(1_000, 2_000, 10).await.unwrap().remove(0);
    assert_eq!(
        store.retry(first.id(), 1_500).await.unwrap(),
        Retried::Busy,
        "no second attempt while the lease is live"
    );
    // The lease runs out; another claim takes the delivery over.
    let second = store.claim(2_500, 9_000, 10).await.unwrap().remove(0);
    assert_ne!(first.lease, second.lease);
    assert_eq!(
        store.reschedule(&first, 3_000, None).await.unwrap(),
        Stored::LeaseLost
    );
    assert_eq!(
        store.finish(&first, "{}", false, None).await.unwrap(),
        Stored::LeaseLost
    );
    assert_eq!(
        store.finish(&second, "{}", false, None).await.unwrap(),
        Stored::Yes
    );
    assert!(store.pending(10).await.unwrap().is_empty());
    assert!(
        !store.enqueue(&job, 1_000).await.unwrap(),
        "an ended delivery never restarts"
    );
}
