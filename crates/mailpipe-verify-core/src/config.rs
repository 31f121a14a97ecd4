//! A source's verification material, parsed once at start: keys decoded, credentials
//! digested, provider extras resolved. Unusable secrets are dropped and described in
//! [`SourceConfig::problems`] (without their content); with none left the source fails
//! closed (`no_usable_key`).

use std::fmt;

use mailpipe_model::{Provider, SecretKind, SourceOption};
use mailpipe_settings::{SignatureEncoding, SourceSettings, VerifySettings};
use p256::pkcs8::DecodePublicKey as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;

use crate::certificates::{UrlPolicy, DEFAULT_SNS_HOSTS};
use crate::crypto;
use crate::outcome::{Reason, Rejection};

/// Header of the generic provider's signature when none is configured.
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-signature";

/// Provider extras of one source (see `SourceSettings` for what each means).
#[derive(Clone)]
pub struct SourceOptions {
    pub timestamp_tolerance_seconds: u64,
    pub webhook_url: Option<String>,
    pub sns_topic_arns: Vec<String>,
    pub sns_certificate_hosts: Vec<String>,
    pub sns_insecure_loopback: bool,
    /// SES: largest accepted age of the signed `Timestamp`; `None` checks no age.
    pub sns_max_age_seconds: Option<u64>,
    pub signature_header: Option<String>,
    pub signature_encoding: SignatureEncoding,
    pub token_header: Option<String>,
}

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            timestamp_tolerance_seconds: 300,
            webhook_url: None,
            sns_topic_arns: Vec::new(),
            sns_certificate_hosts: Vec::new(),
            sns_insecure_loopback: false,
            sns_max_age_seconds: None,
            signature_header: None,
            signature_encoding: SignatureEncoding::Hex,
            token_header: None,
        }
    }
}

/// Decoded keys, in the order of the configured secrets that were usable.
#[derive(Clone)]
pub(crate) enum Keys {
    Ecdsa(Vec<p256::ecdsa::VerifyingKey>),
    Hmac(Vec<Vec<u8>>),
    /// SHA-256 digests of `user:password` strings and tokens.
    Credentials(Vec<[u8; 32]>),
    Rsa(Vec<rsa::RsaPublicKey>),
    /// SES: keys come from Amazon's certificates; the TopicArn allowlist is what is needed.
    Sns,
}

/// Everything needed to verify requests of one source. `Debug` shows counts, not keys.
#[derive(Clone)]
pub struct SourceConfig {
    pub(crate) provider: Provider,
    pub(crate) keys: Keys,
    /// `key_index` reported for key `i` of `keys`: its position among the secrets.
    pub(crate) secret_index: Vec<usize>,
    pub(crate) tolerance: i64,
    /// SES only: the optional maximum age of an SNS message at receipt.
    pub(crate) sns_max_age: Option<i64>,
    pub(crate) webhook_url: Option<String>,
    pub(crate) topic_arns: Vec<String>,
    pub(crate) urls: UrlPolicy,
    pub(crate) signature_header: String,
    pub(crate) signature_encoding: SignatureEncoding,
    pub(crate) token_header: Option<String>,
    problems: Vec<String>,
}

impl SourceConfig {
    pub fn from_settings(source: &SourceSettings, verify: &VerifySettings) -> SourceConfig {
        let options = SourceOptions {
            timestamp_tolerance_seconds: source
                .timestamp_tolerance_seconds
                .unwrap_or(verify.timestamp_tolerance_seconds),
            webhook_url: source.webhook_url.clone(),
            sns_topic_arns: source.sns_topic_arns.clone(),
            sns_certificate_hosts: source.sns_certificate_hosts.clone(),
            sns_insecure_loopback: source.sns_insecure_loopback,
            sns_max_age_seconds: source.sns_max_age_seconds,
            signature_header: source.signature_header.clone(),
            signature_encoding: source.signature_encoding,
            token_header: source.token_header.clone(),
        };
        SourceConfig::new(source.provider, &source.secrets, options)
    }

