//! Resend and any Standard Webhooks sender: `v1` entries of the signature header are base64
//! HMAC-SHA256 (key = the `whsec_` secret, base64-decoded) over `id.timestamp.body`. The
//! header may hold several space-separated entries (the sender rotating keys); any `v1`
//! entry verifying with any key passes, other versions (`v1a`) are ignored. Headers are
//! `svix-*` (Resend) or `webhook-*` (the spec); `svix-*` wins when both are present, as in
//! Svix's libraries. The timestamp must be within tolerance of receipt.
//!
//! The id is stable across retries, so it is a dedupe key, not a replay key: retries of a
//! failed delivery legitimately reuse it with a fresh timestamp and signature.

use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, Rejection, Scheme};
use crate::request::Request;
use crate::Context;

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let keys = source.hmac_keys()?;
    let prefix = if request.header_str("svix-id")?.is_some() {
        "svix"
    } else {
        "webhook"
    };
    let id = request.required_header(&format!("{prefix}-id"))?;
    let timestamp = request.required_header(&format!("{prefix}-timestamp"))?;
    let signatures = request.required_header(&format!("{prefix}-signature"))?;
    // Digits only: the signed string joins fields with '.', so the timestamp must not
    // contain one (nor a sign or spaces that parse() would tolerate).
    let signed_at = crypto::parse_unix_seconds(timestamp)
        .ok_or_else(|| Rejection::malformed(format!("{prefix}-timestamp is not Unix seconds")))?;
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(crypto::base64_decode)
        .collect();
    if candidates.is_empty() {
        return Err(Rejection::bad("no decodable v1 signature"));
    }
    let signed: [&[u8]; 5] = [
        id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        &request.body,
    ];
    let index = candidates
        .iter()
        .find_map(|candidate| crypto::hmac_sha256_match(keys, &signed, candidate))
        .ok_or_else(|| Rejection::bad("no v1 signature verifies with any configured key"))?;
    crypto::check_fresh(signed_at, request, source.tolerance)?;
    Ok(Authenticated::by_key(Scheme::StandardWebhooksV1, source, index).signed_at(signed_at))
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    use crate::testing::*;
    let parts = ExampleParts::new(now);
    let (secrets, headers, body) = {
        let whsec = parts.whsec;
        let ts = parts.ts.clone();
        let body = parts.body.clone();
        let key = crate::crypto::base64_decode_lenient(&whsec["whsec_".len()..]).expect("base64");
        let headers = vec![
            ("svix-id".into(), "msg_example".into()),
            ("svix-timestamp".into(), ts.clone()),
            (
                "svix-signature".into(),
                standard_webhooks_signature(&key, "msg_example", &ts, &body),
            ),
        ];
        (vec![whsec.into()], headers, body)
    };
    parts.signed(secrets, headers, body)
}

#[cfg(test)]
mod tests {
    //! The published vectors run from `tests/vectors/resend/` (one test, `tests/vectors.rs`);
    //! here are the generated signatures, tampering and edge cases.

    use mailpipe_model::Provider;

    use crate::testing::{request, standard_webhooks_signature, verify_with};
    use crate::{Reason, SourceConfig, SourceOptions};

    /// SW-1: standard-webhooks `libraries/rust` `test_sign` (same in svix-webhooks).
    const SW1_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    /// SW-2: standard-webhooks Go and Python suites, Svix docs.
    const SW2_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn source(secrets: &[&str]) -> SourceConfig {
        let secrets: Vec<String> = secrets.iter().map(|k| k.to_string()).collect();
        SourceConfig::new(Provider::Resend, &secrets, SourceOptions::default())
    }

    fn check(
        secrets: &[&str],
        prefix: &str,
        (id, ts, sig): (&str, &str, &str),
        body: &str,
        now: i64,
    ) -> Result<crate::Verified, Reason> {
        let names = [
            format!("{prefix}-id"),
            format!("{prefix}-timestamp"),
            format!("{prefix}-signature"),
        ];
        let headers = [
            (names[0].as_str(), id),
            (names[1].as_str(), ts),
            (names[2].as_str(), sig),
        ];
        verify_with(&source(secrets), &request(&headers, body.as_bytes(), now))
            .map_err(|r| r.reason)
    }

    /// The published vectors (SW-1, SW-2 and their negatives) run from `tests/vectors/resend/`.
    #[test]
    fn unpadded_secrets_decode_as_pythons_library_does() {
        // Unpadded secrets (23 and 25 bytes, non-zero trailing bits) decode as Python's library does.
        for secret in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
        ] {
            let key = crate::crypto::base64_decode_lenient(secret).unwrap();
            let sig = standard_webhooks_signature(&key, "id", "5", b"{}");
            assert!(
                check(&[secret], "webhook", ("id", "5", &sig), "{}", 5).is_ok(),
                "{secret}"
            );
        }
    }

    #[test]
    fn secrets_without_key_bytes_are_unusable() {
        assert!(!source(&["whsec_"]).is_usable());
        assert!(!source(&[""]).is_usable());
    }

    #[test]
    fn tampering_wrong_key_missing_headers_and_rotation() {
        let body = r#"{"type":"email.sent","data":{"id":"x"}}"#;
        let key = crate::crypto::base64_decode_lenient("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = standard_webhooks_signature(&key, "msg_1", "1000", body.as_bytes());
        let good = ("msg_1", "1000", sig.as_str());
        assert_eq!(
            check(&[SW1_SECRET, SW2_SECRET], "svix", good, body, 1000)
                .unwrap()
                .key_index(),
            Some(1)
        );
        assert_eq!(
            check(&[SW1_SECRET], "svix", good, body, 1000).unwrap_err(),
            Reason::BadSignature
        );
        let flipped = body.replace("sent", "sena");
        assert_eq!(
            check(&[SW2_SECRET], "svix", good, &flipped, 1000).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[SW2_SECRET], "svix", ("msg_2", "1000", &sig), body, 1000).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[SW2_SECRET], "svix", ("msg_1", "+1000", &sig), body, 1000).unwrap_err(),
            Reason::MalformedRequest
        );
        assert_eq!(
            check(&[SW2_SECRET], "svix", ("msg_1", "1000", ""), body, 1000).unwrap_err(),
            Reason::MissingSignature
        );
        let only_id = request(&[("webhook-id", "msg_1")], body.as_bytes(), 1000);
        assert_eq!(
            verify_with(&source(&[SW2_SECRET]), &only_id)
                .unwrap_err()
                .reason,
            Reason::MissingSignature
        );
    }
}
