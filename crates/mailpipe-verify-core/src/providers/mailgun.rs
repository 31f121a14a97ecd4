//! Mailgun: hex HMAC-SHA256 (key = the account's HTTP webhook signing key) of `timestamp ‖
//! token`, carried in the body — `{"signature": {timestamp, token, signature}, …}` for
//! current JSON webhooks, or form fields for legacy urlencoded/multipart webhooks.
//!
//! The body itself is not signed, so a captured (timestamp, token, signature) triple could
//! be re-posted with another body: each token may be accepted once. Recording it is the
//! caller's part ([`crate::Verified::one_time_token`]: the stage keeps tokens in Redis, so
//! every instance and every restart sees them), since it needs state shared beyond one
//! process. The sub-account
//! `parent-signature` is not verified (its algorithm is undocumented).

use serde::Deserialize;

use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, OneTimeToken, Rejection, Scheme};
use crate::request::Request;
use crate::Context;
use mailpipe_model::form;

/// Longest token accepted (Mailgun's are 50 characters); bounds the replay cache's memory.
const MAX_TOKEN_LEN: usize = 256;

#[derive(Deserialize)]
struct JsonBody {
    signature: Option<SignatureFields>,
}

#[derive(Deserialize)]
struct SignatureFields {
    timestamp: Option<String>,
    token: Option<String>,
    signature: Option<String>,
}

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _context: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let keys = source.hmac_keys()?;
    let fields = signature_fields(request)?;
    let (Some(timestamp), Some(token), Some(signature)) =
        (fields.timestamp, fields.token, fields.signature)
    else {
        return Err(Rejection::missing(
            "signature timestamp, token or signature",
        ));
    };
    let expected =
        hex::decode(signature.trim()).map_err(|_| Rejection::bad("signature is not hex"))?;
    let index =
        crypto::hmac_sha256_match(keys, &[timestamp.as_bytes(), token.as_bytes()], &expected)
            .ok_or_else(Rejection::no_key_verifies)?;
    let signed_at = crypto::parse_unix_seconds(&timestamp)
        .ok_or_else(|| Rejection::malformed("signature timestamp is not Unix seconds"))?;
    crypto::check_fresh(signed_at, request, source.tolerance)?;
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::malformed("token is empty or too long"));
    }
    // A copy can pass the timestamp check until signed_at + tolerance (receipt time).
    let window_left = signed_at
        .saturating_add(source.tolerance)
        .saturating_sub(request.received_at_secs())
        .max(0);
    let remember_for_secs = u64::try_from(window_left.saturating_add(source.tolerance))
        .unwrap_or(u64::MAX)
        .max(1);
    Ok(Authenticated {
        scheme: Scheme::HmacSha256,
        key_index: source.key_index(index),
        signed_at: Some(signed_at),
        control: None,
        one_time_token: Some(OneTimeToken {
            token,
            remember_for_secs,
        }),
    })
}

