//! Generic senders: HMAC-SHA256 (key = the secret's bytes as written) of the raw body, in a
//! configurable header (`signature_header`, default `x-signature`) encoded as lower- or
//! upper-case hex or standard base64 (`signature_encoding`). Nothing time-bound is signed.

use mailpipe_settings::SignatureEncoding;

use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, Rejection};
use crate::providers::body_hmac_sha256;
use crate::request::Request;
use crate::Context;

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let signature = request.required_header(&source.signature_header)?;
    let expected = match source.signature_encoding {
        SignatureEncoding::Hex => hex::decode(signature).ok(),
        SignatureEncoding::Base64 => crypto::base64_decode(signature),
    }
    .ok_or_else(|| Rejection::bad("signature is not in the configured encoding"))?;
    body_hmac_sha256(request, source, &expected)
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    crate::testing::ExampleParts::new(now).body_hmac_in("x-signature")
}

#[cfg(test)]
mod tests {
    use mailpipe_model::Provider;

    use crate::testing::{base64, hmac_sha256, request, verify_with};
    use crate::{Reason, SignatureEncoding, SourceConfig, SourceOptions};

    fn source(keys: &[&str], header: Option<&str>, encoding: SignatureEncoding) -> SourceConfig {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let options = SourceOptions {
            signature_header: header.map(String::from),
            signature_encoding: encoding,
            ..SourceOptions::default()
        };
        SourceConfig::new(Provider::Generic, &keys, options)
    }

    fn check(
        source: &SourceConfig,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<crate::Verified, Reason> {
        verify_with(source, &request(headers, body, 0)).map_err(|r| r.reason)
    }

    #[test]
    fn hex_in_default_header_and_base64_in_configured_header() {
        let body = b"{\"any\":\"payload\"}";
        let mac = hmac_sha256(b"k2", &[body]);
        let hex_source = source(&["k1", "k2"], None, SignatureEncoding::Hex);
        assert_eq!(
            check(&hex_source, &[("x-signature", &hex::encode(&mac))], body)
                .unwrap()
                .key_index(),
            Some(1)
        );
        let b64_source = source(&["k2"], Some("X-Hook-Signature"), SignatureEncoding::Base64);
        assert!(check(&b64_source, &[("x-hook-signature", &base64(&mac))], body).is_ok());
        assert_eq!(
            check(
                &b64_source,
                &[("x-hook-signature", &hex::encode(&mac))],
                body
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&b64_source, &[("x-signature", &base64(&mac))], body).unwrap_err(),
            Reason::MissingSignature
        );
    }

    #[test]
    fn tampering_wrong_key_truncation_and_no_key() {
        let body = b"payload";
        let good = hex::encode(hmac_sha256(b"k", &[body]));
        let config = source(&["k"], None, SignatureEncoding::Hex);
        assert!(check(&config, &[("x-signature", &good)], body).is_ok());
        assert_eq!(
            check(&config, &[("x-signature", &good)], b"paylOad").unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(
                &source(&["K"], None, SignatureEncoding::Hex),
                &[("x-signature", &good)],
                body
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[("x-signature", &good[..32])], body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[("x-signature", "sha256=00")], body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, &[], body).unwrap_err(),
            Reason::MissingSignature
        );
        assert_eq!(
            check(
                &source(&[""], None, SignatureEncoding::Hex),
                &[("x-signature", &good)],
                body
            )
            .unwrap_err(),
            Reason::NoUsableKey
        );
    }
}
