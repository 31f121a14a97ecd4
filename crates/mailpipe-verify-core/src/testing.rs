//! Test helpers on top of [`crate::sign`] (re-exported here, so `testing::hmac_sha256` and
//! friends keep working): generated keys and certificates, a signed example request of every
//! provider, and request builders. For this crate's tests, the fuzz targets (which sign
//! fuzzed bodies so the paths after a valid signature are explored too) and the verify
//! stage's tests. Built with `cfg(test)` or the `testing` feature; never in a production
//! binary.

use std::sync::OnceLock;
use std::time::Duration;

use rand_core::OsRng;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::RsaPrivateKey;
use sha2::Sha256;

use crate::outcome::Authenticated;
pub use crate::sign::*;
use crate::strip::StrippedRequest;
use crate::{
    CertificateCache, Context, Rejection, Request, Scheme, SnsControl, SourceConfig, Verified,
};

/// A request with these headers and body, received at `received_at_secs`.
pub fn request(headers: &[(&str, &str)], body: &[u8], received_at_secs: i64) -> Request {
    Request {
        request_id: "test-request".into(),
        received_at_ms: received_at_secs * 1000,
        method: "POST".into(),
        path: "/webhooks/test".into(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    }
}

/// [`crate::verify`] with no certificates.
pub fn verify_with(source: &SourceConfig, request: &Request) -> Result<Verified, Rejection> {
    let certificates = CertificateCache::new(1);
    crate::verify(
        request.clone(),
        source,
        &mut Context {
            certificates: &certificates,
        },
    )
    .map_err(|rejected| rejected.rejection)
}

/// A [`Verified`] as verification makes one (`request` stripped as `source` says), with
/// the given outcome: for tests of code that consumes one, such as the stage's records.
pub fn verified(
    source: &SourceConfig,
    request: Request,
    scheme: Scheme,
    key_index: Option<usize>,
    control: Option<SnsControl>,
) -> Verified {
    Verified {
        how: Authenticated {
            scheme,
            key_index,
            signed_at: None,
            control,
            one_time_token: None,
        },
        request: StrippedRequest::new(source, request),
    }
}

/// A fresh P-256 key, as SendGrid holds one per account.
pub fn sendgrid_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::random(&mut OsRng)
}

/// The verification key as SendGrid's dashboard shows it: base64 DER SubjectPublicKeyInfo.
pub fn sendgrid_public_key(key: &p256::ecdsa::SigningKey) -> String {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .expect("P-256 keys encode");
    base64(der.as_bytes())
}

static RSA_KEYS: OnceLock<[RsaPrivateKey; 2]> = OnceLock::new();

/// Two RSA-2048 keys, generated once per process (generation is slow in debug builds).
pub fn rsa_keys() -> &'static [RsaPrivateKey; 2] {
    RSA_KEYS.get_or_init(|| {
        let generate = || RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key generation");
        [generate(), generate()]
    })
}

/// Makes [`rsa_keys`] return `keys` instead of generating some; false if keys were already
/// in use. For the fuzz targets: key generation under a sanitizer takes many seconds.
pub fn use_rsa_keys(keys: [RsaPrivateKey; 2]) -> bool {
    RSA_KEYS.set(keys).is_ok()
}

/// Base64 DER SubjectPublicKeyInfo, as Postal shows its signing key.
pub fn rsa_public_key(key: &RsaPrivateKey) -> String {
    base64(
        key.to_public_key()
            .to_public_key_der()
            .expect("RSA keys encode")
            .as_bytes(),
    )
}

/// A self-signed PEM certificate for `key`, valid between the two Unix times, like the
/// ones SNS serves at `SigningCertURL`.
pub fn sns_certificate_pem(key: &RsaPrivateKey, not_before: u64, not_after: u64) -> String {
    use std::str::FromStr as _;
    use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
    use x509_cert::der::{asn1::UtcTime, EncodePem as _};
    use x509_cert::time::{Time, Validity};
    let time = |secs| {
        Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).expect("before 2050"))
    };
    let validity = Validity {
        not_before: time(not_before),
        not_after: time(not_after),
    };
    let spki =
        x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).expect("RSA key");
    let signer = SigningKey::<Sha256>::new(key.clone());
    let subject = x509_cert::name::Name::from_str("CN=sns.amazonaws.com").expect("valid name");
    let builder =
        CertificateBuilder::new(Profile::Root, 1u32.into(), validity, subject, spki, &signer)
            .expect("certificate builder");
    let certificate = builder
        .build::<rsa::pkcs1v15::Signature>()
        .expect("certificate signs");
    certificate
        .to_pem(x509_cert::der::pem::LineEnding::LF)
        .expect("PEM")
}

/// A correctly signed request of `provider` received at `now`, with the source and the
/// certificate store that verify it. For tests and the fuzz targets, which mutate it.
pub struct Example {
    pub source: SourceConfig,
    pub request: Request,
    pub certificates: CertificateCache,
}

/// Secrets the examples use, so tests can check that none leaks into a rejection.
pub const EXAMPLE_SECRETS: [&str; 4] = [
    "example-hmac-key",
    "hook-user:hook-password",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "https://hooks.example.com/mandrill",
];

pub fn example(provider: crate::Provider, now: i64) -> Example {
    let parts = crate::providers::example(provider, now);
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Example {
        source: SourceConfig::new(provider, &parts.secrets, parts.options),
        request: request(&headers, &parts.body, now),
        certificates: parts.certificates,
    }
}

/// What a provider's `example(now)` (in its module) makes: the example secrets and a
/// default body to start from, then the source's secrets and options, the signed request's
/// headers and body, and the certificates that verify it.
pub(crate) struct ExampleParts {
    pub hmac_key: &'static str,
    pub credentials: &'static str,
    pub whsec: &'static str,
    pub mandrill_url: &'static str,
    /// `now` as decimal Unix seconds.
    pub ts: String,
    pub body: Vec<u8>,
    pub options: crate::SourceOptions,
    pub certificates: CertificateCache,
    pub secrets: Vec<String>,
    pub headers: Vec<(String, String)>,
}

impl ExampleParts {
    pub(crate) fn new(now: i64) -> ExampleParts {
        let [hmac_key, credentials, whsec, mandrill_url] = EXAMPLE_SECRETS;
        ExampleParts {
            hmac_key,
            credentials,
            whsec,
            mandrill_url,
            ts: now.to_string(),
            body: br#"[{"event":"delivered","email":"a@example.com"}]"#.to_vec(),
            options: crate::SourceOptions::default(),
            certificates: CertificateCache::new(2),
            secrets: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Signed as body-HMAC providers sign (generic, MailerSend): hex HMAC-SHA256 of the body
    /// with the example key, in `header`.
    pub(crate) fn body_hmac_in(self, header: &str) -> ExampleParts {
        let signature = hex::encode(hmac_sha256(self.hmac_key.as_bytes(), &[&self.body]));
        let (key, body) = (self.hmac_key.to_string(), self.body.clone());
        self.signed(vec![key], vec![(header.into(), signature)], body)
    }

    pub(crate) fn signed(
        mut self,
        secrets: Vec<String>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> ExampleParts {
        self.secrets = secrets;
        self.headers = headers;
        self.body = body;
        self
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS.000Z` (civil-from-days, Howard Hinnant).
pub(crate) fn unix_to_rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
