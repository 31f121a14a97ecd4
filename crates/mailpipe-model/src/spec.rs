//! What a [`ProviderSpec`] says: the facts about a provider that more than one crate reads
//! (what its secrets are, which headers carry credentials, which source settings it
//! takes). Each provider's spec is in its file, `src/providers/<module>.rs`. Settings
//! validation, verification's key parsing and credential stripping, and the sample sender
//! all read them through [`Provider::spec`] instead of keeping their own lists.
//!
//! Invariant: a fact about a provider that two crates need lives in its spec, once. What
//! only one crate needs (a payload format, a signature algorithm) stays in that crate's file
//! for the provider.

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

use SourceOption::{TimestampTolerance, TokenHeader};

/// The spec of the providers that present a shared secret instead of signing.
pub(crate) const SHARED_SECRET: ProviderSpec = ProviderSpec {
    secrets: SecretKind::SharedSecret,
    credential_headers: &[],
    options: &[TimestampTolerance, TokenHeader],
    signs_timestamp: false,
};

#[cfg(test)]
mod tests {
    use super::*;
    use SourceOption::Sns;

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
