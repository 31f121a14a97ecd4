//! DEVELOPMENT ONLY: realistic sample traffic for a local pipeline — webhook requests of
//! every provider and every event type it sends (batched where it batches), signed with
//! the development keys of the configured sources, and the sender that posts them like an
//! ESP (`mailpipe send-samples`).
//!
//! ```text
//! plan(PlanOptions { seed, count, providers, duplicates, bad, now_ms })   pure
//!     -> Plan { batches, schedule }        what to send: ids, types, recipients, copies
//! render(&batch, &DevKeys, now)                                            pure
//!     -> WebhookRequest { provider, path, headers, body, events }
//! send::run(settings, options, shutdown)                                   IO
//!     -> Summary                           posts with retries; counts what was accepted
//! ```
//!
//! Invariants:
//! - Generation is deterministic: the same seed (and clock) gives the same requests, byte
//!   for byte; every ESP event gets its own ids.
//! - Every generated request verifies with its source's configuration
//!   (`mailpipe-verify`) and parses into exactly its declared events
//!   (`mailpipe-normalize`); every `--bad` request fails one or the other as declared.
//!   The unit tests check both with the committed development config and keys.

pub mod dev_cert;
mod error;
mod fake;
pub mod keys;
mod plan;
mod providers;
mod render;
pub mod rng;
pub mod send;
mod summary;

pub use error::SampleError;
pub use keys::{DevKeys, DEFAULT_SNS_CERT_URL};
pub use plan::{bad_kinds, plan, Bad, Batch, Kind, Plan, PlanOptions, PlannedEvent, Slot};
pub use render::{render, DeclaredEvent, WebhookRequest};
pub use summary::{AcceptedRequests, EventCounts, Outcome, RequestCounts, Summary, Tally};

use mailpipe_model::{EventType, Provider};

/// The event types `provider`'s samples cover, with the canonical type of each.
pub fn kinds(provider: Provider) -> &'static [Kind] {
    providers::kinds(provider)
}

/// The canonical types `provider`'s samples cover.
pub fn event_types(provider: Provider) -> Vec<EventType> {
    let mut types: Vec<EventType> = kinds(provider).iter().map(|k| k.event_type).collect();
    types.sort();
    types.dedup();
    types
}

/// Every planned request rendered at `now` (Unix seconds), in posting order without the
/// duplicates: seed → requests, for tests and tools.
pub fn generate(
    options: &PlanOptions,
    keys: &DevKeys,
    now: i64,
) -> Result<Vec<WebhookRequest>, SampleError> {
    plan(options)
        .batches
        .iter()
        .map(|batch| render(batch, keys, now))
        .collect()
}

#[cfg(test)]
mod tests;
