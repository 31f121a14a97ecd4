//! What can go wrong while a stage processes an input, as kinds the frame `match`es on
//! ([`StageError`]), and why an input is dead-lettered, as a closed set
//! ([`DeadLetterReason`]): the reasons are both the `reason` field of `mail.dlq` records and
//! a metric label, so they are never free text.
//!
//! Invariant: a reason's [`DeadLetterReason::as_str`] is the string written to `mail.dlq`;
//! it never changes once shipped (tests and external readers match on it).

use mailpipe_normalize_core::ParseFailure;

/// Why a stage failed to process an input, by what should happen next.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The input can never be processed (a bad payload): dead-letter it with `reason`.
    #[error("{}: {detail}", reason.as_str())]
    Permanent {
        reason: DeadLetterReason,
        detail: String,
    },
    /// May succeed later (registry, broker, Redis, an HTTP peer): retried with backoff
    /// where it arises. One that reaches the frame stops the stage like [`Self::Fatal`],
    /// so the input is processed again after the restart, never skipped.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The stage cannot go on (a broken invariant, a dead letter that cannot be written):
    /// stop it; the supervisor restarts it from the committed offsets.
    #[error("{0}")]
    Fatal(String),
}

impl StageError {
    pub fn permanent(reason: DeadLetterReason, detail: impl Into<String>) -> StageError {
        StageError::Permanent {
            reason,
            detail: detail.into(),
        }
    }

    pub fn fatal(detail: impl std::fmt::Display) -> StageError {
        StageError::Fatal(detail.to_string())
    }
}

/// Why an input went to `mail.dlq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// The record does not decode with its writer schema (or has no schema id).
    Undecodable,
    /// A verified request names a provider this build does not know.
    UnknownProvider,
    /// The request's payload cannot be parsed into events (normalize).
    Unparseable(ParseFailure),
    /// An event without `event_id` cannot be deduplicated.
    NoEventId,
    /// One of the input's outputs can never be produced (see `crate::emit`).
    Unproducible,
    /// A `webhook` action's delivery failed for good (a permanent answer, or every retry
    /// of the schedule used up); the detail names the last status or error.
    DeliveryFailed,
}

impl DeadLetterReason {
    /// The `reason` of the dead letter, and its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::UnknownProvider => "unknown_provider",
            DeadLetterReason::Unparseable(failure) => failure.as_str(),
            DeadLetterReason::NoEventId => "no_event_id",
            DeadLetterReason::Unproducible => "unproducible",
            DeadLetterReason::DeliveryFailed => "delivery_failed",
        }
    }

    /// Every reason, for tests and dashboards.
    pub fn all() -> Vec<DeadLetterReason> {
        let mut all = vec![
            DeadLetterReason::Undecodable,
            DeadLetterReason::UnknownProvider,
            DeadLetterReason::NoEventId,
            DeadLetterReason::Unproducible,
            DeadLetterReason::DeliveryFailed,
        ];
        all.extend(ParseFailure::ALL.map(DeadLetterReason::Unparseable));
        all
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings on mail.dlq, as shipped; a change here breaks their readers.
    #[test]
    fn reasons_keep_their_shipped_strings_and_are_distinct() {
        assert_eq!(DeadLetterReason::Undecodable.as_str(), "undecodable");
        assert_eq!(
            DeadLetterReason::UnknownProvider.as_str(),
            "unknown_provider"
        );
        assert_eq!(DeadLetterReason::NoEventId.as_str(), "no_event_id");
        assert_eq!(DeadLetterReason::Unproducible.as_str(), "unproducible");
        for failure in ParseFailure::ALL {
            assert_eq!(
                DeadLetterReason::Unparseable(failure).as_str(),
                failure.as_str()
            );
        }
        let mut names: Vec<_> = DeadLetterReason::all().iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DeadLetterReason::all().len());
    }

    #[test]
    fn a_permanent_error_reads_as_reason_and_detail() {
        let e = StageError::permanent(DeadLetterReason::NoEventId, "no id");
        assert_eq!(e.to_string(), "no_event_id: no id");
    }
}
