//! Credentials must not travel past verification: `mail.verified` is read by more teams than
//! `mail.raw`. A [`StrippedRequest`] is a request without them, and the only form in which
//! a request leaves this crate: [`crate::verify`] strips as it answers, and a request of an
//! unknown source is stripped of every provider's credentials.
//!
//! Removed for every provider: `authorization`, `proxy-authorization`; per provider, the
//! `credential_headers` of its spec (`mailpipe_model::ProviderSpec`) and the header its
//! source configures (`token_header`, or generic's `signature_header`). Mailgun and SES
//! sign inside the body, with signatures that are not secrets.

use mailpipe_model::{Provider, SourceOption};

use crate::config::{SourceConfig, DEFAULT_SIGNATURE_HEADER};
use crate::request::Request;

const ALWAYS: [&str; 2] = ["authorization", "proxy-authorization"];

/// A request whose credential headers are gone. Made only here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrippedRequest(Request);

impl StrippedRequest {
    /// Strips the credential headers of `source`'s provider. Public because stripping is
    /// always safe; what no one outside can do is make a [`crate::Verified`].
    pub fn new(source: &SourceConfig, mut request: Request) -> StrippedRequest {
        let spec = source.provider().spec();
        let configured: Option<&str> = if spec.takes(SourceOption::SignatureHeader) {
            Some(&source.signature_header)
        } else if spec.takes(SourceOption::TokenHeader) {
            source.token_header.as_deref()
        } else {
            None
        };
        let strip = ALWAYS
            .iter()
            .chain(spec.credential_headers)
            .copied()
            .chain(configured);
        remove(&mut request.headers, strip);
        StrippedRequest(request)
    }

    /// Strips every provider's credential headers (and the default signature header), for
    /// a request that names no configured source.
    pub fn of_unknown_source(mut request: Request) -> StrippedRequest {
        let every = Provider::ALL
            .iter()
            .flat_map(|p| p.spec().credential_headers)
            .chain(&ALWAYS)
            .copied()
            .chain([DEFAULT_SIGNATURE_HEADER]);
        remove(&mut request.headers, every);
        StrippedRequest(request)
    }

    pub fn request(&self) -> &Request {
        &self.0
    }

    pub fn into_inner(self) -> Request {
        self.0
    }
}

fn remove<'a>(headers: &mut Vec<(String, Vec<u8>)>, names: impl Iterator<Item = &'a str> + Clone) {
    headers.retain(|(name, _)| !names.clone().any(|strip| name.eq_ignore_ascii_case(strip)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceOptions;

    fn headers(names: &[&str]) -> Vec<(String, Vec<u8>)> {
        names
            .iter()
            .map(|n| (n.to_string(), b"v".to_vec()))
            .collect()
    }

    fn kept(provider: Provider, options: SourceOptions, names: &[&str]) -> Vec<String> {
        let source = SourceConfig::new(provider, &[], options);
        let request = Request {
            headers: headers(names),
            ..Request::default()
        };
        let stripped = StrippedRequest::new(&source, request).into_inner();
        stripped.headers.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn authorization_and_signatures_go_the_rest_stays() {
        let names = [
            "content-type",
            "Authorization",
            "x-twilio-email-event-webhook-signature",
            "x-twilio-email-event-webhook-timestamp",
        ];
        assert_eq!(
            kept(Provider::Sendgrid, SourceOptions::default(), &names),
            ["content-type", "x-twilio-email-event-webhook-timestamp"]
        );
        let names = [
            "svix-id",
            "svix-timestamp",
            "svix-signature",
            "proxy-authorization",
        ];
        assert_eq!(
            kept(Provider::Resend, SourceOptions::default(), &names),
            ["svix-id", "svix-timestamp"]
        );
    }

    #[test]
    fn configured_headers_go_too() {
        let generic = SourceOptions {
            signature_header: Some("X-Hub-Sig".into()),
            ..SourceOptions::default()
        };
        assert_eq!(
            kept(Provider::Generic, generic, &["x-hub-sig", "x-signature"]),
            ["x-signature"]
        );
        let token = SourceOptions {
            token_header: Some("x-token".into()),
            ..SourceOptions::default()
        };
        assert_eq!(
            kept(Provider::Brevo, token.clone(), &["x-token", "x-other"]),
            ["x-other"]
        );
        assert_eq!(
            kept(Provider::Mailgun, token, &["x-token"]),
            ["x-token"],
            "only where it is used"
        );
    }
}
