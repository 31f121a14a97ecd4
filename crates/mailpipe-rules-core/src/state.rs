//! Shared state the engine reads but never touches: what to ask for, and the answers.
//!
//! The engine is pure, so counters, scores, segments and the suppression list live in the
//! stage's store (Redis). For one event the stage asks [`crate::RuleSet::plan`] what the
//! rules need: counter increments to apply and [`Lookup`]s to read. It does both in one
//! atomic round trip (increments first, so counts include this event), puts the answers in a
//! [`StateSnapshot`], and evaluates. Counting is by event time, and increments carry the event
//! id so the store can make them idempotent (a sorted set per key, member = event id).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a threshold, rate or cooldown is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Recipient,
    Domain,
    Campaign,
    Source,
    Provider,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Recipient => "recipient",
            KeyKind::Domain => "domain",
            KeyKind::Campaign => "campaign",
            KeyKind::Source => "source",
            KeyKind::Provider => "provider",
        }
    }
}

/// One counter for one key value: which events it counts (by its `counter` name, e.g.
/// `bounced:soft/recipient`) and for whom. The stage's storage key is built from both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CounterKey {
    /// Stable name of the counted event set and key kind; shared by every rule that counts
    /// the same events per the same key, whatever their windows.
    pub counter: String,
    pub per: KeyKind,
    /// The event's recipient, domain, campaign, source or provider.
    pub value: String,
}

/// Record one event in a counter. Idempotent by `event_id`: a redelivered event is one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterIncrement {
    pub key: CounterKey,
    pub event_id: String,
    /// The event's time, UTC Unix milliseconds.
    pub at_ms: i64,
    /// How long entries must be kept: the longest window any rule reads this counter over.
    pub retain_ms: u64,
}

/// One piece of state a rule needs to decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "lookup", rename_all = "snake_case")]
pub enum Lookup {
    /// Entries of a counter with `from_ms < at_ms <= until_ms`.
    Count {
        key: CounterKey,
        from_ms: i64,
        until_ms: i64,
    },
    /// The recipient's engagement score (0 when it has none).
    Score { recipient: String },
    /// Whether the recipient is in the named segment.
    Segment { name: String, recipient: String },
    /// Whether the recipient is on the suppression list in the global scope.
    Suppressed { recipient: String },
    /// One figure (`mailpipe_insight::history::METRICS`) of the engagement history of a
    /// recipient or a domain (`per`), read from ClickHouse: [`Answer::Score`], or
    /// [`Answer::Missing`] when the figure has no value.
    History {
        per: KeyKind,
        key: String,
        metric: String,
    },
}

/// The answer to a [`Lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Count(u64),
    Score(f64),
    Flag(bool),
    /// The value asked for does not exist (a rate with a zero denominator).
    Missing,
}

/// What the stage must do before evaluating one event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePlan {
    /// Apply these first (in one atomic step with the reads).
    pub increments: Vec<CounterIncrement>,
    /// Then read these, deduplicated and in a stable order.
    pub lookups: Vec<Lookup>,
}

/// The answers the stage fetched. A lookup missing here makes its condition false, with
/// `state not fetched` in the explanation, never a panic.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    answers: HashMap<Lookup, Answer>,
}

impl StateSnapshot {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, lookup: Lookup, answer: Answer) {
        self.answers.insert(lookup, answer);
    }

    pub fn get(&self, lookup: &Lookup) -> Option<Answer> {
        self.answers.get(lookup).copied()
    }

    pub(crate) fn count(&self, lookup: &Lookup) -> Option<u64> {
        match self.get(lookup)? {
            Answer::Count(n) => Some(n),
            _ => None,
        }
    }

    pub(crate) fn score(&self, lookup: &Lookup) -> Option<f64> {
        match self.get(lookup)? {
            Answer::Score(s) => Some(s),
            Answer::Count(n) => Some(n as f64),
            Answer::Flag(_) | Answer::Missing => None,
        }
    }

    pub(crate) fn flag(&self, lookup: &Lookup) -> Option<bool> {
        match self.get(lookup)? {
            Answer::Flag(b) => Some(b),
            _ => None,
        }
    }
}

impl FromIterator<(Lookup, Answer)> for StateSnapshot {
    fn from_iter<I: IntoIterator<Item = (Lookup, Answer)>>(iter: I) -> Self {
        StateSnapshot {
            answers: iter.into_iter().collect(),
        }
    }
}
