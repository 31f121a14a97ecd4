//! Amazon SES events arrive through Amazon SNS: a JSON envelope signed with RSA PKCS#1 v1.5
//! (`SignatureVersion` 1 = SHA-1, 2 = SHA-256) by the key of the certificate at
//! `SigningCertURL`, over a canonical string of `Name\nvalue\n` lines for the type's fields:
//! Notification → Message, MessageId, Subject (if present and not null), Timestamp,
//! TopicArn, Type; SubscriptionConfirmation / UnsubscribeConfirmation → Message, MessageId,
//! SubscribeURL, Timestamp, Token, TopicArn, Type.
//!
//! Order of checks, so nothing untrusted is fetched: type and version, TopicArn in the
//! source's allowlist (else anyone's SNS topic could post to us), certificate URL on an
//! allowed host — only then does [`required_certificate`] hand the URL to the caller.
//! Raw message delivery (no envelope, no signature) is refused as `missing_signature`.
//! The signed `Timestamp`'s age is checked only against the source's optional
//! `sns_max_age_seconds`, never against the general timestamp tolerance.

use rsa::pkcs1v15::Signature;
use rsa::signature::Verifier as _;
use serde::Deserialize;

use crate::certificates::CertificateUrl;
use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, Reason, Rejection, Scheme, SnsControl};
use crate::request::Request;
use crate::Context;

/// The signed envelope; Lambda-style `…Url` spellings are accepted, `null` is absent.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
    #[serde(rename = "Subject")]
    subject: Option<String>,
    #[serde(rename = "SubscribeURL", alias = "SubscribeUrl")]
    subscribe_url: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
    #[serde(rename = "TopicArn")]
    topic_arn: Option<String>,
    #[serde(rename = "SignatureVersion")]
    signature_version: Option<String>,
    #[serde(rename = "Signature")]
    signature: Option<String>,
    #[serde(rename = "SigningCertURL", alias = "SigningCertUrl")]
    signing_cert_url: Option<String>,
}

/// What the checks before any fetch established.
struct Checked {
    envelope: Envelope,
    kind: Kind,
    version_2: bool,
    topic_arn: String,
    certificate_url: CertificateUrl,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

pub(crate) fn required_certificate(
    request: &Request,
    source: &SourceConfig,
) -> Result<CertificateUrl, Rejection> {
    Ok(check_before_fetch(request, source)?.certificate_url)
}

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    context: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let Checked {
        envelope,
        kind,
        version_2,
        topic_arn,
        certificate_url,
    } = check_before_fetch(request, source)?;
    let certificate = context
        .certificates
        .certificate(&certificate_url)
        .ok_or_else(|| {
            Rejection::new(
                Reason::CertificateUnavailable,
                "signing certificate has not been fetched",
            )
        })?;
    if !certificate.valid_at(request.received_at_secs()) {
        return Err(Rejection::new(
            Reason::UntrustedCertificate,
            "signing certificate was not valid at receipt",
        ));
    }
    let canonical = canonical_string(&envelope, kind)?;
    let encoded = envelope.signature.as_deref().unwrap_or_default();
    let bytes =
        crypto::base64_decode(encoded).ok_or_else(|| Rejection::bad("Signature is not base64"))?;
    let signature = Signature::try_from(bytes.as_slice())
        .map_err(|_| Rejection::bad("Signature is not an RSA signature"))?;
    let verified = if version_2 {
        certificate.sha256.verify(canonical.as_bytes(), &signature)
    } else {
        certificate.sha1.verify(canonical.as_bytes(), &signature)
    };
    verified
        .map_err(|_| Rejection::bad("Signature does not verify with the signing certificate"))?;
    let timestamp = envelope.timestamp.as_deref().unwrap_or_default();
    let signed_at = crypto::parse_rfc3339_utc(timestamp)
        .ok_or_else(|| Rejection::malformed("Timestamp is not RFC 3339 UTC"))?;
    // No age check unless the source asks for one: SNS keeps a message's Timestamp across
    // its retries (delivery policies retry for up to hours), and a replayed signed message
    // only repeats its own events, which dedupe drops (as Amazon's validators, which check
    // the signature and certificate only).
    if let Some(max_age) = source.sns_max_age {
        crypto::check_fresh(signed_at, request, max_age)?;
    }
    let control = match kind {
        Kind::Notification => None,
        Kind::SubscriptionConfirmation => Some(SnsControl::ConfirmSubscription {
            subscribe_url: source
                .urls
                .subscribe_url(envelope.subscribe_url.as_deref().unwrap_or_default())?,
            topic_arn,
        }),
        Kind::UnsubscribeConfirmation => Some(SnsControl::Unsubscribed { topic_arn }),
    };
    Ok(Authenticated {
        scheme: if version_2 {
            Scheme::SnsV2
        } else {
            Scheme::SnsV1
        },
        key_index: None,
        signed_at: Some(signed_at),
        control,
        one_time_token: None,
    })
}

