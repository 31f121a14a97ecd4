//! What verification answers: [`Verified`] (how the request was authenticated, and the
//! request stripped of credentials) or [`Rejected`] (a [`Rejection`] whose [`Reason`]
//! comes from a closed set, for metrics and `mail.rejected`, and the stripped request).
//!
//! Invariant: a rejection's detail never contains a secret, a signature or a credential;
//! it names what was wrong ("no v1 signature matched"), never the values involved.

use std::fmt;

use crate::config::SourceConfig;
use crate::request::Request;
use crate::strip::StrippedRequest;

/// Why a request was rejected. The set is closed: metrics labels and the rejected topic's
/// `reason` field take exactly these values ([`Reason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The signature, token or credential the provider always sends is absent.
    MissingSignature,
    /// A signature or credential is present but does not verify with any configured key.
    BadSignature,
    /// The signed timestamp is outside the tolerance around the time of receipt.
    StaleTimestamp,
    /// A correctly signed one-time token (Mailgun) was already used by another request.
    Replayed,
    /// No source is configured for the request, or the SNS TopicArn is not allowed.
    UnknownSource,
    /// The SNS certificate URL is not an allowed https URL, or the certificate is unusable.
    UntrustedCertificate,
    /// The SNS certificate passed the URL checks but has not been fetched into the store.
    CertificateUnavailable,
    /// The request cannot be interpreted (unparsable body or header, duplicated header…).
    MalformedRequest,
    /// The source has no usable key or required setting, so nothing can verify: fail closed.
    NoUsableKey,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::MissingSignature,
        Reason::BadSignature,
        Reason::StaleTimestamp,
        Reason::Replayed,
        Reason::UnknownSource,
        Reason::UntrustedCertificate,
        Reason::CertificateUnavailable,
        Reason::MalformedRequest,
        Reason::NoUsableKey,
    ];

    /// The stable snake_case name used in metrics and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingSignature => "missing_signature",
            Reason::BadSignature => "bad_signature",
            Reason::StaleTimestamp => "stale_timestamp",
            Reason::Replayed => "replayed",
            Reason::UnknownSource => "unknown_source",
            Reason::UntrustedCertificate => "untrusted_certificate",
            Reason::CertificateUnavailable => "certificate_unavailable",
            Reason::MalformedRequest => "malformed_request",
            Reason::NoUsableKey => "no_usable_key",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed verification: the closed reason plus a human detail free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }

    /// For the stage: the request names a source that is not configured.
    pub fn unknown_source(detail: impl Into<String>) -> Rejection {
        Rejection::new(Reason::UnknownSource, detail)
    }

    pub(crate) fn missing(what: &str) -> Rejection {
        Rejection::new(Reason::MissingSignature, format!("{what} is missing"))
    }

    pub(crate) fn bad(detail: impl Into<String>) -> Rejection {
        Rejection::new(Reason::BadSignature, detail)
    }

    pub(crate) fn no_key_verifies() -> Rejection {
        Rejection::bad("signature does not verify with any configured key")
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Rejection {
        Rejection::new(Reason::MalformedRequest, detail)
    }
}

/// How a request was authenticated; low-cardinality, for metrics and the verified record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// SendGrid: ECDSA P-256 / SHA-256 over timestamp ‖ body.
    EcdsaP256Sha256,
    /// Mailgun (timestamp ‖ token), MailerSend and generic (body): HMAC-SHA256.
    HmacSha256,
    /// Mandrill: HMAC-SHA1 over URL ‖ sorted form fields.
    HmacSha1,
    /// Resend and other Standard Webhooks senders: `v1` HMAC-SHA256 over id.timestamp.body.
    StandardWebhooksV1,
    /// `Authorization: Basic` matching a configured `user:password`.
    BasicAuth,
    /// `Authorization: Bearer` matching a configured token.
    BearerToken,
    /// A token header (configured, or a provider's own) matching a configured token.
    HeaderToken,
    /// Postal `X-Postal-Signature-256`: RSA PKCS#1 v1.5 / SHA-256 over the body.
    RsaSha256,
    /// Postal legacy `X-Postal-Signature`: RSA PKCS#1 v1.5 / SHA-1 over the body.
    RsaSha1,
    /// SNS `SignatureVersion` 1: RSA PKCS#1 v1.5 / SHA-1 over the canonical string.
    SnsV1,
    /// SNS `SignatureVersion` 2: RSA PKCS#1 v1.5 / SHA-256 over the canonical string.
    SnsV2,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::EcdsaP256Sha256 => "ecdsa_p256_sha256",
            Scheme::HmacSha256 => "hmac_sha256",
            Scheme::HmacSha1 => "hmac_sha1",
            Scheme::StandardWebhooksV1 => "standard_webhooks_v1",
            Scheme::BasicAuth => "basic_auth",
            Scheme::BearerToken => "bearer_token",
            Scheme::HeaderToken => "header_token",
            Scheme::RsaSha256 => "rsa_sha256",
            Scheme::RsaSha1 => "rsa_sha1",
            Scheme::SnsV1 => "sns_v1",
            Scheme::SnsV2 => "sns_v2",
        }
    }
}

