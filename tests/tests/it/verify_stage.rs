//! The verify stage against the real broker and registry: correctly signed raw requests of
//! every provider land on mail.verified with their credentials stripped (SES through a
//! certificate served on loopback, fetched once), forged, stale, replayed, unsigned and
//! unknown-source ones land on mail.rejected with the right reason, an SNS
//! SubscriptionConfirmation is confirmed (the loopback server sees the GET) and becomes a
//! control record, an undecodable record becomes a dead letter, and offsets are committed
//! once the outputs are acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpipe_avro::records::{
    DeadLetterRecord, Header, RawRecord, RejectedRecord, VerifiedKind, VerifiedRecord,
};
use mailpipe_avro::{AvroCodec, TopicSchema, RAW_REQUEST_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::Provider;
use mailpipe_settings::SourceSettings;
use mailpipe_test_support::{
    consume_exactly, create_topic, dev_settings, unique_name, wait_for_committed_total,
};
use mailpipe_verify_core::testing::{self, EXAMPLE_SECRETS};
use mailpipe_verify_core::Request;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
const SUBSCRIPTION_TOKEN: &str = "2336412f37fb687f5d51e6e2425c464de12884c8";

/// Headers that carry credentials for some provider; none may reach an output.
const CREDENTIAL_HEADERS: [&str; 9] = [
    "authorization",
    "x-twilio-email-event-webhook-signature",
    "x-mandrill-signature",
    "svix-signature",
    "signature",
    "x-postal-signature",
    "x-postal-signature-256",
    "x-signature",
    "x-messagesystems-webhook-token",
];

/// Serves the SNS signing certificate and records SubscribeURL GETs, on loopback.
struct Loopback {
    base: String,
    certificate_gets: Arc<AtomicUsize>,
    confirmations: Arc<Mutex<Vec<String>>>,
}

async fn loopback(pem: String) -> Loopback {
    use axum::extract::RawQuery;
    use axum::routing::get;
    let certificate_gets = Arc::new(AtomicUsize::new(0));
    let confirmations = Arc::new(Mutex::new(Vec::new()));
    let (gets, confirms) = (certificate_gets.clone(), confirmations.clone());
    let app = axum::Router::new()
        .route(
            "/SimpleNotificationService-test.pem",
            get(move || {
                gets.fetch_add(1, Ordering::SeqCst);
                let pem = pem.clone();
                async move { pem }
            }),
        )
        .route(
            "/confirm",
            get(move |RawQuery(query): RawQuery| {
                confirms.lock().unwrap().push(query.unwrap_or_default());
                async { "<ConfirmSubscriptionResponse/>" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Loopback {
        base,
        certificate_gets,
        confirmations,
    }
}

fn source(json: serde_json::Value) -> SourceSettings {
    serde_json::from_value(json).unwrap()
}

/// One source per provider with the keys the test signs with (SendGrid's under id "acme").
fn sources(sendgrid_public_key: &str) -> BTreeMap<String, SourceSettings> {
    let [hmac_key, credentials, whsec, mandrill_url] = EXAMPLE_SECRETS;
    let postal_key = testing::rsa_public_key(&testing::rsa_keys()[1]);
    let mut out = BTreeMap::new();
    for provider in Provider::ALL {
        let json = match provider {
            Provider::Sendgrid => {
                serde_json::json!({"provider": "sendgrid", "secrets": [sendgrid_public_key]})
            }
            Provider::Mailgun | Provider::Mailersend | Provider::Generic => {
                serde_json::json!({"provider": provider.as_str(), "secrets": [hmac_key]})
            }
            Provider::Postmark | Provider::Sparkpost | Provider::Brevo | Provider::Mailjet => {
                serde_json::json!({"provider": provider.as_str(), "secrets": [credentials]})
            }
            Provider::Ses => serde_json::json!({"provider": "ses",
                "sns_topic_arns": [TOPIC_ARN], "sns_insecure_loopback": true}),
            Provider::Mandrill => serde_json::json!({"provider": "mandrill",
                "secrets": [hmac_key], "webhook_url": mandrill_url}),
            Provider::Resend => serde_json::json!({"provider": "resend", "secrets": [whsec]}),
            Provider::Postal => serde_json::json!({"provider": "postal", "secrets": [postal_key]}),
        };
        let id = match provider {
            Provider::Sendgrid => "acme",
            other => other.as_str(),
        };
        out.insert(id.to_string(), source(json));
    }
    out
}

/// What the stage must do with one input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Events,
    Control(&'static str),
    Rejected(&'static str),
}

struct Input {
    record: RawRecord,
    expect: Expect,
    partition: i32,
}

fn raw(id: &str, provider: Provider, source: &str, request: &Request) -> RawRecord {
    RawRecord {
        request_id: id.to_string(),
        received_at: request.received_at_ms,
        provider: provider.as_str().into(),
        source: source.into(),
        method: request.method.clone(),
        path: format!("/webhooks/{provider}/{source}"),
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

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn sns_request(body: Vec<u8>, now: i64) -> Request {
    testing::request(&[("content-type", "text/plain; charset=UTF-8")], &body, now)
}

fn inputs(now: i64, sendgrid: &p256::ecdsa::SigningKey, base: &str) -> Vec<Input> {
    let mut inputs = Vec::new();
    let mut push =
        |id: &str, provider: Provider, source: &str, request: &Request, expect: Expect| {
            // Mailgun's pair must stay in order (replay detection), so all on one partition
            // except a few, to exercise both.
            let partition = i32::from(inputs.len() % 3 == 2 && provider != Provider::Mailgun);
            inputs.push(Input {
                record: raw(id, provider, source, request),
                expect,
                partition,
            });
        };
    let body = br#"[{"event":"delivered","email":"a@example.com"}]"#;

    // SendGrid with the test's own key (the examples' key is random and not exposed).
    let signed = |at: i64, body: &[u8]| {
        let ts = at.to_string();
        testing::request(
            &[
                (
                    "x-twilio-email-event-webhook-signature",
                    &testing::sendgrid_signature(sendgrid, &ts, body),
                ),
                ("x-twilio-email-event-webhook-timestamp", &ts),
            ],
            body,
            at,
        )
    };
    push(
        "sendgrid-ok",
        Provider::Sendgrid,
        "acme",
        &signed(now, body),
        Expect::Events,
    );
    let mut forged = signed(now, body);
    forged.body[10] ^= 0x01;
    push(
        "sendgrid-forged",
        Provider::Sendgrid,
        "acme",
        &forged,
        Expect::Rejected("bad_signature"),
    );
    let mut stale = signed(now - 3600, body);
    stale.received_at_ms = now * 1000;
    push(
        "sendgrid-stale",
        Provider::Sendgrid,
        "acme",
        &stale,
        Expect::Rejected("stale_timestamp"),
    );

    // Every other provider except SES: the library's signed example.
    for provider in Provider::ALL {
        if matches!(provider, Provider::Sendgrid | Provider::Ses) {
            continue;
        }
        let example = testing::example(provider, now);
        push(
            &format!("{provider}-ok"),
            provider,
            provider.as_str(),
            &example.request,
            Expect::Events,
        );
    }
    // The same Mailgun token under another request id: a replay.
    let mailgun = testing::example(Provider::Mailgun, now).request;
    push(
        "mailgun-replayed",
        Provider::Mailgun,
        "mailgun",
        &mailgun,
        Expect::Rejected("replayed"),
    );
    for provider in [Provider::Generic, Provider::Postal] {
        let mut forged = testing::example(provider, now).request;
        let last = forged.body.len() - 3;
        forged.body[last] ^= 0x01;
        push(
            &format!("{provider}-forged"),
            provider,
            provider.as_str(),
            &forged,
            Expect::Rejected("bad_signature"),
        );
    }
    let mut stale = testing::example(Provider::Resend, now - 3600).request;
    stale.received_at_ms = now * 1000;
    push(
        "resend-stale",
        Provider::Resend,
        "resend",
        &stale,
        Expect::Rejected("stale_timestamp"),
    );
    let mut unsigned = testing::example(Provider::Generic, now).request;
    unsigned.headers.retain(|(name, _)| name != "x-signature");
    push(
        "generic-unsigned",
        Provider::Generic,
        "generic",
        &unsigned,
        Expect::Rejected("missing_signature"),
    );
    let mut wrong_password = testing::example(Provider::Postmark, now).request;
    wrong_password.headers = vec![(
        "authorization".into(),
        testing::basic_auth("hook-user", "guessed").into_bytes(),
    )];
    push(
        "postmark-wrong-password",
        Provider::Postmark,
        "postmark",
        &wrong_password,
        Expect::Rejected("bad_signature"),
    );
    let generic = testing::example(Provider::Generic, now).request;
    push(
        "unknown-source",
        Provider::Generic,
        "nope",
        &generic,
        Expect::Rejected("unknown_source"),
    );
    push(
        "provider-mismatch",
        Provider::Mailgun,
        "generic",
        &generic,
        Expect::Rejected("unknown_source"),
    );

    // SES: v1 and v2 notifications and a subscription confirmation, signed with the key
    // whose certificate the loopback server serves.
    let key = &testing::rsa_keys()[0];
    let cert_url = format!("{base}/SimpleNotificationService-test.pem");
    let timestamp = rfc3339(now);
    for version in [1, 2] {
        let message_id = format!("m-{version}");
        let fields = [
            ("Type", "Notification"),
            ("MessageId", message_id.as_str()),
            ("TopicArn", TOPIC_ARN),
            ("Timestamp", timestamp.as_str()),
            ("Message", "{\"eventType\":\"Delivery\"}"),
        ];
        let body = testing::sns_message(key, version, &cert_url, &fields);
        push(
            &format!("ses-v{version}"),
            Provider::Ses,
            "ses",
            &sns_request(body, now),
            Expect::Events,
        );
    }
    let subscribe_url = format!(
        "{base}/confirm?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}&Token={SUBSCRIPTION_TOKEN}"
    );
    let fields = [
        ("Type", "SubscriptionConfirmation"),
        ("MessageId", "m-sub"),
        ("Token", SUBSCRIPTION_TOKEN),
        ("TopicArn", TOPIC_ARN),
        ("Message", "You have chosen to subscribe to the topic."),
        ("SubscribeURL", subscribe_url.as_str()),
        ("Timestamp", timestamp.as_str()),
    ];
    let body = testing::sns_message(key, 2, &cert_url, &fields);
    push(
        "ses-subscribe",
        Provider::Ses,
        "ses",
        &sns_request(body, now),
        Expect::Control("sns_subscription_confirmed"),
    );
    // A certificate URL off the allowlist (not loopback, not an SNS host): never fetched.
    let fields = [
        ("Type", "Notification"),
        ("MessageId", "m-evil"),
        ("TopicArn", TOPIC_ARN),
        ("Timestamp", timestamp.as_str()),
        ("Message", "{}"),
    ];
    let body = testing::sns_message(key, 2, "https://evil.example.com/cert.pem", &fields);
    push(
        "ses-untrusted-certificate",
        Provider::Ses,
        "ses",
        &sns_request(body, now),
        Expect::Rejected("untrusted_certificate"),
    );
    inputs
}

fn assert_no_credentials(headers: &[Header], id: &str) {
    for header in headers {
        assert!(
            !CREDENTIAL_HEADERS.contains(&header.name.as_str()),
            "{id}: credential header {} kept",
            header.name
        );
    }
}

#[tokio::test]
async fn raw_requests_are_verified_or_rejected_with_a_reason() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sendgrid = testing::sendgrid_key();
    let pem = testing::sns_certificate_pem(&testing::rsa_keys()[0], 0, 2_500_000_000);
    let server = loopback(pem).await;

    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name("verify"));
    // Mailgun tokens are recorded in Redis: a key space of this run's own.
    settings.redis.key_prefix = format!("{}:", unique_name("verify"));
    settings.sources = sources(&testing::sendgrid_public_key(&sendgrid));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let (raw_topic, verified_topic, rejected_topic, dlq_topic) = (
        names.name(Topic::Raw),
        names.name(Topic::Verified),
        names.name(Topic::Rejected),
        names.name(Topic::Dlq),
    );
    create_topic(&raw_topic, 2).await;
    create_topic(&verified_topic, 2).await;
    create_topic(&rejected_topic, 1).await;
    create_topic(&dlq_topic, 1).await;

    let inputs = inputs(now, &sendgrid, &server.base);
    let providers: BTreeSet<&str> = inputs
        .iter()
        .filter(|i| i.expect == Expect::Events)
        .map(|i| i.record.provider.as_str())
        .collect();
    assert_eq!(providers.len(), 12, "a verified request of every provider");

    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&raw_topic, RAW_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();
    for input in &inputs {
        let payload = schema
            .encode(&input.record, input.record.body.len())
            .unwrap();
        let r = FutureRecord::to(&raw_topic)
            .key(input.record.request_id.as_bytes())
            .partition(input.partition)
            .payload(payload.as_slice());
        mailpipe_kafka::send_and_wait(&producer, r, Duration::from_secs(10))
            .await
            .unwrap();
    }
    // Not Avro at all: a dead letter, since it cannot be read as a request.
    let garbage = b"\x00\x00\x00\x00\x01not avro".as_slice();
    let r = FutureRecord::to(&raw_topic)
        .key(b"garbage".as_slice())
        .partition(0)
        .payload(garbage);
    mailpipe_kafka::send_and_wait(&producer, r, Duration::from_secs(10))
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_2_verify::run(
        settings.clone(),
        shutdown.clone(),
    ));

    let expected = |want: fn(&Expect) -> bool| -> BTreeMap<String, Expect> {
        inputs
            .iter()
            .filter(|i| want(&i.expect))
            .map(|i| (i.record.request_id.clone(), i.expect.clone()))
            .collect()
    };
    let want_verified = expected(|e| !matches!(e, Expect::Rejected(_)));
    let want_rejected = expected(|e| matches!(e, Expect::Rejected(_)));

    let mut seen = BTreeMap::new();
    for (key, payload) in consume_exactly(&verified_topic, want_verified.len()).await {
        let record: VerifiedRecord = codec.decode(&payload).await.unwrap();
        assert_eq!(key.as_deref(), Some(record.request_id.as_bytes()), "key");
        assert_no_credentials(&record.headers, &record.request_id);
        let input = inputs
            .iter()
            .find(|i| i.record.request_id == record.request_id)
            .unwrap();
        assert_eq!(record.body, input.record.body, "{}", record.request_id);
        assert_eq!(record.received_at, input.record.received_at);
        if record.provider == "ses" {
            assert_eq!(record.key_index, None, "{}", record.request_id);
        } else {
            assert_eq!(record.key_index, Some(0), "{}", record.request_id);
        }
        let got = match record.kind {
            VerifiedKind::Events => {
                assert_eq!(record.control_action, None);
                Expect::Events
            }
            VerifiedKind::Control => match record.control_action.as_deref() {
                Some("sns_subscription_confirmed") => Expect::Control("sns_subscription_confirmed"),
                other => panic!("unexpected control action {other:?}"),
            },
        };
        seen.insert(record.request_id.clone(), got);
    }
    assert_eq!(seen, want_verified);

    let mut seen = BTreeMap::new();
    for (key, payload) in consume_exactly(&rejected_topic, want_rejected.len()).await {
        let record: RejectedRecord = codec.decode(&payload).await.unwrap();
        assert_eq!(key.as_deref(), Some(record.request_id.as_bytes()), "key");
        assert_no_credentials(&record.headers, &record.request_id);
        assert!(!record.detail.is_empty(), "{}", record.request_id);
        for secret in EXAMPLE_SECRETS {
            assert!(!record.detail.contains(secret), "{}", record.request_id);
        }
        let reason: &'static str = match record.reason.as_str() {
            "bad_signature" => "bad_signature",
            "stale_timestamp" => "stale_timestamp",
            "replayed" => "replayed",
            "missing_signature" => "missing_signature",
            "unknown_source" => "unknown_source",
            "untrusted_certificate" => "untrusted_certificate",
            other => panic!("{}: unexpected reason {other}", record.request_id),
        };
        seen.insert(record.request_id.clone(), Expect::Rejected(reason));
    }
    assert_eq!(seen, want_rejected);

    let dead = consume_exactly(&dlq_topic, 1).await;
    let letter: DeadLetterRecord = codec.decode(&dead[0].1).await.unwrap();
    assert_eq!(
        (letter.stage.as_str(), letter.reason.as_str()),
        ("verify", "undecodable")
    );
    assert_eq!(letter.topic, raw_topic);
    // mail.raw records hold credentials: their dead letters point at them, never copy them.
    assert!(
        letter.payload.is_empty(),
        "{} bytes copied",
        letter.payload.len()
    );
    assert!(
        letter.detail.contains("payload not copied"),
        "{}",
        letter.detail
    );
    assert_ne!(garbage.len(), 0);

    // The certificate was fetched once for three SNS messages; the subscription confirmed.
    assert_eq!(server.certificate_gets.load(Ordering::SeqCst), 1);
    let confirmations = server.confirmations.lock().unwrap().clone();
    assert_eq!(confirmations.len(), 1, "{confirmations:?}");
    assert!(
        confirmations[0].ends_with(&format!("Token={SUBSCRIPTION_TOKEN}")),
        "{confirmations:?}"
    );

    // Every input completed (its output acknowledged) → the whole topic is committed.
    let group = format!("{}mailpipe-verify", settings.kafka.topic_prefix);
    let total = inputs.len() as i64 + 1;
    let committed = wait_for_committed_total(&group, &raw_topic, 2, total).await;
    assert_eq!(committed, total);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
    println!(
        "{} inputs -> {} verified, {} rejected, 1 dead letter",
        total,
        want_verified.len(),
        want_rejected.len()
    );
}