    /// Parses `secrets` as `provider` needs them. Never fails: problems are recorded.
    pub fn new(provider: Provider, secrets: &[String], options: SourceOptions) -> SourceConfig {
        let mut problems = Vec::new();
        let mut secret_index = Vec::new();
        let mut parsed = Parsed {
            secrets,
            problems: &mut problems,
            secret_index: &mut secret_index,
        };
        let non_empty = |bytes: Vec<u8>| (!bytes.is_empty()).then_some(bytes);
        let spec = provider.spec();
        let keys = match spec.secrets {
            SecretKind::EcdsaP256PublicKey => {
                Keys::Ecdsa(parsed.each("a P-256 public key (base64 DER or PEM)", ecdsa_key))
            }
            SecretKind::RsaPublicKey => {
                Keys::Rsa(parsed.each("an RSA public key (base64 DER or PEM)", rsa_key))
            }
            SecretKind::StandardWebhooksSecret => {
                Keys::Hmac(parsed.each("a whsec_ signing secret (base64)", |s| {
                    non_empty(crypto::base64_decode_lenient(
                        s.strip_prefix("whsec_").unwrap_or(s),
                    )?)
                }))
            }
            SecretKind::HmacKey => {
                Keys::Hmac(parsed.each("a non-empty key", |s| non_empty(s.as_bytes().to_vec())))
            }
            SecretKind::SharedSecret => {
                Keys::Credentials(parsed.each("a non-empty user:password or token", |s| {
                    (!s.is_empty()).then(|| crypto::credential_digest(s.as_bytes()))
                }))
            }
            SecretKind::AmazonCertificate => {
                if !secrets.is_empty() {
                    problems.push(format!(
                        "secrets: {provider} takes none (SNS signs with Amazon's certificate); ignored"
                    ));
                }
                Keys::Sns
            }
        };
        if spec.takes(SourceOption::WebhookUrl) && options.webhook_url.is_none() {
            problems.push(format!(
                "webhook_url: required for {provider} (it is signed); every request fails"
            ));
        }
        if spec.secrets == SecretKind::AmazonCertificate && options.sns_topic_arns.is_empty() {
            problems.push("sns_topic_arns: none allowed; every request fails".into());
        }
        let hosts = if options.sns_certificate_hosts.is_empty() {
            DEFAULT_SNS_HOSTS.map(String::from).to_vec()
        } else {
            options
                .sns_certificate_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        };
        SourceConfig {
            provider,
            keys,
            secret_index,
            tolerance: i64::try_from(options.timestamp_tolerance_seconds).unwrap_or(i64::MAX),
            sns_max_age: options
                .sns_max_age_seconds
                .map(|age| i64::try_from(age).unwrap_or(i64::MAX)),
            webhook_url: options.webhook_url,
            topic_arns: options.sns_topic_arns,
            urls: UrlPolicy {
                hosts,
                insecure_loopback: options.sns_insecure_loopback,
            },
            signature_header: options
                .signature_header
                .unwrap_or_else(|| DEFAULT_SIGNATURE_HEADER.to_string())
                .to_ascii_lowercase(),
            signature_encoding: options.signature_encoding,
            token_header: options.token_header.map(|h| h.to_ascii_lowercase()),
            problems,
        }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// What was wrong with the configuration, one line each, free of secret content. The
    /// stage logs these at start.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Whether anything can verify; when false every request is `no_usable_key`.
    pub fn is_usable(&self) -> bool {
        match &self.keys {
            Keys::Ecdsa(k) => !k.is_empty(),
            Keys::Rsa(k) => !k.is_empty(),
            Keys::Credentials(k) => !k.is_empty(),
            Keys::Hmac(k) => {
                !k.is_empty()
                    && (!self.provider.spec().takes(SourceOption::WebhookUrl)
                        || self.webhook_url.is_some())
            }
            Keys::Sns => !self.topic_arns.is_empty(),
        }
    }

    /// The usable keys of each kind; asking for a kind the provider does not use is a
    /// programming error, answered as `no_usable_key` rather than a panic.
    pub(crate) fn hmac_keys(&self) -> Result<&[Vec<u8>], Rejection> {
        usable(match &self.keys {
            Keys::Hmac(keys) => keys,
            _ => &[],
        })
    }

    pub(crate) fn ecdsa_keys(&self) -> Result<&[p256::ecdsa::VerifyingKey], Rejection> {
        usable(match &self.keys {
            Keys::Ecdsa(keys) => keys,
            _ => &[],
        })
    }

    pub(crate) fn rsa_keys(&self) -> Result<&[rsa::RsaPublicKey], Rejection> {
        usable(match &self.keys {
            Keys::Rsa(keys) => keys,
            _ => &[],
        })
    }

    pub(crate) fn credential_digests(&self) -> Result<&[[u8; 32]], Rejection> {
        usable(match &self.keys {
            Keys::Credentials(digests) => digests,
            _ => &[],
        })
    }

    /// The configured secret's index for the `i`-th usable key.
    pub(crate) fn key_index(&self, i: usize) -> Option<usize> {
        self.secret_index.get(i).copied()
    }
}

fn usable<T>(keys: &[T]) -> Result<&[T], Rejection> {
    if keys.is_empty() {
        return Err(Rejection::new(
            Reason::NoUsableKey,
            "source has no usable key of the kind this provider needs",
        ));
    }
    Ok(keys)
}

/// Parses every secret one way, remembering which ones were usable.
struct Parsed<'a> {
    secrets: &'a [String],
    problems: &'a mut Vec<String>,
    secret_index: &'a mut Vec<usize>,
}