/// How a request was authenticated, as a provider's check found it. Crate-private: the
/// outside only ever sees it inside a [`Verified`], next to the stripped request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authenticated {
    pub(crate) scheme: Scheme,
    pub(crate) key_index: Option<usize>,
    pub(crate) signed_at: Option<i64>,
    pub(crate) control: Option<SnsControl>,
    pub(crate) one_time_token: Option<OneTimeToken>,
}

impl Authenticated {
    /// Authenticated by `scheme` with the `i`-th usable key of `source`; nothing signed in
    /// time, no token, no control message.
    pub(crate) fn by_key(scheme: Scheme, source: &SourceConfig, i: usize) -> Authenticated {
        Authenticated {
            scheme,
            key_index: source.key_index(i),
            signed_at: None,
            control: None,
            one_time_token: None,
        }
    }

    /// The same, with the signed timestamp (Unix seconds) that was checked.
    pub(crate) fn signed_at(mut self, at: i64) -> Authenticated {
        self.signed_at = Some(at);
        self
    }
}

/// A request that passed verification, holding the request with its credentials already
/// stripped. Only [`crate::verify`] makes one, so whoever holds a `Verified` holds a
/// request that is both authentic and safe to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub(crate) how: Authenticated,
    pub(crate) request: StrippedRequest,
}

impl Verified {
    pub fn scheme(&self) -> Scheme {
        self.how.scheme
    }

    /// Index into the source's `secrets` of the one that verified (none for SNS, whose key
    /// comes from Amazon's certificate): shows when an old key stops being used.
    pub fn key_index(&self) -> Option<usize> {
        self.how.key_index
    }

    /// The signed timestamp (Unix seconds), for providers that sign one.
    pub fn signed_at(&self) -> Option<i64> {
        self.how.signed_at
    }

    /// Set for SNS control messages, which are not email events.
    pub fn control(&self) -> Option<&SnsControl> {
        self.how.control.as_ref()
    }

    /// Set for Mailgun: the signed one-time token. The request is authentic only if no
    /// other request used this token: the caller must record it (first use wins) before
    /// accepting the request; the verify stage does so in Redis, shared by every instance.
    pub fn one_time_token(&self) -> Option<&OneTimeToken> {
        self.how.one_time_token.as_ref()
    }

    /// The request, credentials stripped.
    pub fn request(&self) -> &Request {
        self.request.request()
    }

    pub fn into_request(self) -> StrippedRequest {
        self.request
    }

    /// Turns this request down after all (e.g. its one-time token was already used): the
    /// stripped request goes on to the rejected topic.
    pub fn reject(self, rejection: Rejection) -> Rejected {
        Rejected {
            rejection,
            request: self.request,
        }
    }
}

/// A request that failed verification, with its credentials stripped as well: a rejected
/// record is read by as many people as a verified one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub rejection: Rejection,
    pub request: StrippedRequest,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.rejection.fmt(f)
    }
}

/// A signed one-time token and how long it must be remembered to refuse its replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeToken {
    pub token: String,
    /// Seconds, counted from the request's receipt, during which another request carrying
    /// this token could still pass the timestamp check (the rest of the tolerance window
    /// after the signed timestamp), plus one tolerance of margin for copies that are
    /// processed further behind their receipt than this one. The caller adds its own lag
    /// (now − receipt) when it records the token later than the receipt.
    pub remember_for_secs: u64,
}

/// SNS messages about the subscription itself rather than about email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnsControl {
    /// Signed `SubscriptionConfirmation`: the stage confirms by GETting `subscribe_url`,
    /// which already passed the same host allowlist as certificate URLs.
    ConfirmSubscription {
        topic_arn: String,
        subscribe_url: String,
    },
    /// Signed `UnsubscribeConfirmation`: informational, nothing to do.
    Unsubscribed { topic_arn: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_are_unique_snake_case() {
        let names: std::collections::BTreeSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        let r = Rejection::new(Reason::StaleTimestamp, "timestamp is 400 s from receipt");
        assert_eq!(
            r.to_string(),
            "stale_timestamp: timestamp is 400 s from receipt"
        );
    }
}
