//! Credentials must not travel past verification: `mail.verified` is read by more teams than
//! `mail.raw`. [`strip_credentials`] removes them from a verified request's headers.
//!
//! Removed for every provider: `authorization`, `proxy-authorization`. Per provider also:
//! - sendgrid: `x-twilio-email-event-webhook-signature` (its timestamp header stays)
//! - mandrill: `x-mandrill-signature`
//! - resend: `svix-signature`, `webhook-signature` (ids and timestamps stay: dedupe keys)
//! - mailersend: `signature`
//! - postal: `x-postal-signature`, `x-postal-signature-256` (the key id stays)
//! - sparkpost: `x-messagesystems-webhook-token`
//! - postmark, sparkpost, brevo, mailjet: the source's `token_header`
//! - generic: the source's `signature_header`
//! - mailgun, ses: nothing more; their signatures are inside the body, and are not secrets.

use mailpipe_model::Provider;

use crate::config::SourceConfig;

const ALWAYS: [&str; 2] = ["authorization", "proxy-authorization"];

fn provider_headers(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Sendgrid => &["x-twilio-email-event-webhook-signature"],
        Provider::Mandrill => &["x-mandrill-signature"],
        Provider::Resend => &["svix-signature", "webhook-signature"],
        Provider::Mailersend => &["signature"],
        Provider::Postal => &["x-postal-signature", "x-postal-signature-256"],
        Provider::Sparkpost => &["x-messagesystems-webhook-token"],
        Provider::Mailgun
        | Provider::Ses
        | Provider::Postmark
        | Provider::Brevo
        | Provider::Mailjet
        | Provider::Generic => &[],
    }
}

/// Removes the credential headers of `source`'s provider (see the module docs) in place.
pub fn strip_credentials(source: &SourceConfig, headers: &mut Vec<(String, Vec<u8>)>) {
    let configured: Option<&str> = match source.provider() {
        Provider::Generic => Some(&source.signature_header),
        Provider::Postmark | Provider::Sparkpost | Provider::Brevo | Provider::Mailjet => {
            source.token_header.as_deref()
        }
        _ => None,
    };
    headers.retain(|(name, _)| {
        let secret = ALWAYS
            .iter()
            .chain(provider_headers(source.provider()))
            .copied()
            .chain(configured)
            .any(|strip| name.eq_ignore_ascii_case(strip));
        !secret
    });
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
        let mut h = headers(names);
        strip_credentials(&source, &mut h);
        h.into_iter().map(|(n, _)| n).collect()
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
