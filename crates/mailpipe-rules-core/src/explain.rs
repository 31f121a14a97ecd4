//! `mailpipe rules explain`: for one event, every rule — matched or not, the condition
//! that decided, each condition's result and the actions rendered — as one serializable
//! value the CLI prints (as JSON or text).
//!
//! It is the stage's evaluation with explanations switched on, over the same state, so
//! what it shows is what the stage would decide; disabled and stopped rules are listed too.

use mailpipe_model::EmailEvent;
use serde::Serialize;

use crate::decision::RuleOutcome;
use crate::state::{StatePlan, StateSnapshot};
use crate::RuleSet;

/// What `rules explain` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub event_id: String,
    pub event_time_ms: i64,
    /// The state the rules asked for (answers missing from the snapshot show as
    /// `state not fetched` on their conditions).
    pub plan: StatePlan,
    /// Every rule, in evaluation order.
    pub rules: Vec<RuleOutcome>,
}

impl RuleSet {
    /// Explains the evaluation of `event` over `state`.
    pub fn explain(&self, event: &EmailEvent, state: &StateSnapshot) -> Explanation {
        let evaluation = self.run(event, state, crate::engine::Outcomes::Explained);
        Explanation {
            event_id: evaluation.event_id,
            event_time_ms: evaluation.event_time_ms,
            plan: self.plan(event),
            rules: evaluation.rules,
        }
    }
}

impl Explanation {
    /// A plain-text rendering, one block per rule, for terminals.
    pub fn to_text(&self) -> String {
        let mut out = format!("event {} at {} ms\n", self.event_id, self.event_time_ms);
        for rule in &self.rules {
            let status = match (&rule.status, rule.matched()) {
                (crate::RuleStatus::Disabled, _) => "disabled".to_string(),
                (crate::RuleStatus::Stopped { by }, _) => format!("not run (stopped by {by})"),
                (crate::RuleStatus::Evaluated, true) => "MATCHED".to_string(),
                (crate::RuleStatus::Evaluated, false) => "not matched".to_string(),
            };
            out.push_str(&format!(
                "rule {} (v{}, priority {}): {status}\n",
                rule.rule_id, rule.rule_version, rule.priority
            ));
            if let Some(when) = &rule.when {
                for c in &when.conditions {
                    let decided = when.decided_by.as_ref().is_some_and(|d| d.index == c.index);
                    let mark = if c.passed { "pass" } else { "fail" };
                    let star = if decided { " <- decided" } else { "" };
                    out.push_str(&format!("  [{mark}] {}: {}{star}\n", c.condition, c.detail));
                }
            }
            for action in &rule.actions {
                let params = match &action.params {
                    Ok(params) => serde_json::to_string(params).unwrap_or_default(),
                    Err(e) => format!("render failed: {e}"),
                };
                out.push_str(&format!(
                    "  action {} (delay {} ms): {params}\n",
                    action.index, action.delay_ms
                ));
            }
        }
        out
    }
}
