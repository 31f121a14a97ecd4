//! Mandrill / Mailchimp Transactional: `X-Mandrill-Signature` = base64 HMAC-SHA1 (key = the
//! webhook's key) over the webhook URL exactly as entered in Mandrill (scheme, host, port,
//! path, query, any `user:pass@`) followed by every form field sorted by name, each as
//! name ‖ value (decoded). The URL is configuration (`webhook_url`), never reconstructed
//! from the request: behind proxies the request URL differs from what Mandrill signed.
//!
//! Nothing time-bound is signed: no replay protection beyond downstream dedupe.

use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, Rejection, Scheme};
use crate::request::Request;
use crate::Context;
use mailpipe_model::form;

pub(crate) const SIGNATURE_HEADER: &str = "x-mandrill-signature";

pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let keys = source.hmac_keys()?;
    let url = source.webhook_url.as_deref().ok_or_else(|| {
        Rejection::new(
            crate::Reason::NoUsableKey,
            "mandrill source has no webhook_url",
        )
    })?;
    let signature = request.required_header(SIGNATURE_HEADER)?;
    let expected = crypto::base64_decode(signature)
        .ok_or_else(|| Rejection::bad("signature is not base64"))?;
    let mut fields = form::urlencoded_pairs(&request.body);
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    // A repeated field name has no defined order in the signed string (PHP, which
    // Mandrill's samples use, keeps only one): refuse rather than guess.
    if fields.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Err(Rejection::malformed("form field repeated"));
    }
    let mut parts: Vec<&[u8]> = vec![url.as_bytes()];
    for (name, value) in &fields {
        parts.push(name.as_bytes());
        parts.push(value.as_bytes());
    }
    let index =
        crypto::hmac_sha1_match(keys, &parts, &expected).ok_or_else(Rejection::no_key_verifies)?;
    Ok(Authenticated::by_key(Scheme::HmacSha1, source, index))
}

/// A correctly signed example request (`crate::testing::example`).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    use crate::testing::*;
    let mut parts = ExampleParts::new(now);
    let (secrets, headers, body) = {
        let hmac_key = parts.hmac_key;
        let mandrill_url = parts.mandrill_url;
        let options = &mut parts.options;
        options.webhook_url = Some(mandrill_url.into());
        let events = r#"[{"event":"send","ts":1461095246}]"#;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("mandrill_events", events)
            .finish();
        let signature = mandrill_signature(hmac_key, mandrill_url, &[("mandrill_events", events)]);
        (
            vec![hmac_key.into()],
            vec![("x-mandrill-signature".into(), signature)],
            body.into_bytes(),
        )
    };
    parts.signed(secrets, headers, body)
}

#[cfg(test)]
mod tests {
    //! The published vectors run from `tests/vectors/mandrill/` (one test, `tests/vectors.rs`);
    //! here are the generated signatures, tampering and edge cases.

    use mailpipe_model::Provider;

    use crate::testing::{mandrill_signature, request, verify_with};
    use crate::{Reason, SourceConfig, SourceOptions};

    const MD2_URL: &str = "https://example.com/webhooks/mandrill";
    const MD2_EVENTS: &str = r#"[{"event":"send","ts":1461095246,"_id":"abcdef012345789abcdef012345789","msg":{"email":"recipient@example.com"}}]"#;

    fn source(keys: &[&str], url: Option<&str>) -> SourceConfig {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let options = SourceOptions {
            webhook_url: url.map(String::from),
            ..SourceOptions::default()
        };
        SourceConfig::new(Provider::Mandrill, &keys, options)
    }

    fn check(
        source: &SourceConfig,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<crate::Verified, Reason> {
        let headers: Vec<(&str, &str)> = signature
            .map(|s| ("x-mandrill-signature", s))
            .into_iter()
            .collect();
        verify_with(source, &request(&headers, body, 0)).map_err(|r| r.reason)
    }

    #[test]
    fn generated_signature_tampering_and_rotation() {
        let config = source(&["old-key", "new-key"], Some(MD2_URL));
        let fields = [("mandrill_events", MD2_EVENTS), ("b_extra", "x y")];
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish()
            .into_bytes();
        let signature = mandrill_signature("new-key", MD2_URL, &fields);
        assert_eq!(
            check(&config, Some(&signature), &body).unwrap().key_index(),
            Some(1)
        );
        let old = mandrill_signature("old-key", MD2_URL, &fields);
        assert_eq!(
            check(&config, Some(&old), &body).unwrap().key_index(),
            Some(0)
        );

        let mut flipped = body.clone();
        flipped[20] ^= 1;
        assert_eq!(
            check(&config, Some(&signature), &flipped).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&source(&["wrong"], Some(MD2_URL)), Some(&signature), &body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(
                &source(&["new-key"], Some("https://example.com/webhooks/mandrill/")),
                Some(&signature),
                &body
            )
            .unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, Some(&signature[..10]), &body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, Some("not base64!"), &body).unwrap_err(),
            Reason::BadSignature
        );
        assert_eq!(
            check(&config, None, &body).unwrap_err(),
            Reason::MissingSignature
        );
        let repeated = [body.as_slice(), b"&b_extra=x"].concat();
        assert_eq!(
            check(&config, Some(&signature), &repeated).unwrap_err(),
            Reason::MalformedRequest
        );
        assert_eq!(
            check(&source(&["new-key"], None), Some(&signature), &body).unwrap_err(),
            Reason::NoUsableKey
        );
    }
}
