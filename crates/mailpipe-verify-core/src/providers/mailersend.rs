//! MailerSend: `Signature` = lower-case hex HMAC-SHA256 (key = the webhook's signing secret,
//! as its ASCII text) of the raw body. Nothing time-bound is signed: replays are left to
//! downstream dedupe on `data.id`. MailerSend escapes `/` as `\/`: only raw bytes verify.

use crate::config::SourceConfig;
use crate::outcome::{Authenticated, Rejection};
use crate::providers::body_hmac_sha256;
use crate::request::Request;
use crate::Context;

pub(crate) const SIGNATURE_HEADER: &str = "signature";

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let signature = request.required_header(SIGNATURE_HEADER)?;
    let expected = hex::decode(signature).map_err(|_| Rejection::bad("signature is not hex"))?;
    body_hmac_sha256(request, source, &expected)
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    crate::testing::ExampleParts::new(now).body_hmac_in(SIGNATURE_HEADER)
}

#[cfg(test)]
mod tests {
    //! The published vectors run from `tests/vectors/mailersend/` (one test, `tests/vectors.rs`);
    //! here are the generated signatures, tampering and edge cases.

    use mailpipe_model::Provider;

    use crate::testing::{hmac_sha256, request, verify_with};
    use crate::{Reason, SourceConfig, SourceOptions};

    fn check(
        keys: &[&str],
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<crate::Verified, Reason> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let source = SourceConfig::new(Provider::Mailersend, &keys, SourceOptions::default());
        let headers: Vec<(&str, &str)> = signature.map(|s| ("signature", s)).into_iter().collect();
        verify_with(&source, &request(&headers, body, 0)).map_err(|r| r.reason)
    }

    #[test]
    fn generated_signature_tampering_and_rotation() {
        let body = br#"{"type":"activity.delivered","data":{"id":"1"}}"#;
        let signature = hex::encode(hmac_sha256(b"secret-2", &[body]));
        assert_eq!(
            check(&["secret-1", "secret-2"], Some(&signature), body)
                .unwrap()
                .key_index(),
            Some(1)
        );
        let mut flipped = body.to_vec();
        flipped[5] ^= 1;
        assert_eq!(
            check(&["secret-2"], Some(&signature), &flipped).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&["secret-1"], Some(&signature), body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&["secret-2"], Some(&signature[..62]), body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&["secret-2"], Some(&signature[..63]), body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&["secret-2"], Some("garbage"), body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&["secret-2"], None, body).unwrap_err(),
            Reason::MissingSignature
        );
        assert_eq!(
            check(&[], Some(&signature), body).unwrap_err(),
            Reason::NoUsableKey
        );
    }
}