fn check_before_fetch(request: &Request, source: &SourceConfig) -> Result<Checked, Rejection> {
    let envelope: Envelope = serde_json::from_slice(&request.body)
        .map_err(|_| Rejection::malformed("body is not an SNS JSON envelope"))?;
    if envelope.signature.as_deref().is_none_or(str::is_empty) {
        return Err(Rejection::missing(
            "SNS Signature (raw message delivery is not accepted)",
        ));
    }
    let kind = match envelope.kind.as_deref() {
        Some("Notification") => Kind::Notification,
        Some("SubscriptionConfirmation") => Kind::SubscriptionConfirmation,
        Some("UnsubscribeConfirmation") => Kind::UnsubscribeConfirmation,
        _ => {
            return Err(Rejection::malformed(
                "Type is missing or not an SNS message type",
            ))
        }
    };
    let topic_arn = envelope
        .topic_arn
        .clone()
        .ok_or_else(|| Rejection::malformed("TopicArn is missing"))?;
    // SNS repeats type and topic in headers; disagreeing copies mean tampering.
    for (header, body_value) in [
        ("x-amz-sns-message-type", envelope.kind.as_deref()),
        ("x-amz-sns-topic-arn", Some(topic_arn.as_str())),
    ] {
        if let Some(value) = request.header_str(header)? {
            if Some(value) != body_value {
                return Err(Rejection::malformed(format!(
                    "header {header} disagrees with the body"
                )));
            }
        }
    }
    let version_2 = match envelope.signature_version.as_deref() {
        Some("1") => false,
        Some("2") => true,
        _ => return Err(Rejection::malformed("SignatureVersion is not 1 or 2")),
    };
    if !source.topic_arns.contains(&topic_arn) {
        return Err(Rejection::unknown_source(
            "TopicArn is not in the source's sns_topic_arns",
        ));
    }
    let url = envelope
        .signing_cert_url
        .as_deref()
        .ok_or_else(|| Rejection::missing("SigningCertURL"))?;
    let certificate_url = source.urls.certificate_url(url)?;
    Ok(Checked {
        envelope,
        kind,
        version_2,
        topic_arn,
        certificate_url,
    })
}

