//! A rule's `when` (or an action's `guard`): its conditions and how they combine — `all`
//! (the default), `any`, or `at_least = N` — and which condition decided.
//!
//! Conditions are evaluated in the order `compile` (in `check.rs`) gives them: cheap, stateless ones first, then
//! stateful ones. Evaluation stops as soon as the outcome is certain, unless explaining, and
//! [`When::lookups`] asks for state only when the stateless part left the outcome open, so
//! plan and evaluation always agree on what was needed.

use mailpipe_model::EventType;
use serde::Serialize;

use super::counting::CounterDef;
use super::fields::Field;
use super::{Condition, EvalContext};
use crate::state::Lookup;

pub(crate) use super::check::compile;

/// Checked conditions and how many must hold.
#[derive(Debug)]
pub(crate) struct When {
    pub conditions: Vec<Condition>,
    /// `all`: every one; `any`: 1; `at_least = N`: N.
    pub needed: usize,
}

/// One condition's result, for explanations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionReport {
    /// Its place in evaluation order.
    pub index: usize,
    /// The `when` key it was written under (`event_types`, `threshold`, …).
    pub condition: &'static str,
    pub passed: bool,
    /// Why (empty unless explaining).
    pub detail: String,
}

/// The outcome of a `when`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhenOutcome {
    pub matched: bool,
    /// The condition that made the outcome certain (reached the count needed, or made it
    /// unreachable).
    pub decided_by: Option<ConditionReport>,
    /// Every condition evaluated, in order.
    pub conditions: Vec<ConditionReport>,
}

impl When {
    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> WhenOutcome {
        let mut reports = Vec::new();
        let (matched, decided_by) = self.walk(ctx, |report| reports.push(report));
        WhenOutcome {
            matched,
            decided_by,
            conditions: reports,
        }
    }

    /// Whether it can match an event of `event_type` at all: false when its `event_types`
    /// conditions that leave that type out are more than it can afford to fail (one, for
    /// `all`). Exact, so a rule set can skip such rules for such events unevaluated.
    pub(crate) fn may_hold_for(&self, event_type: EventType) -> bool {
        let failing = self
            .conditions
            .iter()
            .filter(|c| match c {
                Condition::OneOf(one_of) => {
                    one_of.field == Field::EventType
                        && !one_of.values.iter().any(|v| v == event_type.as_str())
                }
                _ => false,
            })
            .count();
        self.conditions.len() - failing >= self.needed
    }

    /// [`When::evaluate`] for a caller that wants the outcome only when it matched: the
    /// reports go to `scratch` (cleared first), and are moved into the outcome only on a
    /// match, so a rule that does not match allocates nothing and one that does is walked
    /// once (not once to know, once to report).
    pub(crate) fn evaluate_if_matched(
        &self,
        ctx: &EvalContext<'_>,
        scratch: &mut Vec<ConditionReport>,
    ) -> Option<WhenOutcome> {
        scratch.clear();
        let (matched, decided_by) = self.walk(ctx, |report| scratch.push(report));
        matched.then(|| WhenOutcome {
            matched,
            decided_by,
            conditions: std::mem::take(scratch),
        })
    }

    /// Evaluates the conditions in order, handing each one's report to `record`, until the
    /// outcome is certain (unless explaining); answers whether it matched and which
    /// condition decided.
    fn walk(
        &self,
        ctx: &EvalContext<'_>,
        mut record: impl FnMut(ConditionReport),
    ) -> (bool, Option<ConditionReport>) {
        let total = self.conditions.len();
        let (mut passed, mut failed) = (0, 0);
        let mut decided_by = None;
        for (index, condition) in self.conditions.iter().enumerate() {
            let (ok, detail) = condition.evaluate(ctx);
            if ok {
                passed += 1;
            } else {
                failed += 1;
            }
            let report = ConditionReport {
                index,
                condition: condition.name(),
                passed: ok,
                detail,
            };
            let certain = passed >= self.needed || total - failed < self.needed;
            if certain && decided_by.is_none() {
                decided_by = Some(report.clone());
            }
            record(report);
            if decided_by.is_some() && !ctx.explain {
                break;
            }
        }
        (passed >= self.needed, decided_by)
    }

    /// The state needed to decide for this event: `None` when the stateless conditions
    /// already rule a match out, an empty list when they already decide a match, else every
    /// lookup of the stateful conditions.
    pub(crate) fn lookups(&self, ctx: &EvalContext<'_>) -> Option<Vec<Lookup>> {
        let total = self.conditions.len();
        let (mut passed, mut failed) = (0, 0);
        for condition in &self.conditions {
            if condition.is_stateful() {
                return Some(
                    self.conditions
                        .iter()
                        .flat_map(|c| c.lookups(ctx))
                        .collect(),
                );
            }
            if condition.evaluate(ctx).0 {
                passed += 1;
            } else {
                failed += 1;
            }
            if passed >= self.needed {
                return Some(Vec::new());
            }
            if total - failed < self.needed {
                return None;
            }
        }
        Some(Vec::new())
    }

    /// Every counter this `when` reads, with the window it reads it over.
    pub(crate) fn counters(&self) -> Vec<(CounterDef, u64)> {
        let mut counters = Vec::new();
        for condition in &self.conditions {
            match condition {
                Condition::Threshold(t) => counters.push((t.counter.clone(), t.within_ms)),
                Condition::Rate(r) => {
                    counters.push((r.numerator.clone(), r.within_ms));
                    counters.push((r.denominator.clone(), r.within_ms));
                }
                _ => {}
            }
        }
        counters
    }
}
