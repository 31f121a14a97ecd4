//! SNS signing certificates: which URLs may be fetched at all, the parsed certificate, and
//! the store the stage fills. The library never fetches: the stage asks
//! [`crate::required_certificate`] for an already-checked [`CertificateUrl`], fetches it,
//! and inserts it here before calling [`crate::verify`].
//!
//! Invariant: a [`CertificateUrl`] can only be made by [`UrlPolicy`], so nothing that did not
//! pass the scheme/host/path checks can be handed to the fetcher.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use rsa::pkcs1v15::VerifyingKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use sha2::Sha256;
use x509_cert::der::{DecodePem, Encode};
use x509_cert::Certificate;

use crate::outcome::{Reason, Rejection};

/// Hosts used when a source lists none: the AWS validators' rule (`sns.<region>.amazonaws.com`,
/// China regions under `.com.cn`), never any other `*.amazonaws.com` host (S3 lives there).
pub const DEFAULT_SNS_HOSTS: [&str; 2] = ["sns.*.amazonaws.com", "sns.*.amazonaws.com.cn"];

/// Which URLs a source lets SNS point us at (certificates and SubscribeURLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlPolicy {
    /// Lower-case host patterns; a `*` label matches any one DNS label.
    pub(crate) hosts: Vec<String>,
    /// Tests only: `http://` (or https) on 127.0.0.0/8, `::1` and `localhost`, any port.
    pub(crate) insecure_loopback: bool,
}

impl UrlPolicy {
    /// A certificate URL: https, allowed host, default port, no credentials, path `*.pem`.
    pub(crate) fn certificate_url(&self, text: &str) -> Result<CertificateUrl, Rejection> {
        let url = self.check(text, true).map_err(|why| {
            Rejection::new(
                Reason::UntrustedCertificate,
                format!("SigningCertURL {why}"),
            )
        })?;
        Ok(CertificateUrl(url))
    }

    /// A SubscribeURL: the same rules as certificates, any path.
    pub(crate) fn subscribe_url(&self, text: &str) -> Result<String, Rejection> {
        self.check(text, false)
            .map(String::from)
            .map_err(|why| Rejection::malformed(format!("SubscribeURL {why}")))
    }

    fn check(&self, text: &str, pem: bool) -> Result<url::Url, &'static str> {
        let url = url::Url::parse(text).map_err(|_| "is not a URL")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials");
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if self.insecure_loopback && loopback && matches!(url.scheme(), "http" | "https") {
            // Test servers on loopback: any port, http allowed (the setting says insecure).
        } else if url.scheme() != "https" {
            return Err("must use https");
        } else if url.port().is_some() {
            return Err("must use the default port");
        } else {
            let Some(url::Host::Domain(host)) = url.host() else {
                return Err("must name a host, not an address");
            };
            if !self.hosts.iter().any(|pattern| host_matches(pattern, host)) {
                return Err("host is not allowed");
            }
        }
        if pem && !url.path().ends_with(".pem") {
            return Err("path must end in .pem");
        }
        Ok(url)
    }
}

/// `pattern` labels equal `host` labels, `*` matching one non-empty label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (mut p, mut h) = (pattern.split('.'), host.split('.'));
    loop {
        match (p.next(), h.next()) {
            (None, None) => return true,
            (Some("*"), Some(label)) if !label.is_empty() => {}
            (Some(want), Some(label)) if want.eq_ignore_ascii_case(label) => {}
            _ => return false,
        }
    }
}

/// A certificate URL that passed the source's [`UrlPolicy`]: safe to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateUrl(url::Url);

impl CertificateUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for CertificateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The RSA key and validity period of an SNS signing certificate. The chain is not
/// checked (neither do AWS's own validators): trust comes from fetching an allowed https
/// URL with the system's roots, which the stage's HTTP client does.
#[derive(Debug, Clone)]
pub struct SigningCertificate {
    pub(crate) sha1: VerifyingKey<sha1::Sha1>,
    pub(crate) sha256: VerifyingKey<Sha256>,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl SigningCertificate {
    /// Parses a PEM certificate as served at `SigningCertURL`.
    pub fn from_pem(pem: &[u8]) -> Result<SigningCertificate, Rejection> {
        let untrusted = |why: &str| Rejection::new(Reason::UntrustedCertificate, why.to_string());
        let cert =
            Certificate::from_pem(pem).map_err(|_| untrusted("certificate is not PEM X.509"))?;
        let tbs = &cert.tbs_certificate;
        let spki = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|_| untrusted("certificate key cannot be encoded"))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|_| untrusted("certificate key is not RSA"))?;
        let seconds =
            |t: x509_cert::time::Time| t.to_unix_duration().as_secs().min(i64::MAX as u64) as i64;
        Ok(SigningCertificate {
            sha1: VerifyingKey::new(key.clone()),
            sha256: VerifyingKey::new(key),
            not_before: seconds(tbs.validity.not_before),
            not_after: seconds(tbs.validity.not_after),
        })
    }

    /// Whether the certificate was valid at `at` (Unix seconds).
    pub fn valid_at(&self, at: i64) -> bool {
        (self.not_before..=self.not_after).contains(&at)
    }
}