fn canonical_string(envelope: &Envelope, kind: Kind) -> Result<String, Rejection> {
    let e = envelope;
    let fields: Vec<(&str, Option<&String>, bool)> = match kind {
        Kind::Notification => vec![
            ("Message", e.message.as_ref(), true),
            ("MessageId", e.message_id.as_ref(), true),
            ("Subject", e.subject.as_ref(), false),
            ("Timestamp", e.timestamp.as_ref(), true),
            ("TopicArn", e.topic_arn.as_ref(), true),
            ("Type", e.kind.as_ref(), true),
        ],
        Kind::SubscriptionConfirmation | Kind::UnsubscribeConfirmation => vec![
            ("Message", e.message.as_ref(), true),
            ("MessageId", e.message_id.as_ref(), true),
            ("SubscribeURL", e.subscribe_url.as_ref(), true),
            ("Timestamp", e.timestamp.as_ref(), true),
            ("Token", e.token.as_ref(), true),
            ("TopicArn", e.topic_arn.as_ref(), true),
            ("Type", e.kind.as_ref(), true),
        ],
    };
    let mut canonical = String::new();
    for (name, value, required) in fields {
        match value {
            Some(value) => {
                canonical.push_str(name);
                canonical.push('\n');
                canonical.push_str(value);
                canonical.push('\n');
            }
            None if required => return Err(Rejection::malformed(format!("{name} is missing"))),
            None => {}
        }
    }
    Ok(canonical)
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    use crate::testing::*;
    let mut parts = ExampleParts::new(now);
    let (secrets, headers, body) = {
        let options = &mut parts.options;
        let certificates = &mut parts.certificates;
        let arn = "arn:aws:sns:us-east-1:123456789012:ses-events";
        let url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-example.pem";
        let pem = sns_certificate_pem(&rsa_keys()[0], 0, 2_500_000_000);
        let checked = crate::certificates::UrlPolicy {
            hosts: crate::DEFAULT_SNS_HOSTS.map(String::from).to_vec(),
            insecure_loopback: false,
        }
        .certificate_url(url)
        .expect("allowed URL");
        certificates
            .insert_pem(checked, pem.as_bytes())
            .expect("certificate parses");
        options.sns_topic_arns = vec![arn.into()];
        let timestamp = unix_to_rfc3339(now);
        let fields = [
            ("Type", "Notification"),
            ("MessageId", "m-1"),
            ("TopicArn", arn),
            ("Timestamp", timestamp.as_str()),
            ("Message", "{\"eventType\":\"Delivery\"}"),
        ];
        (vec![], vec![], sns_message(&rsa_keys()[0], 2, url, &fields))
    };
    parts.signed(secrets, headers, body)
}

#[cfg(test)]
mod tests {
    //! The published vectors run from `tests/vectors/ses/` (one test, `tests/vectors.rs`);
    //! here are the generated signatures, tampering and edge cases.

    use mailpipe_model::Provider;

    use crate::testing::{request, rsa_keys, sns_certificate_pem, sns_message};
    use crate::{
        required_certificate, CertificateCache, Context, Reason, Request, Scheme, SnsControl,
        SourceConfig, SourceOptions,
    };

    fn source(arns: &[&str], loopback: bool) -> SourceConfig {
        let options = SourceOptions {
            sns_topic_arns: arns.iter().map(|a| a.to_string()).collect(),
            sns_insecure_loopback: loopback,
            ..SourceOptions::default()
        };
        SourceConfig::new(Provider::Ses, &[], options)
    }

    fn run(
        source: &SourceConfig,
        request: &Request,
        certificates: &CertificateCache,
    ) -> Result<crate::Verified, Reason> {
        crate::verify(request.clone(), source, &mut Context { certificates })
            .map_err(|r| r.rejection.reason)
    }

    /// Certificates for `url`: the published one, or one made for a generated key.
    fn store(url: &str, pem: &[u8]) -> CertificateCache {
        let mut cache = CertificateCache::new(4);
        let url = source(&["x"], true).urls.certificate_url(url).unwrap();
        cache.insert_pem(url, pem).unwrap();
        cache
    }

    const ARN: &str = "arn:aws:sns:us-east-1:123456789012:ses-events";
    const NOW: i64 = 1_700_000_000;
    const TIMESTAMP: &str = "2023-11-14T22:13:20.000Z";

    fn generated(kind: &str, version: u8, url: &str) -> Vec<u8> {
        let mut fields = vec![
            ("Type", kind),
            ("MessageId", "m-1"),
            ("TopicArn", ARN),
            ("Timestamp", TIMESTAMP),
            ("Message", "{\"eventType\":\"Bounce\"}\n"),
        ];
        if kind != "Notification" {
            fields.extend([
                ("Token", "tok"),
                (
                    "SubscribeURL",
                    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok",
                ),
            ]);
        } else {
            fields.push(("Subject", "Amazon SES Email Event Notification"));
        }
        sns_message(&rsa_keys()[0], version, url, &fields)
    }

