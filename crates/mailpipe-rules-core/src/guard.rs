//! Delayed actions that re-check: when a delayed action comes due, the stage asks which
//! state its `guard` needs (and whether the recipient was suppressed meanwhile, when the rule
//! respects suppression), fetches it, and asks whether the action still runs.
//!
//! Windows in a guard end at the due time, so "no click within 48 h of the open" reads the
//! 48 h after the open. A delayed action whose rule was removed or changed (another version)
//! does not run: the operator's edit wins over what the old rule scheduled.

use mailpipe_model::EmailEvent;
use serde::{Deserialize, Serialize};

use crate::condition::when::WhenOutcome;
use crate::condition::EvalContext;
use crate::state::{Lookup, StateSnapshot};
use crate::RuleSet;

/// A delayed action the stage kept until its due time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueAction {
    pub rule_id: String,
    pub rule_version: String,
    pub action_index: usize,
    pub due_at_ms: i64,
    /// The event that scheduled it.
    pub event: EmailEvent,
}

/// Whether a due action runs, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardVerdict {
    pub run: bool,
    pub reason: String,
    /// The guard's conditions, when it has one and was evaluated.
    pub guard: Option<WhenOutcome>,
    /// The recipient was suppressed by the time the action came due (the action is not
    /// run; recorded as `suppressed_recipient`, not as a failed guard).
    pub suppressed: bool,
}

impl RuleSet {
    /// The state a due action's check needs: its guard's, and the recipient's suppression
    /// when the rule respects it and the action is one suppression stops.
    pub fn guard_lookups(&self, due: &DueAction) -> Vec<Lookup> {
        let mut lookups = match self.find_guard(due).ok().flatten() {
            Some(guard) => {
                let empty = StateSnapshot::new();
                let ctx = EvalContext::new(&due.event, due.due_at_ms, &empty, false, &self.cel_env);
                guard.lookups(&ctx).unwrap_or_default()
            }
            None => Vec::new(),
        };
        lookups.extend(self.due_suppression_lookup(due));
        lookups
    }

    fn due_suppression_lookup(&self, due: &DueAction) -> Option<Lookup> {
        let rule = self.rule(&due.rule_id)?;
        let action = rule.actions.get(due.action_index)?;
        let needed = rule.respect_suppression && crate::engine::blockable(&action.kind);
        let recipient = due.event.recipient.clone()?;
        needed.then_some(Lookup::Suppressed { recipient })
    }

    /// Whether a due action still runs, given the state fetched for [`Self::guard_lookups`].
    pub fn check_guard(&self, due: &DueAction, state: &StateSnapshot) -> GuardVerdict {
        let guard = match self.find_guard(due) {
            Err(reason) => {
                return GuardVerdict {
                    run: false,
                    reason,
                    guard: None,
                    suppressed: false,
                }
            }
            Ok(guard) => guard,
        };
        let suppressed = self
            .due_suppression_lookup(due)
            .and_then(|l| state.flag(&l))
            .unwrap_or(false);
        if suppressed {
            return GuardVerdict {
                run: false,
                reason: "the recipient was suppressed before the action came due".into(),
                guard: None,
                suppressed: true,
            };
        }
        let Some(guard) = guard else {
            return GuardVerdict {
                run: true,
                reason: "no guard".into(),
                guard: None,
                suppressed: false,
            };
        };
        let ctx = EvalContext::new(&due.event, due.due_at_ms, state, true, &self.cel_env);
        let outcome = guard.evaluate(&ctx);
        let reason = match &outcome.decided_by {
            Some(report) if outcome.matched => {
                format!("guard holds ({}: {})", report.condition, report.detail)
            }
            Some(report) => format!("guard fails ({}: {})", report.condition, report.detail),
            None => "guard undecided".into(),
        };
        GuardVerdict {
            run: outcome.matched,
            reason,
            guard: Some(outcome),
            suppressed: false,
        }
    }

    fn find_guard(&self, due: &DueAction) -> Result<Option<&crate::condition::when::When>, String> {
        let rule = self
            .rule(&due.rule_id)
            .ok_or_else(|| format!("rule {} no longer exists", due.rule_id))?;
        if rule.version != due.rule_version {
            return Err(format!(
                "rule {} changed from version {} to {}",
                rule.id, due.rule_version, rule.version
            ));
        }
        if !rule.enabled {
            return Err(format!("rule {} is disabled", rule.id));
        }
        if rule.dry_run {
            return Err(format!("rule {} is in dry run", rule.id));
        }
        let action = rule
            .actions
            .get(due.action_index)
            .ok_or_else(|| format!("rule {} has no action {}", rule.id, due.action_index))?;
        Ok(action.guard.as_ref())
    }
}
