//! Providers without a payload signature (Postmark, SparkPost, Brevo, Mailjet) authenticate
//! with a shared secret the ESP sends on every request: HTTP Basic credentials embedded in
//! the webhook URL, a bearer token, or a custom header. Any configured secret presented in
//! any of these forms passes.

use crate::config::SourceConfig;
use crate::crypto;
use crate::outcome::{Authenticated, Rejection, Scheme};
use crate::request::Request;
use crate::Context;

/// Verifies the `Authorization` header (Basic or Bearer), the source's `token_header`, and
/// the provider's own token headers (the `credential_headers` of its spec, e.g.
/// SparkPost's legacy `x-messagesystems-webhook-token`). The shared-secret providers'
/// modules re-export it as their `verify`.
pub(crate) fn verify(
    request: &Request,
    source: &SourceConfig,
    _context: &mut Context<'_>,
) -> Result<Authenticated, Rejection> {
    let provider_headers = source.provider().spec().credential_headers;
    let digests = source.credential_digests()?;
    let mut presented: Vec<(Scheme, Vec<u8>)> = Vec::new();
    if let Some(authorization) = request.header_str("authorization")? {
        let (scheme, value) = authorization.split_once(' ').unwrap_or((authorization, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            // Undecodable Basic credentials cannot match; other forms may still be present.
            if let Some(decoded) = crypto::base64_decode(value) {
                presented.push((Scheme::BasicAuth, decoded));
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            presented.push((Scheme::BearerToken, value.as_bytes().to_vec()));
        }
    }
    let token_headers = provider_headers
        .iter()
        .copied()
        .chain(source.token_header.as_deref());
    for name in token_headers {
        if let Some(token) = request.header_str(name)? {
            presented.push((Scheme::HeaderToken, token.as_bytes().to_vec()));
        }
    }
    if presented.is_empty() && request.header_str("authorization")?.is_none() {
        return Err(Rejection::missing("Authorization or token header"));
    }
    for (scheme, credential) in &presented {
        if let Some(i) = crypto::credential_match(digests, credential) {
            return Ok(Authenticated::by_key(*scheme, source, i));
        }
    }
    Err(Rejection::bad("credentials match no configured secret"))
}

/// Shared tests of the four shared-secret providers, run from each provider's file with its
/// own provider id and token headers.
/// A correctly signed example request of a shared-secret provider: Basic credentials.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn example(now: i64) -> crate::testing::ExampleParts {
    use crate::testing::*;
    let parts = ExampleParts::new(now);
    let (secrets, headers, body) = {
        let credentials = parts.credentials;
        let body = parts.body.clone();
        let (user, password) = credentials.split_once(':').expect("user:password");
        (
            vec![credentials.into()],
            vec![("authorization".into(), basic_auth(user, password))],
            body,
        )
    };
    parts.signed(secrets, headers, body)
}

#[cfg(test)]
pub(crate) mod tests {
    use mailpipe_model::Provider;

    use crate::testing::{basic_auth, request, verify_with};
    use crate::{Reason, Scheme, SourceConfig, SourceOptions};

    fn source(provider: Provider, secrets: &[&str], token_header: Option<&str>) -> SourceConfig {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let options = SourceOptions {
            token_header: token_header.map(String::from),
            ..SourceOptions::default()
        };
        SourceConfig::new(provider, &secrets, options)
    }

    /// Basic, Bearer, custom header, rotation, wrong and missing credentials for `provider`.
    pub(crate) fn check_shared_secret_provider(provider: Provider) {
        let config = source(
            provider,
            &["old-user:old-pw", "hook:s3cret", "tok-123"],
            Some("X-Webhook-Token"),
        );
        let verify = |headers: &[(&str, &str)]| verify_with(&config, &request(headers, b"{}", 0));

        let ok = verify(&[("authorization", &basic_auth("hook", "s3cret"))]).unwrap();
        assert_eq!((ok.scheme(), ok.key_index()), (Scheme::BasicAuth, Some(1)));
        let old = verify(&[("authorization", &basic_auth("old-user", "old-pw"))]).unwrap();
        assert_eq!(
            old.key_index(),
            Some(0),
            "rotation: the old secret still verifies"
        );
        let bearer = verify(&[("authorization", "Bearer tok-123")]).unwrap();
        assert_eq!(
            (bearer.scheme(), bearer.key_index()),
            (Scheme::BearerToken, Some(2))
        );
        let header = verify(&[("x-webhook-token", "tok-123")]).unwrap();
        assert_eq!(header.scheme(), Scheme::HeaderToken);

        let reason = |headers: &[(&str, &str)]| verify(headers).unwrap_err().reason;
        assert_eq!(reason(&[]), Reason::MissingSignature);
        assert_eq!(reason(&[("authorization", "")]), Reason::MissingSignature);
        assert_eq!(
            reason(&[("authorization", &basic_auth("hook", "s3creT"))]),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&[("authorization", &basic_auth("hook", "s3cret "))]),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&[("authorization", "Basic !!!not-base64")]),
            Reason::BadSignature
        );
        assert_eq!(reason(&[("authorization", "Basic")]), Reason::BadSignature);
        assert_eq!(
            reason(&[("authorization", "Digest tok-123")]),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&[("authorization", "Bearer tok-12")]),
            Reason::BadSignature
        );
        assert_eq!(reason(&[("x-other", "tok-123")]), Reason::MissingSignature);
        let twice = [
            ("authorization", "Bearer tok-123"),
            ("authorization", "Bearer x"),
        ];
        assert_eq!(reason(&twice), Reason::MalformedRequest);

        let rejection = verify(&[("authorization", &basic_auth("hook", "wrong"))]).unwrap_err();
        assert!(!rejection.detail.contains("s3cret") && !rejection.detail.contains("wrong"));
        let empty = source(provider, &[], None);
        let no_key = verify_with(
            &empty,
            &request(&[("authorization", "Bearer tok-123")], b"", 0),
        );
        assert_eq!(no_key.unwrap_err().reason, Reason::NoUsableKey);
    }
}
