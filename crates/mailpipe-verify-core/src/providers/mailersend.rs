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

#[cfg(test)]
mod tests {
    use mailpipe_model::Provider;

    use crate::testing::{hmac_sha256, request, verify_with};
    use crate::{Reason, SourceConfig, SourceOptions};

    /// MS-1 (providers.md §13.5): anymail's key and body shape, `\/` escapes included.
    const MS1_KEY: &str = "TEST_WEBHOOK_SIGNING_SECRET";
    const MS1_BODY: &str = r#"{"type":"activity.sent","data":{"id":"63fd1c1d31b9c750540fe85c","type":"sent","created_at":"2023-02-27T21:09:49.506000Z","url":"https:\/\/example.com\/"}}"#;
    const MS1_SIGNATURE: &str = "64226d4610926da009af25bd50423f771aa66650eb83711ff9eda0e257fa2fbe";

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
    fn derived_vector_ms1_and_raw_bytes_only() {
        assert!(check(&[MS1_KEY], Some(MS1_SIGNATURE), MS1_BODY.as_bytes()).is_ok());
        let upper = MS1_SIGNATURE.to_ascii_uppercase();
        assert!(
            check(&[MS1_KEY], Some(&upper), MS1_BODY.as_bytes()).is_ok(),
            "hex case is not significant"
        );
        let reserialised = serde_json::from_str::<serde_json::Value>(MS1_BODY)
            .unwrap()
            .to_string();
        assert_eq!(
            check(&[MS1_KEY], Some(MS1_SIGNATURE), reserialised.as_bytes()).unwrap_err(),
            Reason::BadSignature
        );
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
