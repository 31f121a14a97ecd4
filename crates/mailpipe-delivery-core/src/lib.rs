//! The pure core of outbound webhook delivery (issue 19): everything the delivery worker
//! decides, with none of what it does. The worker owns the HTTP client, the clock, the
//! random numbers, Kafka and Redis; it asks this crate:
//!
//! - [`sign`]: which `webhook-id`, `webhook-timestamp` and `webhook-signature` headers to
//!   send (Standard Webhooks, several secrets at once while a secret is rotated);
//! - [`classify`]: what an attempt's answer means — delivered, retry, fail, disable target;
//! - [`schedule`] and [`retry_after`]: when to try again, and when to give up;
//! - [`breaker`] and [`limit`]: whether a target may be called right now;
//! - [`ssrf`]: whether the address actually connected to may be called at all.
//!
//! Invariant: pure — no IO, no network, no tokio, no clock, no randomness: time comes in as
//! Unix milliseconds (`now_ms`) or seconds, randomness as a number in `[0, 1)`. So every
//! rule here is unit-tested with exact times.
//! Invariant: never panics on any input (config text, header values, times, addresses).
//! Invariant: a signing secret never appears in an error message or `Debug` output.

pub mod breaker;
pub mod classify;
mod duration;
mod error;
pub mod limit;
pub mod retry_after;
pub mod schedule;
pub mod sign;
pub mod ssrf;

pub use breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker, Ticket};
pub use classify::{classify, AttemptResult, FailReason, RetryReason, TransportFailure, Verdict};
pub use duration::parse_duration;
pub use error::DeliveryError;
pub use limit::TokenBucket;
pub use retry_after::parse_retry_after;
pub use schedule::RetrySchedule;
pub use sign::{headers, sign, SigningSecret, WebhookHeaders};
pub use ssrf::{forbidden_reason, AllowList};
