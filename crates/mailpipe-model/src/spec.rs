//! One [`ProviderSpec`] per provider: the facts about it that more than one crate reads
//! (what its secrets are, which headers carry credentials, which source settings it
//! takes). Settings validation, verification's key parsing and credential stripping, and
//! the sample sender all read them from here instead of keeping their own lists.
//!
//! Invariant: a fact about a provider that two crates need lives here, once. What only one
//! crate needs (a payload format, a signature algorithm) stays in that crate's file for
//! the provider.

use crate::Provider;

/// What a source's `secrets` are for a provider, hence how verification parses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// P-256 public keys, base64 DER or PEM (SendGrid).
    EcdsaP256PublicKey,
    /// RSA public keys, base64 DER or PEM (Postal).
    RsaPublicKey,
    /// Standard Webhooks signing secrets, `whsec_` + base64 (Resend).
    StandardWebhooksSecret,
    /// HMAC keys: the secret's bytes as written.
    HmacKey,
    /// `user:password` strings or tokens the ESP presents on every request (Basic or
    /// Bearer `Authorization`, or a token header): no payload signature.
    SharedSecret,
    /// None: messages are signed with Amazon's certificate; the source lists TopicArns.
    AmazonCertificate,
}

/// A provider-specific key of a source's settings. A source may set only the keys its
/// provider takes; validation refuses the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOption {
    /// `timestamp_tolerance_seconds`.
    TimestampTolerance,
    /// `webhook_url`: part of what is signed, so a provider taking it cannot verify
    /// without it.
    WebhookUrl,
    /// `sns_topic_arns`, `sns_certificate_hosts`, `sns_insecure_loopback`,
    /// `sns_max_age_seconds`.
    Sns,
    /// `signature_header` and `signature_encoding`: where and how the body's HMAC comes.
    SignatureHeader,
    /// `token_header`: a custom header carrying one of the shared secrets.
    TokenHeader,
}

/// The shared facts about one provider; see [`Provider::spec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSpec {
    pub secrets: SecretKind,
    /// Headers (lower-case) that carry a signature or credential, removed before a request
    /// leaves verification. `authorization` and `proxy-authorization` go for every
    /// provider, and the header a source configures (`token_header`, `signature_header`)
    /// goes too; neither is listed here.
    pub credential_headers: &'static [&'static str],
    /// The provider-specific source settings it reads.
    pub options: &'static [SourceOption],
    /// Whether it signs a timestamp that verification holds to the tolerance by default
    /// (SES signs one too, but no age is checked unless a source asks).
    pub signs_timestamp: bool,
}

impl ProviderSpec {
    pub fn takes(&self, option: SourceOption) -> bool {
        self.options.contains(&option)
    }
}

impl Provider {
    /// The providers whose source takes `option`, in [`Provider::ALL`] order.
    pub fn taking(option: SourceOption) -> impl Iterator<Item = Provider> {
        Provider::ALL
            .into_iter()
            .filter(move |p| p.spec().takes(option))
    }
}

use SourceOption::{SignatureHeader, Sns, TimestampTolerance, TokenHeader, WebhookUrl};

const SHARED_SECRET: ProviderSpec = ProviderSpec {
    secrets: SecretKind::SharedSecret,
    credential_headers: &[],
    options: &[TimestampTolerance, TokenHeader],
    signs_timestamp: false,
};

pub(crate) const SENDGRID: ProviderSpec = ProviderSpec {
    secrets: SecretKind::EcdsaP256PublicKey,
    // Its timestamp header stays: it is not a secret.
    credential_headers: &["x-twilio-email-event-webhook-signature"],
    options: &[TimestampTolerance],
    signs_timestamp: true,
};

/// The signature is inside the body, and is not a secret.
pub(crate) const MAILGUN: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &[],
    options: &[TimestampTolerance],
    signs_timestamp: true,
};

pub(crate) const POSTMARK: ProviderSpec = SHARED_SECRET;

/// The signature is inside the body, and is not a secret.
pub(crate) const SES: ProviderSpec = ProviderSpec {
    secrets: SecretKind::AmazonCertificate,
    credential_headers: &[],
    options: &[Sns],
    signs_timestamp: false,
};

pub(crate) const MANDRILL: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &["x-mandrill-signature"],
    options: &[TimestampTolerance, WebhookUrl],
    signs_timestamp: false,
};

/// The legacy `auth_token` header is a credential.
pub(crate) const SPARKPOST: ProviderSpec = ProviderSpec {
    credential_headers: &["x-messagesystems-webhook-token"],
    ..SHARED_SECRET
};

/// Ids and timestamps stay: they are dedupe keys, not secrets.
pub(crate) const RESEND: ProviderSpec = ProviderSpec {
    secrets: SecretKind::StandardWebhooksSecret,
    credential_headers: &["svix-signature", "webhook-signature"],
    options: &[TimestampTolerance],
    signs_timestamp: true,
};

pub(crate) const BREVO: ProviderSpec = SHARED_SECRET;

pub(crate) const MAILJET: ProviderSpec = SHARED_SECRET;

pub(crate) const MAILERSEND: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &["signature"],
    options: &[TimestampTolerance],
    signs_timestamp: false,
};

/// The key id header stays: it is not a secret.
pub(crate) const POSTAL: ProviderSpec = ProviderSpec {
    secrets: SecretKind::RsaPublicKey,
    credential_headers: &["x-postal-signature", "x-postal-signature-256"],
    options: &[TimestampTolerance],
    signs_timestamp: false,
};

/// Its signature header is configured (`signature_header`).
pub(crate) const GENERIC: ProviderSpec = ProviderSpec {
    secrets: SecretKind::HmacKey,
    credential_headers: &[],
    options: &[TimestampTolerance, SignatureHeader],
    signs_timestamp: false,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_are_lower_case_and_options_sensible() {
        for p in Provider::ALL {
            let spec = p.spec();
            for h in spec.credential_headers {
                assert_eq!(*h, h.to_ascii_lowercase(), "{p}");
            }
            let sns = spec.secrets == SecretKind::AmazonCertificate;
            assert_eq!(
                spec.takes(Sns),
                sns,
                "{p}: SNS settings go with SNS signing"
            );
            assert_eq!(spec.takes(TimestampTolerance), !sns, "{p}");
            assert_eq!(
                spec.takes(TokenHeader),
                spec.secrets == SecretKind::SharedSecret,
                "{p}"
            );
        }
        let token: Vec<_> = Provider::taking(TokenHeader).collect();
        assert_eq!(
            token,
            [
                Provider::Postmark,
                Provider::Sparkpost,
                Provider::Brevo,
                Provider::Mailjet
            ]
        );
    }
}