/// Where [`crate::verify`] looks up SNS certificates; the stage implements or fills it.
pub trait CertificateStore {
    fn certificate(&self, url: &CertificateUrl) -> Option<Arc<SigningCertificate>>;
}

/// A bounded in-memory [`CertificateStore`], per process: SNS uses a handful of URLs, each
/// fetched once. When full, the certificate inserted first is forgotten first.
#[derive(Debug, Clone)]
pub struct CertificateCache {
    capacity: usize,
    certificates: HashMap<CertificateUrl, Arc<SigningCertificate>>,
    insertion_order: VecDeque<CertificateUrl>,
}

impl CertificateCache {
    pub fn new(capacity: usize) -> CertificateCache {
        CertificateCache {
            capacity: capacity.max(1),
            certificates: HashMap::new(),
            insertion_order: VecDeque::new(),
        }
    }

    pub fn contains(&self, url: &CertificateUrl) -> bool {
        self.certificates.contains_key(url)
    }

    pub fn insert(&mut self, url: CertificateUrl, certificate: SigningCertificate) {
        if self
            .certificates
            .insert(url.clone(), Arc::new(certificate))
            .is_none()
        {
            self.insertion_order.push_back(url);
        }
        while self.certificates.len() > self.capacity {
            match self.insertion_order.pop_front() {
                Some(oldest) => self.certificates.remove(&oldest),
                None => break,
            };
        }
    }

    /// Parses and inserts a fetched PEM; an unusable certificate is not cached.
    pub fn insert_pem(&mut self, url: CertificateUrl, pem: &[u8]) -> Result<(), Rejection> {
        let certificate = SigningCertificate::from_pem(pem)?;
        self.insert(url, certificate);
        Ok(())
    }
}

impl CertificateStore for CertificateCache {
    fn certificate(&self, url: &CertificateUrl) -> Option<Arc<SigningCertificate>> {
        self.certificates.get(url).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws() -> UrlPolicy {
        UrlPolicy {
            hosts: DEFAULT_SNS_HOSTS.map(String::from).to_vec(),
            insecure_loopback: false,
        }
    }

    #[test]
    fn certificate_urls_must_be_https_on_sns_hosts_and_pem() {
        let ok = "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
        assert_eq!(aws().certificate_url(ok).unwrap().as_str(), ok);
        assert!(aws()
            .certificate_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
            .is_ok());
        assert!(aws()
            .certificate_url("https://SNS.US-EAST-1.AMAZONAWS.COM/x.pem")
            .is_ok());
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://foo.amazonaws.com/bar.pem",
            "https://foo.amazonaws.com/bar",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
            "https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://s3.amazonaws.com/bucket/x.pem",
            "https://127.0.0.1/x.pem",
            "http://127.0.0.1:8080/x.pem",
            "file:///etc/x.pem",
            "not a url",
        ] {
            let err = aws().certificate_url(bad).unwrap_err();
            assert_eq!(err.reason, Reason::UntrustedCertificate, "{bad}");
        }
    }

    #[test]
    fn loopback_only_with_the_test_setting() {
        let test = UrlPolicy {
            hosts: vec![],
            insecure_loopback: true,
        };
        assert!(test.certificate_url("http://127.0.0.1:8080/c.pem").is_ok());
        assert!(test.certificate_url("http://[::1]:1/c.pem").is_ok());
        assert!(test.certificate_url("http://localhost:1/c.pem").is_ok());
        assert!(test.certificate_url("http://10.0.0.1/c.pem").is_err());
        assert!(test
            .certificate_url("https://sns.us-east-1.amazonaws.com/c.pem")
            .is_err());
    }

    #[test]
    fn cache_is_bounded_and_refuses_garbage() {
        let policy = aws();
        let pem = include_bytes!("../tests/vectors/sns-published-test-cert.pem");
        let mut cache = CertificateCache::new(1);
        let first = policy
            .certificate_url("https://sns.a-1.amazonaws.com/1.pem")
            .unwrap();
        let second = policy
            .certificate_url("https://sns.a-1.amazonaws.com/2.pem")
            .unwrap();
        cache.insert_pem(first.clone(), pem).unwrap();
        cache.insert_pem(second.clone(), pem).unwrap();
        assert!(!cache.contains(&first) && cache.contains(&second));
        let cert = cache.certificate(&second).unwrap();
        assert!(cert.valid_at(1_659_043_438) && !cert.valid_at(1_700_000_000));
        let err = cache.insert_pem(
            first,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        assert_eq!(err.unwrap_err().reason, Reason::UntrustedCertificate);
    }
}
