//! What the sender signs with, per provider: the source a request goes to (from the
//! configuration, through `mailpipe-settings`), its shared secret, and for the public-key
//! providers the private half from the development keys folder (`config/dev-keys/`).
//!
//! DEVELOPMENT ONLY: the committed dev config and keys are public. Pointed at a real
//! configuration, loading fails for SendGrid, Postal and SES (their private keys are the
//! ESP's), which is the point.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use mailpipe_model::{Provider, SecretKind, SourceOption};
use mailpipe_settings::{Settings, SignatureEncoding, SourceSettings};
use mailpipe_verify_core::DEFAULT_SIGNATURE_HEADER;
use p256::pkcs8::DecodePrivateKey as _;
use rsa::RsaPrivateKey;

use crate::error::SampleError;

/// Private key files in the development keys folder.
pub const SENDGRID_KEY_FILE: &str = "sendgrid-signing-key.pem";
pub const POSTAL_KEY_FILE: &str = "postal-signing-key.pem";
pub const SNS_KEY_FILE: &str = "sns-signing-key.pem";
pub const SNS_CERT_FILE: &str = "sns-signing-cert.pem";

/// Where `--sns-cert-url` points by default: what `mailpipe serve-dev-cert` serves.
pub const DEFAULT_SNS_CERT_URL: &str = "http://127.0.0.1:8099/sns-signing-cert.pem";

/// The development keys folder next to the configuration file in use: `MAILPIPE_CONFIG`'s
/// folder, else `config/`, plus `dev-keys`.
pub fn default_dev_keys_dir() -> PathBuf {
    let config = std::env::var_os(mailpipe_settings::CONFIG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(mailpipe_settings::DEFAULT_CONFIG_PATH));
    config
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("dev-keys")
}

/// HTTP credentials of the shared-secret providers: `user:password` goes as Basic, anything
/// else as a Bearer token (what `mailpipe-verify` accepts either way).
#[derive(Clone)]
pub enum Credential {
    Basic { user: String, password: String },
    Bearer(String),
}

impl Credential {
    fn parse(secret: &str) -> Credential {
        match secret.split_once(':') {
            Some((user, password)) => Credential::Basic {
                user: user.into(),
                password: password.into(),
            },
            None => Credential::Bearer(secret.into()),
        }
    }

    /// The `Authorization` header value; `forged` swaps the password or token for a wrong one.
    pub fn authorization(&self, forged: bool) -> String {
        match (self, forged) {
            (Credential::Basic { user, password }, false) => {
                mailpipe_verify_core::sign::basic_auth(user, password)
            }
            (Credential::Basic { user, .. }, true) => {
                mailpipe_verify_core::sign::basic_auth(user, "forged-password")
            }
            (Credential::Bearer(token), false) => format!("Bearer {token}"),
            (Credential::Bearer(_), true) => "Bearer forged-token".into(),
        }
    }
}

/// The signing material of one provider's source, by the kind of secret its spec names
/// (`mailpipe_model::SecretKind`), so a provider of a known kind needs nothing here.
#[derive(Clone)]
pub enum Secret {
    /// The private half of a P-256 key (SendGrid).
    Ecdsa(p256::ecdsa::SigningKey),
    /// The private half of an RSA key (Postal).
    Rsa(RsaPrivateKey),
    /// The raw key bytes behind a `whsec_` secret (Resend).
    StandardWebhooks(Vec<u8>),
    /// An HMAC key, with the settings the provider's spec says it takes.
    Hmac {
        key: String,
        /// Providers taking `webhook_url` (Mandrill): it is signed.
        webhook_url: Option<String>,
        /// Providers taking `signature_header` (generic): header, lower-case, and encoding.
        signature: Option<(String, SignatureEncoding)>,
    },
    Credentials(Credential),
    Sns {
        key: RsaPrivateKey,
        topic_arn: String,
        certificate_url: String,
    },
}

/// One provider's source: where to post and how to sign.
#[derive(Clone)]
pub struct SourceKeys {
    pub provider: Provider,
    pub source_id: String,
    /// `/webhooks/{provider}`, or `/webhooks/{provider}/{source}` when the source is not
    /// named like the provider.
    pub path: String,
    /// The timestamp tolerance verify applies to this source, for stale requests.
    pub tolerance_secs: i64,
    pub secret: Secret,
}

/// Every selected provider's [`SourceKeys`]. `Debug` shows sources, never secrets.
#[derive(Clone, Default)]
pub struct DevKeys {
    sources: BTreeMap<Provider, SourceKeys>,
}

impl fmt::Debug for DevKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.sources.values().map(|s| (s.provider, &s.source_id)))
            .finish()
    }
}