/// The three signature fields from whichever body format this is. For forms the last
/// occurrence wins: Mailgun appends its own fields after user variables of the same name.
fn signature_fields(request: &Request) -> Result<SignatureFields, Rejection> {
    let media_type = request.media_type()?;
    let looks_like_json = request.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    match media_type.as_deref() {
        Some("application/x-www-form-urlencoded") => {
            let pairs = form::urlencoded_pairs(&request.body);
            let last = |name: &str| {
                pairs
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            Ok(SignatureFields {
                timestamp: last("timestamp"),
                token: last("token"),
                signature: last("signature"),
            })
        }
        Some("multipart/form-data") => {
            let boundary = request
                .content_type_parameter("boundary")?
                .ok_or_else(|| Rejection::malformed("multipart body without boundary"))?;
            let fields = form::multipart_fields(&request.body, &boundary)
                .ok_or_else(|| Rejection::malformed("multipart body does not parse"))?;
            let last = |name: &str| {
                fields
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
            };
            Ok(SignatureFields {
                timestamp: last("timestamp"),
                token: last("token"),
                signature: last("signature"),
            })
        }
        // Mailgun sends application/json; any type is accepted for a JSON-looking body.
        _ if looks_like_json => {
            let body: JsonBody = serde_json::from_slice(&request.body)
                .map_err(|_| Rejection::malformed("body is not a Mailgun JSON webhook"))?;
            body.signature
                .ok_or_else(|| Rejection::missing("signature object"))
        }
        _ => Err(Rejection::malformed(
            "body is neither Mailgun JSON nor a form",
        )),
    }
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    use crate::testing::*;
    let parts = ExampleParts::new(now);
    let (secrets, headers, body) = {
        let hmac_key = parts.hmac_key;
        let ts = parts.ts.clone();
        let signature = mailgun_signature(hmac_key, &ts, "one-time-token");
        let body = serde_json::json!({"signature": {"timestamp": ts, "token": "one-time-token", "signature": signature}, "event-data": {"event": "delivered"}});
        (
            vec![hmac_key.into()],
            vec![("content-type".into(), "application/json".into())],
            body.to_string().into_bytes(),
        )
    };
    parts.signed(secrets, headers, body)
}

#[cfg(test)]
mod tests {
    //! The published vectors run from `tests/vectors/mailgun/` (one test, `tests/vectors.rs`);
    //! here are the generated signatures, tampering and edge cases.

    use mailpipe_model::Provider;

    use crate::testing::{mailgun_signature, request};
    use crate::{
        CertificateCache, Context, OneTimeToken, Reason, Request, SourceConfig, SourceOptions,
    };

    const KEY: &str = "TEST_WEBHOOK_SIGNING_KEY";

    fn source(keys: &[&str]) -> SourceConfig {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        SourceConfig::new(Provider::Mailgun, &keys, SourceOptions::default())
    }

    fn json(timestamp: &str, token: &str, signature: &str) -> Vec<u8> {
        serde_json::json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {"event": "delivered", "id": "hK7mQVt1QtqRiOfQXta4sw"}
        })
        .to_string()
        .into_bytes()
    }

    fn run(source: &SourceConfig, request: &Request) -> Result<crate::Verified, Reason> {
        let certificates = CertificateCache::new(1);
        crate::verify(
            request.clone(),
            source,
            &mut Context {
                certificates: &certificates,
            },
        )
        .map_err(|r| r.rejection.reason)
    }

    fn check(
        keys: &[&str],
        body: &[u8],
        content_type: &str,
        now: i64,
    ) -> Result<crate::Verified, Reason> {
        run(
            &source(keys),
            &request(&[("content-type", content_type)], body, now),
        )
    }

    /// MG-1 itself runs from `tests/vectors/mailgun/`; this checks the signing helper the
    /// other tests rely on against it.
    #[test]
    fn signing_helper_reproduces_mg1() {
        // providers.md §5.5: computed from anymail's test inputs with Python hmac and openssl.
        assert_eq!(
            mailgun_signature(
                KEY,
                "1534108637",
                "651869375b9df3c98fc15c4889b102119add1235c38fc92824"
            ),
            "2a75affe24846ead9e37e614a5e7643a04abf4d5b49b34d224ede9af23a00ccc"
        );
    }

    #[test]
    fn legacy_multipart_and_last_occurrence_wins() {
        let sig = mailgun_signature(KEY, "100", "tok");
        let body = format!(
            "--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nuser-variable\r\n\
--b\r\nContent-Disposition: form-data; name=\"timestamp\"\r\n\r\n100\r\n\
--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\ntok\r\n\
--b\r\nContent-Disposition: form-data; name=\"signature\"\r\n\r\n{sig}\r\n--b--\r\n"
        );
        assert!(check(
            &[KEY],
            body.as_bytes(),
            "multipart/form-data; boundary=b",
            100
        )
        .is_ok());
        assert_eq!(
            check(&[KEY], body.as_bytes(), "multipart/form-data", 100).unwrap_err(),
            Reason::MalformedRequest
        );
        let form = format!("token=evil&timestamp=100&token=tok&signature={sig}");
        assert!(check(
            &[KEY],
            form.as_bytes(),
            "application/x-www-form-urlencoded",
            100
        )
        .is_ok());
    }

    #[test]
    fn tampering_wrong_key_missing_and_stale_fail() {
        let now = 1_700_000_000;
        let sig = mailgun_signature(KEY, "1700000000", "token-1");
        let good = json("1700000000", "token-1", &sig);
        assert!(check(&[KEY], &good, "application/json", now).is_ok());
        assert_eq!(
            check(&["other-key"], &good, "application/json", now).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(
                &[KEY],
                &json("1700000001", "token-1", &sig),
                "application/json",
                now
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(
                &[KEY],
                &json("1700000000", "token-2", &sig),
                "application/json",
                now
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(
                &[KEY],
                &json("1700000000", "token-1", &sig[..40]),
                "application/json",
                now
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(
                &[KEY],
                &json("1700000000", "token-1", "zz"),
                "application/json",
                now
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[KEY], &good, "application/json", now + 301).unwrap_err(),
            Reason::StaleTimestamp
        );
        assert_eq!(
            check(&[KEY], br#"{"event-data":{}}"#, "application/json", now).unwrap_err(),
            Reason::MissingSignature
        );
        assert_eq!(
            check(
                &[KEY],
                br#"{"signature":{"token":"t"}}"#,
                "application/json",
                now
            )
            .unwrap_err(),
            Reason::MissingSignature
        );
        assert_eq!(
            check(
                &[KEY],
                br#"{"signature":{"timestamp":1}}"#,
                "application/json",
                now
            )
            .unwrap_err(),
            Reason::MalformedRequest
        );
        assert_eq!(
            check(&[KEY], b"event=x", "application/x-www-form-urlencoded", now).unwrap_err(),
            Reason::MissingSignature
        );
        assert_eq!(
            check(&[KEY], b"\xff\x00", "text/plain", now).unwrap_err(),
            Reason::MalformedRequest
        );
        // The body is not signed: flipping a byte of event-data alone still verifies —
        // which is exactly why tokens are single-use (next test).
        let flipped = String::from_utf8(good.clone())
            .unwrap()
            .replace("delivered", "deliverex");
        assert!(check(&[KEY], flipped.as_bytes(), "application/json", now).is_ok());
    }

    /// The token is handed to the caller with how long it must be remembered: the rest of
    /// the window in which a copy passes the timestamp check, plus one tolerance.
    #[test]
    fn the_signed_token_is_handed_over_for_the_caller_to_record() {
        let config = source(&["old", KEY]);
        let body = json("500", "tok", &mailgun_signature(KEY, "500", "tok"));
        let at = |now| request(&[("content-type", "application/json")], &body, now);
        let verified = run(&config, &at(500)).unwrap();
        assert_eq!(verified.key_index(), Some(1), "rotation");
        assert_eq!(
            verified.one_time_token(),
            Some(&OneTimeToken {
                token: "tok".into(),
                remember_for_secs: 300 + 300
            })
        );
        let late = run(&config, &at(790))
            .unwrap()
            .one_time_token()
            .cloned()
            .unwrap();
        assert_eq!(late.remember_for_secs, 10 + 300);
        let early = run(&config, &at(210))
            .unwrap()
            .one_time_token()
            .cloned()
            .unwrap();
        assert_eq!(early.remember_for_secs, 590 + 300);
        // Verification itself keeps no state: the same token verifies again; refusing the
        // second use is the caller's part.
        assert!(run(&config, &at(500)).is_ok());
    }
}
