//! The crate's one error type: what is wrong with a piece of delivery configuration or a
//! request about to be signed. Messages are lower-case, without a trailing period.
//!
//! Invariant: no variant holds a signing secret or any part of one; configuration text that
//! is not secret (a duration, an allow-list entry, a webhook id) is quoted so the operator
//! sees what to fix.

/// Everything that can be refused here. Runtime outcomes (a 503, a timeout) are not errors:
/// they are [`crate::Verdict`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// A `whsec_` secret that cannot be used; `reason` says why without quoting it.
    #[error("invalid signing secret: {reason}")]
    InvalidSigningSecret { reason: &'static str },
    /// Signing with no secret at all: a webhook is never sent unsigned.
    #[error("no signing secret: every webhook is signed with at least one `whsec_` secret")]
    NoSigningSecret,
    /// A `webhook-id` that the signed content `id.timestamp.body` cannot hold unambiguously
    /// or that is not a valid header value.
    #[error("invalid webhook id `{id}`: {reason}")]
    InvalidWebhookId { id: String, reason: &'static str },
    #[error("invalid duration `{text}`: one whole number and a unit (500ms, 5s, 2m, 1h, 1d), at most 7 days")]
    InvalidDuration { text: String },
    #[error("invalid retry schedule: {reason}")]
    InvalidRetrySchedule { reason: String },
    #[error("invalid rate limit: {reason}")]
    InvalidRateLimit { reason: String },
    #[error("invalid circuit breaker settings: {reason}")]
    InvalidBreakerConfig { reason: String },
    /// An entry of the SSRF allow list that is neither `host[:port]`, an IP (with or without
    /// port) nor a CIDR.
    #[error("invalid allow-list entry `{entry}`: {reason}")]
    InvalidAllowEntry { entry: String, reason: &'static str },
}
