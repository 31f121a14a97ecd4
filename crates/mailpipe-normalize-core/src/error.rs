//! Why a payload could not be parsed: a closed set of failures (metrics labels, the
//! dead-letter record's reason) plus a human detail.
//!
//! Invariant: a parse error means the whole request is unusable as sent; the stage
//! dead-letters it with the raw request id, so a better parser can replay it later.
//! Anything merely unexpected inside a well-formed event (an unknown event name, a missing
//! optional field) is not an error.

use std::fmt;

/// The kind of a parse failure. Closed: metrics and `mail.dlq` use [`ParseFailure::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParseFailure {
    /// The body (or a form value that must hold JSON) is not valid UTF-8.
    NotUtf8,
    /// The body, or the JSON inside a form field or an SNS message, is not valid JSON
    /// (including nesting deeper than the JSON parser's limit of 128 levels).
    NotJson,
    /// Valid JSON or form data, but not the provider's documented shape (an array where an
    /// object belongs, an event that is not an object…).
    WrongShape,
    /// A field the provider always sends (the event name, the SNS message…) is absent.
    MissingField,
    /// A field is present but unusable: a timestamp that is not one, out of range…
    InvalidField,
    /// More events in one request than [`crate::max_events`] allows for its size.
    TooManyEvents,
}

impl ParseFailure {
    pub const ALL: [ParseFailure; 6] = [
        ParseFailure::NotUtf8,
        ParseFailure::NotJson,
        ParseFailure::WrongShape,
        ParseFailure::MissingField,
        ParseFailure::InvalidField,
        ParseFailure::TooManyEvents,
    ];

    /// The stable snake_case name used in metrics and dead-letter records.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseFailure::NotUtf8 => "not_utf8",
            ParseFailure::NotJson => "not_json",
            ParseFailure::WrongShape => "wrong_shape",
            ParseFailure::MissingField => "missing_field",
            ParseFailure::InvalidField => "invalid_field",
            ParseFailure::TooManyEvents => "too_many_events",
        }
    }
}

impl fmt::Display for ParseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload that cannot be turned into events: the kind, and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failure}: {detail}")]
pub struct ParseError {
    pub failure: ParseFailure,
    pub detail: String,
}

impl ParseError {
    pub fn new(failure: ParseFailure, detail: impl Into<String>) -> ParseError {
        ParseError {
            failure,
            detail: detail.into(),
        }
    }

    pub(crate) fn shape(detail: impl Into<String>) -> ParseError {
        ParseError::new(ParseFailure::WrongShape, detail)
    }

    pub(crate) fn missing(field: &str) -> ParseError {
        ParseError::new(ParseFailure::MissingField, format!("no {field}"))
    }

    pub(crate) fn invalid(field: &str, why: impl fmt::Display) -> ParseError {
        ParseError::new(ParseFailure::InvalidField, format!("{field}: {why}"))
    }

    /// A JSON syntax error, with serde_json's position ("line 1 column 7"), which the
    /// reader of a dead-letter record needs to find the fault.
    pub(crate) fn json(what: &str, error: &serde_json::Error) -> ParseError {
        ParseError::new(ParseFailure::NotJson, format!("{what}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_failure_first() {
        let e = ParseError::invalid("timestamp", "not a number");
        assert_eq!(e.to_string(), "invalid_field: timestamp: not a number");
        assert_eq!(
            ParseError::missing("event").to_string(),
            "missing_field: no event"
        );
        let names: std::collections::BTreeSet<_> =
            ParseFailure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names.len(), ParseFailure::ALL.len());
    }
}