impl DevKeys {
    /// The source of each of `providers` in `settings` (the one named like the provider,
    /// else the first of that provider), with the private keys of `dev_keys_dir`.
    pub fn load(
        settings: &Settings,
        dev_keys_dir: &Path,
        providers: &[Provider],
        sns_certificate_url: &str,
    ) -> Result<DevKeys, SampleError> {
        let mut sources = BTreeMap::new();
        for &provider in providers {
            let (id, source) =
                find_source(settings, provider).ok_or(SampleError::NoSource { provider })?;
            let tolerance = source
                .timestamp_tolerance_seconds
                .unwrap_or(settings.verify.timestamp_tolerance_seconds);
            let secret = secret(provider, id, source, dev_keys_dir, sns_certificate_url)?;
            let path = if id == provider.as_str() {
                format!("/webhooks/{provider}")
            } else {
                format!("/webhooks/{provider}/{id}")
            };
            sources.insert(
                provider,
                SourceKeys {
                    provider,
                    source_id: id.to_string(),
                    path,
                    tolerance_secs: i64::try_from(tolerance).unwrap_or(i64::MAX),
                    secret,
                },
            );
        }
        Ok(DevKeys { sources })
    }

    pub fn get(&self, provider: Provider) -> Option<&SourceKeys> {
        self.sources.get(&provider)
    }

    pub fn providers(&self) -> impl Iterator<Item = Provider> + '_ {
        self.sources.keys().copied()
    }
}

fn find_source(settings: &Settings, provider: Provider) -> Option<(&str, &SourceSettings)> {
    settings.source(provider, None).or_else(|| {
        settings
            .sources
            .iter()
            .find(|(_, s)| s.provider == provider)
            .map(|(id, s)| (id.as_str(), s))
    })
}

fn secret(
    provider: Provider,
    id: &str,
    source: &SourceSettings,
    dir: &Path,
    sns_certificate_url: &str,
) -> Result<Secret, SampleError> {
    let first = || {
        source
            .secrets
            .first()
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or_else(|| SampleError::Source {
                source_id: id.into(),
                problem: "has no secret to sign with".into(),
            })
    };
    let spec = provider.spec();
    Ok(match spec.secrets {
        SecretKind::EcdsaP256PublicKey => Secret::Ecdsa(
            p256::ecdsa::SigningKey::from_pkcs8_pem(&read(dir, SENDGRID_KEY_FILE)?)
                .map_err(|e| key_error(dir, SENDGRID_KEY_FILE, &e))?,
        ),
        SecretKind::RsaPublicKey => Secret::Rsa(rsa_key(dir, POSTAL_KEY_FILE)?),
        SecretKind::AmazonCertificate => Secret::Sns {
            key: rsa_key(dir, SNS_KEY_FILE)?,
            topic_arn: source.sns_topic_arns.first().cloned().ok_or_else(|| {
                SampleError::Source {
                    source_id: id.into(),
                    problem: "has no sns_topic_arns".into(),
                }
            })?,
            certificate_url: sns_certificate_url.into(),
        },
        SecretKind::SharedSecret => Secret::Credentials(Credential::parse(&first()?)),
        SecretKind::HmacKey => Secret::Hmac {
            key: first()?,
            webhook_url: if spec.takes(SourceOption::WebhookUrl) {
                Some(source.webhook_url.clone().ok_or_else(|| {
                    let mut name = provider.to_string();
                    name[..1].make_ascii_uppercase();
                    SampleError::Source {
                        source_id: id.into(),
                        problem: format!("has no webhook_url ({name} signs it)"),
                    }
                })?)
            } else {
                None
            },
            signature: spec.takes(SourceOption::SignatureHeader).then(|| {
                let header = source
                    .signature_header
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SIGNATURE_HEADER.into())
                    .to_ascii_lowercase();
                (header, source.signature_encoding)
            }),
        },
        SecretKind::StandardWebhooksSecret => {
            let secret = first()?;
            let lenient = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
                    .with_decode_allow_trailing_bits(true),
            );
            let key = lenient
                .decode(secret.strip_prefix("whsec_").unwrap_or(&secret))
                .map_err(|_| SampleError::Source {
                    source_id: id.into(),
                    problem: "secret is not a whsec_ base64 secret".into(),
                })?;
            Secret::StandardWebhooks(key)
        }
    })
}

fn read(dir: &Path, file: &str) -> Result<String, SampleError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| SampleError::KeyFile {
        path,
        problem: e.to_string(),
    })
}

fn rsa_key(dir: &Path, file: &str) -> Result<RsaPrivateKey, SampleError> {
    use rsa::pkcs8::DecodePrivateKey as _;
    RsaPrivateKey::from_pkcs8_pem(&read(dir, file)?).map_err(|e| key_error(dir, file, &e))
}

fn key_error(dir: &Path, file: &str, error: &dyn fmt::Display) -> SampleError {
    SampleError::KeyFile {
        path: dir.join(file),
        problem: format!("not a PKCS#8 PEM private key: {error}"),
    }
}