    #[test]
    fn generated_certificate_on_loopback_v1_v2_and_control_messages() {
        let url = "http://127.0.0.1:8125/cert.pem";
        let certificates = store(
            url,
            sns_certificate_pem(&rsa_keys()[0], 1_600_000_000, 1_800_000_000).as_bytes(),
        );
        let config = source(&[ARN], true);
        for version in [1, 2] {
            let notification = request(
                &[("x-amz-sns-message-type", "Notification")],
                &generated("Notification", version, url),
                NOW,
            );
            assert_eq!(
                required_certificate(&notification, &config)
                    .unwrap()
                    .unwrap()
                    .as_str(),
                url
            );
            let verified = run(&config, &notification, &certificates).unwrap();
            assert_eq!(
                (verified.scheme(), verified.control()),
                (
                    if version == 1 {
                        Scheme::SnsV1
                    } else {
                        Scheme::SnsV2
                    },
                    None
                )
            );
        }
        let confirm = run(
            &config,
            &request(&[], &generated("SubscriptionConfirmation", 2, url), NOW),
            &certificates,
        )
        .unwrap();
        let Some(SnsControl::ConfirmSubscription {
            subscribe_url,
            topic_arn,
        }) = confirm.control()
        else {
            panic!("{confirm:?}")
        };
        assert!(
            subscribe_url
                .starts_with("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")
                && topic_arn == ARN
        );
        let bye = run(
            &config,
            &request(&[], &generated("UnsubscribeConfirmation", 1, url), NOW),
            &certificates,
        )
        .unwrap();
        assert_eq!(
            bye.control(),
            Some(&SnsControl::Unsubscribed {
                topic_arn: ARN.into()
            })
        );
        // The same loopback URL without the test setting is refused before any fetch.
        let strict = source(&[ARN], false);
        let err = required_certificate(
            &request(&[], &generated("Notification", 2, url), NOW),
            &strict,
        )
        .unwrap_err();
        assert_eq!(err.reason, Reason::UntrustedCertificate);
    }

    #[test]
    fn untrusted_urls_foreign_topics_and_missing_certificates_fail_before_any_fetch() {
        let config = source(&[ARN], false);
        for url in [
            "http://sns.us-east-1.amazonaws.com/c.pem",
            "https://evil.example.com/c.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/c.pem",
        ] {
            let r = request(&[], &generated("Notification", 2, url), NOW);
            assert_eq!(
                required_certificate(&r, &config).unwrap_err().reason,
                Reason::UntrustedCertificate,
                "{url}"
            );
            assert_eq!(
                run(&config, &r, &CertificateCache::new(1)).unwrap_err(),
                Reason::UntrustedCertificate
            );
        }
        let good_url = "https://sns.us-east-1.amazonaws.com/c.pem";
        let r = request(&[], &generated("Notification", 2, good_url), NOW);
        assert_eq!(
            required_certificate(&r, &source(&["arn:aws:sns:us-east-1:1:other"], false))
                .unwrap_err()
                .reason,
            Reason::UnknownSource
        );
        assert_eq!(
            run(&config, &r, &CertificateCache::new(1)).unwrap_err(),
            Reason::CertificateUnavailable
        );
        assert_eq!(
            run(&source(&[], false), &r, &CertificateCache::new(1)).unwrap_err(),
            Reason::NoUsableKey
        );
        assert_eq!(
            required_certificate(&r, &source(&[], false)),
            Ok(None),
            "fails closed at verify, fetches nothing"
        );
    }

