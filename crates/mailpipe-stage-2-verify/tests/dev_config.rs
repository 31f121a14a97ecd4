//! The development sources of `config/mailpipe.toml` accept a sample signed the way each
//! provider signs, with the keys a local sample sender uses (`config/dev-keys/` and the
//! shared secrets of the config itself). SES with the dev SNS key and certificate, cached
//! under an SNS URL as if fetched (locally it needs the loopback setting, see the README
//! there).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use mailpipe_verify_core::testing;
use mailpipe_verify_core::{
    required_certificate, verify, CertificateCache, Context, Request, SourceConfig,
};
use p256::pkcs8::DecodePrivateKey as _;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dev_key(name: &str) -> String {
    std::fs::read_to_string(repo().join("config/dev-keys").join(name)).unwrap()
}

fn rsa_key(name: &str) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::from_pkcs8_pem(&dev_key(name)).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request of `provider` signed with the development keys, at `now`.
fn signed_sample(provider: Provider, secret: &str, settings: &Settings, now: i64) -> Request {
    let ts = now.to_string();
    let body = br#"[{"event":"delivered","email":"dev@example.com"}]"#;
    let (headers, body): (Vec<(String, String)>, Vec<u8>) = match provider {
        Provider::Sendgrid => {
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&dev_key("sendgrid-signing-key.pem"))
                .unwrap();
            let signature = testing::sendgrid_signature(&key, &ts, body);
            (
                vec![
                    ("x-twilio-email-event-webhook-signature".into(), signature),
                    ("x-twilio-email-event-webhook-timestamp".into(), ts),
                ],
                body.to_vec(),
            )
        }
        Provider::Mailgun => {
            let signature = testing::mailgun_signature(secret, &ts, "dev-token");
            let body = serde_json::json!({"signature": {"timestamp": ts, "token": "dev-token",
                "signature": signature}, "event-data": {"event": "delivered"}});
            (
                vec![("content-type".into(), "application/json".into())],
                body.to_string().into_bytes(),
            )
        }
        Provider::Postmark | Provider::Sparkpost | Provider::Brevo | Provider::Mailjet => {
            let (user, password) = secret.split_once(':').unwrap();
            (
                vec![("authorization".into(), testing::basic_auth(user, password))],
                body.to_vec(),
            )
        }
        Provider::Ses => {
            let key = rsa_key("sns-signing-key.pem");
            let arn = &settings.sources["ses"].sns_topic_arns[0];
            let timestamp = chrono::DateTime::from_timestamp(now, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            let fields = [
                ("Type", "Notification"),
                ("MessageId", "dev-1"),
                ("TopicArn", arn.as_str()),
                ("Timestamp", timestamp.as_str()),
                ("Message", "{\"eventType\":\"Delivery\"}"),
            ];
            let url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-dev.pem";
            (vec![], testing::sns_message(&key, 2, url, &fields))
        }
        Provider::Mandrill => {
            let url = settings.sources["mandrill"].webhook_url.clone().unwrap();
            let events = r#"[{"event":"send","ts":1461095246}]"#;
            let signature =
                testing::mandrill_signature(secret, &url, &[("mandrill_events", events)]);
            let body = format!(
                "mandrill_events={}",
                events
                    .bytes()
                    .map(|b| if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    })
                    .collect::<String>()
            );
            (
                vec![("x-mandrill-signature".into(), signature)],
                body.into_bytes(),
            )
        }
        Provider::Resend => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap())
                .unwrap();
            let signature = testing::standard_webhooks_signature(&key, "msg_dev", &ts, body);
            (
                vec![
                    ("svix-id".into(), "msg_dev".into()),
                    ("svix-timestamp".into(), ts),
                    ("svix-signature".into(), signature),
                ],
                body.to_vec(),
            )
        }
        Provider::Mailersend => (
            vec![(
                "signature".into(),
                hex(&testing::hmac_sha256(secret.as_bytes(), &[body])),
            )],
            body.to_vec(),
        ),
        Provider::Postal => {
            let key = rsa_key("postal-signing-key.pem");
            (
                vec![
                    (
                        "x-postal-signature-256".into(),
                        testing::rsa_sha256_signature(&key, body),
                    ),
                    (
                        "x-postal-signature".into(),
                        testing::rsa_sha1_signature(&key, body),
                    ),
                ],
                body.to_vec(),
            )
        }
        Provider::Generic => (
            vec![(
                "x-signature".into(),
                hex(&testing::hmac_sha256(secret.as_bytes(), &[body])),
            )],
            body.to_vec(),
        ),
    };
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    testing::request(&headers, &body, now)
}

#[test]
fn every_dev_source_verifies_a_sample_signed_with_the_dev_keys() {
    let settings = Settings::load_from(Some(&repo().join("config/mailpipe.toml"))).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for provider in Provider::ALL {
        let (id, source_settings) = settings
            .source(provider, None)
            .unwrap_or_else(|| panic!("no dev source for {provider}"));
        let source = SourceConfig::from_settings(source_settings, &settings.verify);
        assert!(
            source.problems().is_empty(),
            "{id}: {:?}",
            source.problems()
        );
        assert!(source.is_usable(), "{id}");
        let secret = source_settings
            .secrets
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let request = signed_sample(provider, secret, &settings, now);
        let mut certificates = CertificateCache::new(1);
        if let Some(url) = required_certificate(&request, &source).unwrap() {
            certificates
                .insert_pem(url, dev_key("sns-signing-cert.pem").as_bytes())
                .unwrap();
        }
        let verified = verify(
            request,
            &source,
            &mut Context {
                certificates: &certificates,
            },
        )
        .unwrap_or_else(|e| panic!("{id}: {e}"));
        let expected_key = (provider != Provider::Ses).then_some(0);
        assert_eq!(verified.key_index(), expected_key, "{id}");
    }
}
