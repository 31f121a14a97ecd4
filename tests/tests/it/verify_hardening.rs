//! The verify stage's hardening against the real broker, registry and Redis (issue #15):
//!
//! - an SNS message whose `SigningCertURL` is on an allowed-looking host that does not
//!   resolve ends as `certificate_unavailable` on mail.rejected within the fetch budget,
//!   while correctly signed webhooks behind it are verified; the same URL again is refused
//!   at once (negative cache);
//! - a Mailgun (timestamp, token, signature) triple posted again with another body is
//!   rejected as `replayed` by another verify instance (tokens live in Redis), while a
//!   redelivery of the same raw record is not a replay;
//! - while Redis is down, Mailgun requests are held, neither verified nor rejected, and
//!   are judged correctly once it is back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpipe_avro::records::{Header, RawRecord, RejectedRecord, VerifiedRecord};
use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema, RAW_REQUEST_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_settings::Settings;
use mailpipe_test_support::redis::PrivateRedis;
use mailpipe_test_support::{create_topic, dev_settings, free_port, unique_name};
use mailpipe_verify_core::testing;
use mailpipe_verify_core::Request;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The dev config's generic and Mailgun keys, and its SES TopicArn.
const GENERIC_KEY: &str = "dev-only-generic-hmac-key";
const MAILGUN_KEY: &str = "dev-only-mailgun-signing-key";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What came out for one request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Out {
    Verified,
    Rejected(String),
}

/// One verify stage on its own topics (prefix), started in-process.
struct Harness {
    settings: Settings,
    raw_topic: String,
    codec: AvroCodec,
    schema: RegisteredSchema,
    producer: FutureProducer,
    reader: StreamConsumer,
    shutdown: CancellationToken,
    stage: Option<JoinHandle<()>>,
}

impl Harness {
    /// Topics for `settings` (a unique prefix is set), and a reader of both outputs.
    async fn new(mut settings: Settings, name: &str) -> Harness {
        settings.kafka.topic_prefix = format!("{}.", unique_name(name));
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let raw_topic = names.name(Topic::Raw);
        let outputs = [names.name(Topic::Verified), names.name(Topic::Rejected)];
        create_topic(&raw_topic, 2).await;
        for topic in &outputs {
            create_topic(topic, 1).await;
        }
        create_topic(&names.name(Topic::Dlq), 1).await;
        let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
        let schema = codec
            .register(&TopicSchema::new(&raw_topic, RAW_REQUEST_SCHEMA).unwrap())
            .await
            .unwrap();
        let reader: StreamConsumer =
            mailpipe_kafka::consumer_config(&settings.kafka, &unique_name("reader"))
                .create()
                .unwrap();
        let topics: Vec<&str> = outputs.iter().map(String::as_str).collect();
        reader.subscribe(&topics).unwrap();
        Harness {
            producer: mailpipe_kafka::create_producer(&settings.kafka).unwrap(),
            settings,
            raw_topic,
            codec,
            schema,
            reader,
            shutdown: CancellationToken::new(),
            stage: None,
        }
    }

    fn start(&mut self) {
        let run = mailpipe_stage_2_verify::run(self.settings.clone(), self.shutdown.clone());
        self.stage = Some(tokio::spawn(async move { run.await.unwrap() }));
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(stage) = self.stage.take() {
            stage.await.unwrap();
        }
    }

    /// Writes one raw record (key = request id) to `partition` of the raw topic.
    async fn post(&self, id: &str, provider: &str, request: &Request, partition: i32) {
        let record = raw(id, provider, request);
        let payload = self.schema.encode(&record, record.body.len()).unwrap();
        let r = FutureRecord::to(&self.raw_topic)
            .key(id.as_bytes())
            .partition(partition)
            .payload(payload.as_slice());
        mailpipe_kafka::send_and_wait(&self.producer, r, Duration::from_secs(10))
            .await
            .unwrap();
    }

