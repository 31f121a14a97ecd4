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

pub use draft::UNKNOWN_TIME;
pub use error::{ParseError, ParseFailure};
pub use input::ParseInput;
pub use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

/// The most events one request may hold. Far above what providers batch (Mandrill
/// ≤ 1000, Brevo ≤ 500, SendGrid flushes at 768 KB), it bounds the memory one hostile or
/// broken request can take; a bigger request is dead-lettered, not truncated.
pub const MAX_EVENTS_PER_REQUEST: usize = 20_000;

/// Parses one verified request of `provider` into canonical events.
pub fn parse(provider: Provider, input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let mut events = providers::parse(provider, input)?;
    if events.len() > MAX_EVENTS_PER_REQUEST {
        // SES fans one message out per recipient; everything else is bounded while splitting.
        return Err(ParseError::new(
            ParseFailure::TooManyEvents,
            format!(
                "{} events, more than {MAX_EVENTS_PER_REQUEST}",
                events.len()
            ),
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