    /// SNS retries keep the message's Timestamp for up to hours: a correctly signed message
    /// two hours old verifies by default, and is stale only under a configured maximum age.
    #[test]
    fn old_messages_verify_unless_a_maximum_age_is_configured() {
        let url = "https://sns.us-east-1.amazonaws.com/c.pem";
        let certificates = store(
            url,
            sns_certificate_pem(&rsa_keys()[0], 1_600_000_000, 1_800_000_000).as_bytes(),
        );
        let body = generated("Notification", 2, url);
        let two_hours_later = request(&[], &body, NOW + 2 * 3600);
        let defaults = source(&[ARN], false);
        assert!(run(&defaults, &two_hours_later, &certificates).is_ok());
        let with_max_age = |seconds| {
            let options = SourceOptions {
                sns_topic_arns: vec![ARN.to_string()],
                sns_max_age_seconds: Some(seconds),
                ..SourceOptions::default()
            };
            SourceConfig::new(Provider::Ses, &[], options)
        };
        assert_eq!(
            run(&with_max_age(3600), &two_hours_later, &certificates).unwrap_err(),
            Reason::StaleTimestamp
        );
        assert!(run(&with_max_age(3 * 3600), &two_hours_later, &certificates).is_ok());
        // The general tolerance does not apply to SNS, however small.
        let strict_tolerance = SourceOptions {
            sns_topic_arns: vec![ARN.to_string()],
            timestamp_tolerance_seconds: 1,
            ..SourceOptions::default()
        };
        let strict_tolerance = SourceConfig::new(Provider::Ses, &[], strict_tolerance);
        assert!(run(&strict_tolerance, &two_hours_later, &certificates).is_ok());
    }

    #[test]
    fn tampering_wrong_key_stale_and_malformed() {
        let url = "https://sns.us-east-1.amazonaws.com/c.pem";
        let certificates = store(
            url,
            sns_certificate_pem(&rsa_keys()[0], 1_600_000_000, 1_800_000_000).as_bytes(),
        );
        let other_key = store(
            url,
            sns_certificate_pem(&rsa_keys()[1], 1_600_000_000, 1_800_000_000).as_bytes(),
        );
        let config = source(&[ARN], false);
        let body = generated("Notification", 2, url);
        let check = |body: &[u8], headers: &[(&str, &str)], now, certs: &CertificateCache| {
            run(&config, &request(headers, body, now), certs)
        };
        assert!(check(&body, &[], NOW, &certificates).is_ok());
        assert_eq!(
            check(&body, &[], NOW, &other_key).unwrap_err(),
            Reason::BadSignature
        );
        assert!(
            check(&body, &[], NOW + 301, &certificates).is_ok(),
            "no age check by default"
        );
        assert_eq!(
            check(
                &body,
                &[("x-amz-sns-message-type", "SubscriptionConfirmation")],
                NOW,
                &certificates
            )
            .unwrap_err(),
            Reason::MalformedRequest
        );
        let mut value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let sig = value["Signature"].as_str().unwrap().to_string();
        for (field, replacement, reason) in [
            (
                "Signature",
                serde_json::json!(&sig[..100]),
                Reason::BadSignature,
            ),
            ("Signature", serde_json::json!("!!"), Reason::BadSignature),
            ("Signature", serde_json::json!(""), Reason::MissingSignature),
            (
                "Signature",
                serde_json::Value::Null,
                Reason::MissingSignature,
            ),
            (
                "SignatureVersion",
                serde_json::json!("3"),
                Reason::MalformedRequest,
            ),
            ("Type", serde_json::json!("Other"), Reason::MalformedRequest),
            (
                "MessageId",
                serde_json::Value::Null,
                Reason::MalformedRequest,
            ),
            (
                "Subject",
                serde_json::json!("changed"),
                Reason::BadSignature,
            ),
            ("Timestamp", serde_json::json!(5), Reason::MalformedRequest),
        ] {
            let original = value[field].clone();
            value[field] = replacement;
            let tampered = serde_json::to_vec(&value).unwrap();
            assert_eq!(
                check(&tampered, &[], NOW, &certificates).unwrap_err(),
                reason,
                "{field}"
            );
            value[field] = original;
        }
        assert_eq!(
            check(b"{\"eventType\":\"Bounce\"}", &[], NOW, &certificates).unwrap_err(),
            Reason::MissingSignature,
            "raw delivery"
        );
        assert_eq!(
            check(b"not json", &[], NOW, &certificates).unwrap_err(),
            Reason::MalformedRequest
        );
    }
}