impl Parsed<'_> {
    fn each<T>(&mut self, what: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
        let mut keys = Vec::new();
        for (i, secret) in self.secrets.iter().enumerate() {
            match parse(secret) {
                Some(key) => {
                    self.secret_index.push(i);
                    keys.push(key);
                }
                None => self
                    .problems
                    .push(format!("secrets[{i}]: not {what}; ignored")),
            }
        }
        keys
    }
}

// Hand-written so that neither keys nor a webhook URL (which may embed `user:password`)
// can reach a log through `{:?}`.
impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            Keys::Ecdsa(k) => k.len(),
            Keys::Hmac(k) => k.len(),
            Keys::Credentials(k) => k.len(),
            Keys::Rsa(k) => k.len(),
            Keys::Sns => 0,
        };
        f.debug_struct("SourceConfig")
            .field("provider", &self.provider)
            .field("usable_keys", &keys)
            .field("tolerance", &self.tolerance)
            .field("sns_max_age", &self.sns_max_age)
            .field("webhook_url", &self.webhook_url.as_ref().map(|_| "<set>"))
            .field("topic_arns", &self.topic_arns)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SourceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceOptions")
            .field(
                "timestamp_tolerance_seconds",
                &self.timestamp_tolerance_seconds,
            )
            .field("webhook_url", &self.webhook_url.as_ref().map(|_| "<set>"))
            .field("sns_topic_arns", &self.sns_topic_arns)
            .finish_non_exhaustive()
    }
}

fn ecdsa_key(secret: &str) -> Option<p256::ecdsa::VerifyingKey> {
    p256::ecdsa::VerifyingKey::from_public_key_der(&crypto::der_from_base64_or_pem(secret)?).ok()
}

/// SubjectPublicKeyInfo (what Postal shows) or, failing that, a bare PKCS#1 RSA key.
fn rsa_key(secret: &str) -> Option<rsa::RsaPublicKey> {
    let der = crypto::der_from_base64_or_pem(secret)?;
    rsa::RsaPublicKey::from_public_key_der(&der)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_der(&der))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDGRID_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";

    #[test]
    fn unusable_secrets_are_dropped_and_described_without_content() {
        let secrets = ["garbage-secret-value".to_string(), SENDGRID_KEY.to_string()];
        let config = SourceConfig::new(Provider::Sendgrid, &secrets, SourceOptions::default());
        assert!(config.is_usable());
        assert_eq!(
            config.key_index(0),
            Some(1),
            "the second secret is the first usable key"
        );
        assert_eq!(config.problems().len(), 1);
        assert!(config.problems()[0].starts_with("secrets[0]"));
        assert!(!config.problems()[0].contains("garbage-secret-value"));
    }

    #[test]
    fn debug_output_carries_no_secret() {
        let options = SourceOptions {
            webhook_url: Some("https://user:url-password@hooks.example.com/m".into()),
            ..SourceOptions::default()
        };
        let shown = format!("{options:?}");
        let config = SourceConfig::new(Provider::Mandrill, &["hmac-secret-key".into()], options);
        let shown = format!("{shown} {config:?}");
        assert!(shown.contains("usable_keys: 1"), "{shown}");
        assert!(
            !shown.contains("url-password") && !shown.contains("hmac-secret-key"),
            "{shown}"
        );
    }

    #[test]
    fn fail_closed_without_keys_or_required_extras() {
        let none = |p| SourceConfig::new(p, &[], SourceOptions::default());
        for provider in Provider::ALL {
            assert!(!none(provider).is_usable(), "{provider}");
        }
        let key = ["k".to_string()];
        assert!(!SourceConfig::new(Provider::Mandrill, &key, SourceOptions::default()).is_usable());
        assert!(SourceConfig::new(Provider::Mailgun, &key, SourceOptions::default()).is_usable());
        assert!(!SourceConfig::new(
            Provider::Mailgun,
            &[String::new()],
            SourceOptions::default()
        )
        .is_usable());
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{SENDGRID_KEY}\n-----END PUBLIC KEY-----\n");
        assert!(
            SourceConfig::new(Provider::Sendgrid, &[pem], SourceOptions::default()).is_usable()
        );
    }
}