    /// The next output (request id, what it became), or None after `wait`.
    async fn next(&self, wait: Duration) -> Option<(String, Out)> {
        let m = tokio::time::timeout(wait, self.reader.recv()).await.ok()?;
        let m = m.unwrap();
        let payload = m.payload().unwrap();
        if m.topic().ends_with("mail.verified") {
            let record: VerifiedRecord = self.codec.decode(payload).await.unwrap();
            Some((record.request_id, Out::Verified))
        } else {
            let record: RejectedRecord = self.codec.decode(payload).await.unwrap();
            Some((record.request_id, Out::Rejected(record.reason)))
        }
    }

    /// Exactly `n` outputs within `limit`, each with the time it arrived after `since`.
    async fn take(
        &self,
        n: usize,
        limit: Duration,
        since: Instant,
    ) -> Vec<(String, Out, Duration)> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some((id, what)) => out.push((id, what, since.elapsed())),
                None => panic!(
                    "only {} of {n} outputs within {limit:?}: {out:?}",
                    out.len()
                ),
            }
        }
        out
    }
}

fn raw(id: &str, provider: &str, request: &Request) -> RawRecord {
    RawRecord {
        request_id: id.to_string(),
        received_at: request.received_at_ms,
        provider: provider.into(),
        source: provider.into(),
        method: request.method.clone(),
        path: format!("/webhooks/{provider}"),
        query: request.query.clone(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        remote_addr: Some("127.0.0.1".into()),
        body: request.body.clone(),
    }
}

/// A generic webhook signed with the dev config's key.
fn generic(event_id: &str, now: i64) -> Request {
    let body = format!(
        r#"[{{"event_id":"{event_id}","event_type":"delivered","recipient":"ann@example.com","occurred_at":"2026-11-26T17:00:00Z"}}]"#
    );
    let signature = testing::hmac_sha256(GENERIC_KEY.as_bytes(), &[body.as_bytes()]);
    let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
    testing::request(
        &[("content-type", "application/json"), ("x-signature", &hex)],
        body.as_bytes(),
        now,
    )
}

/// A Mailgun webhook signed with the dev config's key; `event` stands for the body, which
/// Mailgun does not sign.
fn mailgun(token: &str, event: &str, now: i64) -> Request {
    let ts = now.to_string();
    let signature = testing::mailgun_signature(MAILGUN_KEY, &ts, token);
    let body = serde_json::json!({
        "signature": {"timestamp": ts, "token": token, "signature": signature},
        "event-data": {"event": event, "id": unique_name("ev"), "recipient": "ann@example.com"}
    });
    testing::request(
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
        now,
    )
}

/// The outside report: one SNS Notification on the dev config's TopicArn whose
/// SigningCertURL is on an allowed host that does not resolve, then four correctly signed
/// generic webhooks. Before the fix the fetch was retried forever, inline, and none of the
/// four was ever verified. At least once, nothing waits for the fetch but the message that
/// needs it.
#[tokio::test]
async fn an_unresolvable_certificate_url_is_rejected_within_the_budget_and_blocks_nothing() {
    unresolvable_certificate_url(false).await;
}

/// Exactly once, outputs become visible with their offsets, which are committed as a
/// prefix: the later messages of the waiting message's partition are held until it is
/// settled (one budget at most); the other partition flows meanwhile.
#[tokio::test]
async fn exactly_once_an_unresolvable_certificate_url_holds_only_its_partition() {
    unresolvable_certificate_url(true).await;
}

async fn unresolvable_certificate_url(exactly_once: bool) {
    let now = now_secs();
    let mut settings = dev_settings();
    settings.kafka.exactly_once = exactly_once;
    // As the local stack runs verify (MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK=true): the
    // bad URL is an https SNS URL, allowed either way.
    settings
        .sources
        .get_mut("ses")
        .unwrap()
        .sns_insecure_loopback = true;
    let topic_arn = settings.sources["ses"].sns_topic_arns[0].clone();
    let budget = Duration::from_millis(settings.verify.certificate_fetch_budget_ms);
    let mut h = Harness::new(settings, "verify_budget").await;

    let bad_url = "https://sns.nosuch-1.amazonaws.com/SimpleNotificationService-0000.pem";
    let timestamp = chrono::DateTime::from_timestamp(now, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let sns = |message_id: &str| {
        let fields = [
            ("Type", "Notification"),
            ("MessageId", message_id),
            ("TopicArn", topic_arn.as_str()),
            ("Timestamp", timestamp.as_str()),
            ("Message", "{\"eventType\":\"Delivery\"}"),
        ];
        let body = testing::sns_message(&testing::rsa_keys()[0], 2, bad_url, &fields);
        testing::request(&[("content-type", "text/plain; charset=UTF-8")], &body, now)
    };
    h.start();
    let started = Instant::now();
    h.post("ses-bad-url", "ses", &sns("m-bad-1"), 0).await;
    for i in 0..4 {
        h.post(
            &format!("generic-{i}"),
            "generic",
            &generic(&unique_name("ev"), now),
            i % 2,
        )
        .await;
    }
    // Exactly once, only partition 1's (odd-numbered) come before the budget.
    let quick = if exactly_once { 2 } else { 4 };
    let on_free_partition = |id: &str| !exactly_once || id.ends_with(['1', '3']);
    let mut outputs = h.take(quick, budget, started).await;
    for (id, _, _) in &outputs {
        assert!(on_free_partition(id), "{id} came before the budget");
    }
    // Meanwhile (the fetch still under way, in the background), later requests on both
    // partitions, the bad URL's included, are verified too: in later batches.
    let later = Instant::now();
    for i in 0..4 {
        h.post(
            &format!("generic-later-{i}"),
            "generic",
            &generic(&unique_name("ev"), now),
            i % 2,
        )
        .await;
    }
    let meanwhile = h.take(quick, budget, later).await;
    for (id, what, after) in &meanwhile {
        println!("{id}: {what:?} {after:?} after it was posted");
        assert!(id.starts_with("generic-later-"), "{id} came first");
        assert!(on_free_partition(id), "{id} came before the budget");
        assert_eq!(what, &Out::Verified, "{id}");
        assert!(
            *after < budget / 3,
            "{id} waited {after:?}, the fetch budget being {budget:?}"
        );
    }
    // The rejection, and exactly once the requests it held.
    let rest = 9 - 2 * quick;
    outputs.extend(
        h.take(rest, budget + Duration::from_secs(20), started)
            .await,
    );
    for (id, what, after) in &outputs {
        println!("{id}: {what:?} after {after:?}");
        if id == "ses-bad-url" {
            assert_eq!(what, &Out::Rejected("certificate_unavailable".into()));
            assert!(*after >= budget, "rejected before its budget: {after:?}");
            assert!(*after < budget + Duration::from_secs(10), "{after:?}");
        } else {
            assert_eq!(what, &Out::Verified, "{id}");
            assert!(*after < budget + Duration::from_secs(10), "{id}: {after:?}");
        }
    }

    // The same URL again, just after: refused from the negative cache, without a fetch.
    let again = Instant::now();
    h.post("ses-bad-url-again", "ses", &sns("m-bad-2"), 1).await;
    h.post(
        "generic-after",
        "generic",
        &generic(&unique_name("ev"), now),
        1,
    )
    .await;
    let outputs = h.take(2, Duration::from_secs(15), again).await;
    for (id, what, after) in &outputs {
        println!("{id}: {what:?} after {after:?}");
        let want = if id == "ses-bad-url-again" {
            Out::Rejected("certificate_unavailable".into())
        } else {
            Out::Verified
        };
        assert_eq!(what, &want, "{id}");
        assert!(*after < Duration::from_secs(5), "{id} took {after:?}");
    }
    assert!(
        h.next(Duration::from_secs(2)).await.is_none(),
        "nothing more"
    );
    h.stop().await;
}

/// Two verify instances (their own topics and groups, one Redis): a captured Mailgun triple
/// re-posted with an invented body is a replay on the other instance, while a redelivery of
/// the first raw record (same request id) is not.
#[tokio::test]
async fn a_mailgun_token_is_accepted_once_across_instances() {
    let now = now_secs();
    let mut settings = dev_settings();
    settings.redis.key_prefix = format!("{}:", unique_name("verify_tokens"));
    let mut first = Harness::new(settings.clone(), "verify_tokens_a").await;
    let mut second = Harness::new(settings, "verify_tokens_b").await;
    first.start();
    second.start();
    let token = unique_name("token");
    let original = mailgun(&token, "delivered", now);
    let forged = mailgun(&token, "complained", now + 1);
    assert_ne!(original.body, forged.body);

    let t = Instant::now();
    first.post("mg-original", "mailgun", &original, 0).await;
    let out = first.take(1, Duration::from_secs(30), t).await;
    assert_eq!(
        (out[0].0.as_str(), &out[0].1),
        ("mg-original", &Out::Verified)
    );

    second.post("mg-forged", "mailgun", &forged, 1).await;
    second.post("mg-original", "mailgun", &original, 0).await;
    let mut out: Vec<(String, Out)> = second
        .take(2, Duration::from_secs(30), t)
        .await
        .into_iter()
        .map(|(id, what, _)| (id, what))
        .collect();
    out.sort();
    assert_eq!(
        out,
        [
            ("mg-forged".to_string(), Out::Rejected("replayed".into())),
            ("mg-original".to_string(), Out::Verified),
        ]
    );
    first.stop().await;
    second.stop().await;
}

/// While Redis is down, a replay and a fresh Mailgun request are both held: neither
/// verified (unchecked) nor rejected (for an outage). Once Redis is back, the replay is
/// rejected and the fresh one verified, without restarting the stage.
#[tokio::test]
async fn a_redis_outage_holds_mailgun_requests() {
    let now = now_secs();
    let port = free_port();
    let mut redis = PrivateRedis::start(port, tempfile::tempdir().unwrap());
    let mut settings = dev_settings();
    settings.redis.url = format!("redis://127.0.0.1:{port}");
    settings.verify.redis_timeout_ms = 500;
    let mut h = Harness::new(settings, "verify_redis_outage").await;
    h.start();
    let token = unique_name("token");
    let t = Instant::now();
    h.post("mg-first", "mailgun", &mailgun(&token, "delivered", now), 0)
        .await;
    let out = h.take(1, Duration::from_secs(30), t).await;
    assert_eq!((out[0].0.as_str(), &out[0].1), ("mg-first", &Out::Verified));

    redis.stop();
    h.post(
        "mg-replay",
        "mailgun",
        &mailgun(&token, "complained", now),
        0,
    )
    .await;
    h.post(
        "mg-fresh",
        "mailgun",
        &mailgun(&unique_name("token"), "opened", now),
        1,
    )
    .await;
    let during = h.next(Duration::from_secs(8)).await;
    assert_eq!(during, None, "an output while Redis was down");

    let redis = redis.restart();
    let back = Instant::now();
    let mut out: Vec<(String, Out)> = h
        .take(2, Duration::from_secs(30), back)
        .await
        .into_iter()
        .map(|(id, what, _)| (id, what))
        .collect();
    out.sort();
    assert_eq!(
        out,
        [
            ("mg-fresh".to_string(), Out::Verified),
            ("mg-replay".to_string(), Out::Rejected("replayed".into())),
        ]
    );
    println!(
        "held during an 8 s outage; judged {:?} after Redis came back",
        back.elapsed()
    );
    h.stop().await;
    drop(redis);
}
