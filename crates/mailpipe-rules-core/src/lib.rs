//! The rules engine's pure core: load and check a rules file, and decide, for one email
//! event, what every rule does (design.md §3.5, issue 18).
//!
//! The stage's loop, per event:
//! 1. [`RuleSet::plan`] → counter increments and state [`Lookup`]s; the stage applies and
//!    reads them in one atomic round trip and fills a [`StateSnapshot`];
//! 2. [`RuleSet::evaluate`] → per rule: matched or not, rendered actions with idempotency
//!    keys and due times, and a [`Pending`] decision (maybe a [`Claim`] for cooldown/limit)
//!    ([`RuleSet::plan_open`] and [`RuleSet::evaluate_matched`]: the same for the matched
//!    rules only, not evaluating again what the plan ruled out; what the stage uses);
//! 3. the stage takes the claims atomically, then [`RuleOutcome::decide`] (or [`finish`])
//!    gives each action's final [`Decision`]; executed `suppress`, `score`, `segment`
//!    actions are the state changes it then makes.
//!
//! Delayed actions with a guard come back through [`RuleSet::guard_lookups`] and
//! [`RuleSet::check_guard`]. `mailpipe rules check` prints [`load`]'s errors and
//! `mailpipe rules explain` prints [`RuleSet::explain`].
//!
//! Invariant: pure — no IO, no Kafka, Redis or HTTP, no clock; time comes from the event.
//! Invariant: deterministic — the same rules, event and snapshot give the same evaluation.
//! Invariant: never panics, on any event or snapshot (a missing answer fails its condition)
//! nor on any rules text (property-tested in `tests/never_panics.rs`).
//! Invariant: loading reports every error it can find, each with line and column, and an
//! invalid file yields no rule set at all.

mod action;
mod compile;
mod condition;
mod decision;
mod duration;
mod engine;
mod error;
mod explain;
mod file;
mod guard;
mod load;
mod state;
mod template;
mod vars;

pub use action::ActionParams;
pub use condition::when::{ConditionReport, WhenOutcome};
pub use decision::{
    finish, Claim, ClaimResult, CooldownClaim, Decision, Evaluation, LimitClaim, Pending,
    PlannedAction, RuleOutcome, RuleStatus,
};
pub use duration::{format_duration_ms, parse_duration_ms};
pub use engine::{OpenRules, RuleInfo, RuleSet};
pub use error::{Location, RuleError, RuleErrorKind};
pub use explain::Explanation;
pub use guard::{DueAction, GuardVerdict};
pub use load::load;
pub use state::{Answer, CounterIncrement, CounterKey, KeyKind, Lookup, StatePlan, StateSnapshot};
pub use vars::{event_time_ms, EVENT_FIELDS, KNOWN_FIELDS};

#[cfg(test)]
mod tests {
    #[test]
    fn a_rule_set_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<super::RuleSet>();
    }
}
