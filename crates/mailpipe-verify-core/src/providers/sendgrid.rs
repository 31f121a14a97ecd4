//! SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over the timestamp header's bytes
//! immediately followed by the raw body (no separator); signature base64 of ASN.1 DER.
//!
//! SendGrid's signatures are often high-S (both published vectors are), so they are
//! normalised to low-S before verifying instead of being refused as malleable. SendGrid
//! does not say whether retries (up to 24 h) refresh the timestamp: a source that sees
//! `stale_timestamp` on retries can raise its `timestamp_tolerance_seconds`.

use p256::ecdsa::signature::DigestVerifier as _;
use p256::ecdsa::Signature;
use sha2::{Digest, Sha256};

use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, Rejection, Scheme};
use crate::request::Request;
use crate::Context;

pub(crate) const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub(crate) const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let keys = source.ecdsa_keys()?;
    let signature = request.required_header(SIGNATURE_HEADER)?;
    let timestamp = request.required_header(TIMESTAMP_HEADER)?;
    let der = crypto::base64_decode(signature)
        .ok_or_else(|| Rejection::bad("signature is not base64"))?;
    let signature = Signature::from_der(&der)
        .map_err(|_| Rejection::bad("signature is not a DER ECDSA signature"))?;
    let signature = signature.normalize_s().unwrap_or(signature);
    let digest = Sha256::new()
        .chain_update(timestamp.as_bytes())
        .chain_update(&request.body);
    let index = keys
        .iter()
        .position(|key| key.verify_digest(digest.clone(), &signature).is_ok())
        .ok_or_else(Rejection::no_key_verifies)?;
    let signed_at = crypto::parse_unix_seconds(timestamp)
        .ok_or_else(|| Rejection::malformed(format!("{TIMESTAMP_HEADER} is not Unix seconds")))?;
    crypto::check_fresh(signed_at, request, source.tolerance)?;
    Ok(Authenticated::by_key(Scheme::EcdsaP256Sha256, source, index).signed_at(signed_at))
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    use crate::testing::*;
    let parts = ExampleParts::new(now);
    let (secrets, headers, body) = {
        let ts = parts.ts.clone();
        let body = parts.body.clone();
        let key = sendgrid_key();
        let headers = vec![
            (
                "x-twilio-email-event-webhook-signature".into(),
                sendgrid_signature(&key, &ts, &body),
            ),
            ("x-twilio-email-event-webhook-timestamp".into(), ts.clone()),
        ];
        (vec![sendgrid_public_key(&key)], headers, body)
    };
    parts.signed(secrets, headers, body)
}

#[cfg(test)]
mod tests {
    //! The published vectors run from `tests/vectors/sendgrid/` (one test, `tests/vectors.rs`);
    //! here are the generated signatures, tampering and edge cases.

    use mailpipe_model::Provider;

    use crate::testing::{
        request, sendgrid_key, sendgrid_public_key, sendgrid_signature, verify_with,
    };
    use crate::{Reason, SourceConfig, SourceOptions};

    use super::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

    /// SG-1: sendgrid-nodejs `eventwebhook.spec.js` and sendgrid-python `test_eventwebhook.py`.
    const SG1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";

    fn source(keys: &[&str]) -> SourceConfig {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        SourceConfig::new(Provider::Sendgrid, &keys, SourceOptions::default())
    }

    fn check(
        keys: &[&str],
        signature: &str,
        timestamp: &str,
        body: &[u8],
        now: i64,
    ) -> Result<crate::Verified, Reason> {
        let headers = [(SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, timestamp)];
        verify_with(&source(keys), &request(&headers, body, now)).map_err(|r| r.reason)
    }

    #[test]
    fn generated_key_signs_and_every_tampering_fails() {
        let key = sendgrid_key();
        let public = sendgrid_public_key(&key);
        let now = 1_700_000_000;
        let body = b"[{\"event\":\"delivered\"}]\r\n".to_vec();
        let signature = sendgrid_signature(&key, "1700000000", &body);
        assert!(check(&[&public], &signature, "1700000000", &body, now).is_ok());

        let mut flipped = body.clone();
        flipped[3] ^= 1;
        assert_eq!(
            check(&[&public], &signature, "1700000000", &flipped, now).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[&public], &signature, "1700000001", &body, now).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[SG1_KEY], &signature, "1700000000", &body, now).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[&public], &signature[..20], "1700000000", &body, now).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[&public], "bm90IGEgc2ln", "1700000000", &body, now).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[&public], "%%%", "1700000000", &body, now).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&[&public], &signature, "1700000000", &body, now + 301).unwrap_err(),
            Reason::StaleTimestamp
        );
        assert_eq!(
            check(&[&public], &signature, "1700000000", &body, now - 301).unwrap_err(),
            Reason::StaleTimestamp
        );

        let only = |headers: &[(&str, &str)]| {
            verify_with(&source(&[&public]), &request(headers, &body, now))
                .unwrap_err()
                .reason
        };
        assert_eq!(
            only(&[(TIMESTAMP_HEADER, "1700000000")]),
            Reason::MissingSignature
        );
        assert_eq!(
            only(&[(SIGNATURE_HEADER, &signature)]),
            Reason::MissingSignature
        );
    }

    #[test]
    fn rotation_accepts_either_key() {
        let (old, new) = (sendgrid_key(), sendgrid_key());
        let keys = [sendgrid_public_key(&old), sendgrid_public_key(&new)];
        let keys = [keys[0].as_str(), keys[1].as_str()];
        for (i, key) in [old, new].iter().enumerate() {
            let signature = sendgrid_signature(key, "100", b"[]");
            assert_eq!(
                check(&keys, &signature, "100", b"[]", 100)
                    .unwrap()
                    .key_index(),
                Some(i)
            );
        }
    }

    #[test]
    fn validly_signed_non_numeric_timestamp_is_malformed() {
        let key = sendgrid_key();
        let signature = sendgrid_signature(&key, "timestamp", b"[]");
        let public = sendgrid_public_key(&key);
        assert_eq!(
            check(&[&public], &signature, "timestamp", b"[]", 0).unwrap_err(),
            Reason::MalformedRequest
        );
    }
}
