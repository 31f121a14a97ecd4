//! The normalizer's pure core: a verified webhook request of any provider becomes the
//! canonical [`EmailEvent`]s it reports, or a [`ParseError`] saying why it cannot.
//!
//! ```text
//! parse(provider, &ParseInput { source, raw_request_id, received_at_ms, headers, query, body })
//!     -> Ok(vec![EmailEvent, ...])      one per ESP event (batches split, SES fanned out
//!                                       per recipient, SNS control messages → none)
//!     -> Err(ParseError { failure, detail })   the whole request is unusable: dead-letter it
//! ```
//!
//! Invariants:
//! - Pure: no IO, no clock (the receipt time comes in), no Kafka. Deterministic: the same
//!   input always gives the same events, ids included.
//! - Never panics, whatever the bytes (tests feed arbitrary input to every provider).
//! - Unknown event names are events of type `unknown`, never errors or drops.
//! - Every event carries the provider's original event text (`raw_event`).
//!
//! Per-provider facts (format, event mapping, event-id rule, campaign source) are in the
//! doc comment at the top of each file under `providers/`.

mod draft;
mod error;
mod event_id;
mod input;
mod json;
mod providers;
mod timestamp;

pub use draft::{implied_reject_reason, UNKNOWN_TIME};
pub use error::{ParseError, ParseFailure};
pub use input::ParseInput;
pub use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

/// Every event any provider sends is more JSON than this: an object with at least an event
/// name, a recipient and a time (SendGrid's smallest real event is ~150 bytes).
pub const MIN_EVENT_BYTES: usize = 32;

/// The floor of [`max_events`], for small bodies that fan out: SES makes one event per
/// recipient of a message (at most 50).
pub const MIN_EVENTS_CAP: usize = 1_000;

/// The most events a request of `body_len` bytes may hold: one per [`MIN_EVENT_BYTES`]
/// (163,840 for the receiver's default 5 MiB body limit), never fewer than
/// [`MIN_EVENTS_CAP`]. No provider's legitimate batch comes near it, whatever the body limit;
/// it bounds the memory one broken request can take. A request above it is dead-lettered
/// whole (reason `too_many_events`, the raw request kept for a replay), never truncated.
pub fn max_events(body_len: usize) -> usize {
    (body_len / MIN_EVENT_BYTES).max(MIN_EVENTS_CAP)
}

/// Parses one verified request of `provider` into canonical events.
pub fn parse(provider: Provider, input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let mut events = providers::parse(provider, input)?;
    let cap = max_events(input.body.len());
    if events.len() > cap {
        // SES fans one message out per recipient; everything else is bounded while splitting.
        return Err(ParseError::new(
            ParseFailure::TooManyEvents,
            format!("{} events, more than {cap}", events.len()),
        ));
    }
    for event in &mut events {
        draft::finish(event);
    }
    Ok(events)
}

#[cfg(test)]
mod test_support {
    //! Small helpers for the provider unit tests.
    use super::*;

    pub(crate) const RECEIVED_AT: i64 = 1_700_000_000_000;

    /// Parses `body` as `provider` sends it, with the given headers.
    pub(crate) fn parse_with(
        provider: Provider,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Vec<EmailEvent>, ParseError> {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        parse(
            provider,
            &ParseInput {
                source: "main",
                raw_request_id: "req-1",
                received_at_ms: RECEIVED_AT,
                headers: &headers,
                query: "",
                body: body.as_bytes(),
            },
        )
    }

    /// Parses a JSON `body` of `provider` that must succeed.
    pub(crate) fn events(provider: Provider, body: &str) -> Vec<EmailEvent> {
        parse_with(provider, &[("content-type", "application/json")], body)
            .unwrap_or_else(|e| panic!("{provider}: {e}"))
    }

    /// The failure kind of a JSON `body` that must not parse.
    pub(crate) fn failure(provider: Provider, body: &str) -> ParseFailure {
        match parse_with(provider, &[("content-type", "application/json")], body) {
            Ok(events) => panic!("{provider}: parsed into {events:?}"),
            Err(e) => e.failure,
        }
    }
}
