//! Postal: base64 RSA PKCS#1 v1.5 signatures of the raw body with the server's key —
//! `X-Postal-Signature-256` (SHA-256) and, from older servers only, `X-Postal-Signature`
//! (SHA-1). When the SHA-256 header is present it alone decides: falling back to SHA-1
//! after it failed would let an attacker downgrade to the weaker hash.
//!
//! The body's `timestamp` is when the webhook was created and retries (≈36 min) reuse it,
//! so it is not checked against the tolerance; dedupe on `uuid` handles repeats.
//! `X-Postal-Signature-KID` is not needed: every configured key is tried (rotation).

use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use sha2::Sha256;

use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, Rejection, Scheme};
use crate::request::Request;
use crate::Context;

pub(crate) const SHA256_HEADER: &str = "x-postal-signature-256";
pub(crate) const SHA1_HEADER: &str = "x-postal-signature";

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let keys = source.rsa_keys()?;
    // Presence, even empty, of the SHA-256 header decides: no fallback once it is there.
    let (scheme, encoded) = if request.header(SHA256_HEADER)?.is_some() {
        (
            Scheme::RsaSha256,
            request.header_str(SHA256_HEADER)?.unwrap_or_default(),
        )
    } else {
        (Scheme::RsaSha1, request.required_header(SHA1_HEADER)?)
    };
    let bytes =
        crypto::base64_decode(encoded).ok_or_else(|| Rejection::bad("signature is not base64"))?;
    let signature = Signature::try_from(bytes.as_slice())
        .map_err(|_| Rejection::bad("signature is not an RSA signature"))?;
    let verifies = |key: &rsa::RsaPublicKey| match scheme {
        Scheme::RsaSha256 => VerifyingKey::<Sha256>::new(key.clone())
            .verify(&request.body, &signature)
            .is_ok(),
        _ => VerifyingKey::<sha1::Sha1>::new(key.clone())
            .verify(&request.body, &signature)
            .is_ok(),
    };
    let index = keys
        .iter()
        .position(verifies)
        .ok_or_else(Rejection::no_key_verifies)?;
    Ok(Authenticated::by_key(scheme, source, index))
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    use crate::testing::*;
    let parts = ExampleParts::new(now);
    let (secrets, headers, body) = {
        let body = parts.body.clone();
        let key = &rsa_keys()[1];
        let headers = vec![
            ("x-postal-signature".into(), rsa_sha1_signature(key, &body)),
            (
                "x-postal-signature-256".into(),
                rsa_sha256_signature(key, &body),
            ),
        ];
        (vec![rsa_public_key(key)], headers, body)
    };
    parts.signed(secrets, headers, body)
}

#[cfg(test)]
mod tests {
    use mailpipe_model::Provider;
    use rsa::pkcs1::EncodeRsaPublicKey as _;

    use super::{SHA1_HEADER, SHA256_HEADER};
    use crate::testing::{
        base64, request, rsa_keys, rsa_public_key, rsa_sha1_signature, rsa_sha256_signature,
        verify_with,
    };
    use crate::{Reason, Scheme, SourceConfig, SourceOptions};

    const BODY: &[u8] = br#"{"event":"MessageSent","timestamp":1606753101.354368,"payload":{"status":"Sent"},"uuid":"58e8d7ee-2cd5-4db2-9af3-3f436105795a"}"#;

    fn source(keys: &[String]) -> SourceConfig {
        SourceConfig::new(Provider::Postal, keys, SourceOptions::default())
    }

    fn check(
        config: &SourceConfig,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<crate::Verified, Reason> {
        verify_with(config, &request(headers, body, 0)).map_err(|r| r.reason)
    }

    #[test]
    fn both_headers_verify_with_a_generated_key_and_rotation() {
        let [old, new] = rsa_keys();
        let config = source(&[rsa_public_key(old), rsa_public_key(new)]);
        let sha256 = rsa_sha256_signature(new, BODY);
        let sha1 = rsa_sha1_signature(new, BODY);
        let both = check(
            &config,
            &[(SHA256_HEADER, &sha256), (SHA1_HEADER, &sha1)],
            BODY,
        )
        .unwrap();
        assert_eq!(
            (both.scheme(), both.key_index()),
            (Scheme::RsaSha256, Some(1))
        );
        let legacy = check(
            &config,
            &[(SHA1_HEADER, &rsa_sha1_signature(old, BODY))],
            BODY,
        )
        .unwrap();
        assert_eq!(
            (legacy.scheme(), legacy.key_index()),
            (Scheme::RsaSha1, Some(0))
        );
        // PEM and bare PKCS#1 keys are accepted too.
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
            rsa_public_key(new)
        );
        let pkcs1 = base64(new.to_public_key().to_pkcs1_der().unwrap().as_bytes());
        for key in [pem, pkcs1] {
            assert!(check(&source(&[key]), &[(SHA256_HEADER, &sha256)], BODY).is_ok());
        }
    }

    #[test]
    fn no_downgrade_tampering_wrong_key_and_garbage() {
        let [key, other] = rsa_keys();
        let config = source(&[rsa_public_key(key)]);
        let sha256 = rsa_sha256_signature(key, BODY);
        let sha1 = rsa_sha1_signature(key, BODY);
        assert_eq!(
            check(
                &config,
                &[(SHA256_HEADER, &sha1), (SHA1_HEADER, &sha1)],
                BODY
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[(SHA256_HEADER, ""), (SHA1_HEADER, &sha1)], BODY).unwrap_err(),
            Reason::BadSignature
        );
        let mut flipped = BODY.to_vec();
        flipped[10] ^= 1;
        assert_eq!(
            check(&config, &[(SHA256_HEADER, &sha256)], &flipped).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[(SHA1_HEADER, &sha1)], &flipped).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(
                &source(&[rsa_public_key(other)]),
                &[(SHA256_HEADER, &sha256)],
                BODY
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[(SHA256_HEADER, &sha256[..40])], BODY).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[(SHA256_HEADER, "AAAA")], BODY).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[(SHA256_HEADER, "***")], BODY).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[("x-postal-signature-kid", "ab")], BODY).unwrap_err(),
            Reason::MissingSignature
        );
        assert_eq!(
            check(
                &source(&["not a key".into()]),
                &[(SHA256_HEADER, &sha256)],
                BODY
            )
            .unwrap_err(),
            Reason::NoUsableKey
        );
    }
}
