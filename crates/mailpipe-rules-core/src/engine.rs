//! The rule set and its evaluation of one event: plan the state, then decide.
//!
//! Rules run in priority order (higher first, ties by id). For each event the stage calls
//! [`RuleSet::plan`] (state to fetch), fetches, then [`RuleSet::evaluate`]; nothing here
//! reads a clock or does IO, so the same event and state always give the same evaluation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mailpipe_model::EmailEvent;

use crate::action::ActionKind;
use crate::compile::Rule;
use crate::condition::counting::{key_value, CounterDef};
use crate::condition::EvalContext;
use crate::decision::{
    Claim, CooldownClaim, Decision, Evaluation, LimitClaim, Pending, PlannedAction, RuleOutcome,
    RuleStatus,
};
use crate::state::{CounterIncrement, Lookup, StatePlan, StateSnapshot};
use crate::template::{context, RuleVars, Templates};
use crate::vars::{event_time_ms, EventVars};

/// A checked rules file, ready to evaluate events. Cheap to share (`Arc`) across tasks.
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    templates: Templates,
    pub(crate) cel_env: Arc<cel::Env>,
    /// Every counter any rule reads, with the longest window it is read over.
    counters: Vec<(CounterDef, u64)>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("counters", &self.counters.len())
            .finish_non_exhaustive()
    }
}

/// A summary of one rule, for listings and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub version: String,
    pub description: String,
    pub priority: i64,
    pub enabled: bool,
    pub dry_run: bool,
    pub line: usize,
}

impl RuleSet {
    pub(crate) fn new(mut rules: Vec<Rule>, templates: Templates, cel_env: Arc<cel::Env>) -> Self {
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        let mut longest: BTreeMap<CounterDef, u64> = BTreeMap::new();
        let whens = rules.iter().flat_map(|r| {
            std::iter::once(&r.when).chain(r.actions.iter().filter_map(|a| a.guard.as_ref()))
        });
        for (def, within) in whens.flat_map(|w| w.counters()) {
            let entry = longest.entry(def).or_default();
            *entry = (*entry).max(within);
        }
        RuleSet {
            rules,
            templates,
            cel_env,
            counters: longest.into_iter().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                id: r.id.clone(),
                version: r.version.clone(),
                description: r.description.clone(),
                priority: r.priority,
                enabled: r.enabled,
                dry_run: r.dry_run,
                line: r.location.line,
            })
            .collect()
    }

    /// The state to fetch before evaluating `event`: counter increments to apply first,
    /// then lookups to read. Both may be empty (most events need nothing).
    pub fn plan(&self, event: &EmailEvent) -> StatePlan {
        let at_ms = event_time_ms(event);
        let increments = self
            .counters
            .iter()
            .filter(|(def, _)| def.counts(event))
            .filter_map(|(def, retain_ms)| {
                Some(CounterIncrement {
                    key: def.key_for(event)?,
                    event_id: event.event_id.clone(),
                    at_ms,
                    retain_ms: *retain_ms,
                })
            })
            .collect();
        let empty = StateSnapshot::new();
        let ctx = EvalContext::new(event, at_ms, &empty, false, &self.cel_env);
        let mut lookups = BTreeSet::new();
        for rule in self.rules.iter().filter(|r| r.enabled) {
            let Some(needed) = rule.when.lookups(&ctx) else {
                continue;
            };
            let certain_match = needed.is_empty();
            lookups.extend(needed);
            if let Some(lookup) = suppression_lookup(rule, event) {
                lookups.insert(lookup);
            }
            if certain_match && rule.stop && !rule.dry_run {
                break;
            }
        }
        StatePlan {
            increments,
            lookups: lookups.into_iter().collect(),
        }
    }

    /// Evaluates every enabled rule on `event` with the state fetched for its plan.
    pub fn evaluate(&self, event: &EmailEvent, state: &StateSnapshot) -> Evaluation {
        self.run(event, state, false)
    }

    pub(crate) fn run(
        &self,
        event: &EmailEvent,
        state: &StateSnapshot,
        explain: bool,
    ) -> Evaluation {
        let at_ms = event_time_ms(event);
        let ctx = EvalContext::new(event, at_ms, state, explain, &self.cel_env);
        let vars = EventVars::of(event);
        let mut stopped_by: Option<&str> = None;
        let mut outcomes = Vec::new();
        for rule in &self.rules {
            let mut outcome = RuleOutcome {
                rule_id: rule.id.clone(),
                rule_version: rule.version.clone(),
                priority: rule.priority,
                status: RuleStatus::Evaluated,
                when: None,
                pending: None,
                actions: Vec::new(),
            };
            if !rule.enabled {
                outcome.status = RuleStatus::Disabled;
            } else if let Some(by) = stopped_by {
                outcome.status = RuleStatus::Stopped { by: by.to_string() };
            } else {
                let when = rule.when.evaluate(&ctx);
                if when.matched {
                    self.decide(rule, event, state, &vars, at_ms, &mut outcome);
                    if rule.stop && !rule.dry_run {
                        stopped_by = Some(&rule.id);
                    }
                }
                outcome.when = Some(when);
            }
            if explain || outcome.status == RuleStatus::Evaluated {
                outcomes.push(outcome);
            }
        }
        Evaluation {
            event_id: event.event_id.clone(),
            event_time_ms: at_ms,
            rules: outcomes,
        }
    }

    /// Renders a matched rule's actions and settles what the engine can settle alone.
    fn decide(
        &self,
        rule: &Rule,
        event: &EmailEvent,
        state: &StateSnapshot,
        vars: &EventVars<'_>,
        at_ms: i64,
        outcome: &mut RuleOutcome,
    ) {
        let rule_vars = RuleVars {
            id: &rule.id,
            description: &rule.description,
            version: &rule.version,
        };
        let template_vars = context(vars, &rule_vars);
        let suppressed = suppression_lookup(rule, event)
            .and_then(|l| state.flag(&l))
            .unwrap_or(false);
        outcome.actions = rule
            .actions
            .iter()
            .enumerate()
            .map(|(index, action)| PlannedAction {
                index,
                idempotency_key: format!("{}/{}/{index}", rule.id, event.event_id),
                delay_ms: action.delay_ms,
                due_at_ms: at_ms.saturating_add(action.delay_ms as i64),
                guarded: action.guard.is_some(),
                params: action.render(&self.templates, &template_vars, event.recipient.as_deref()),
                recipient_suppressed: suppressed && blockable(&action.kind),
            })
            .collect();
        let all_suppressed = outcome.actions.iter().all(|a| a.recipient_suppressed);
        let decided = |decision| Some(Pending::Decided { decision });
        outcome.pending = if rule.dry_run {
            decided(Decision::DryRun)
        } else if all_suppressed {
            decided(Decision::SuppressedRecipient)
        } else if rule.cooldown.is_none() && rule.limit.is_none() {
            decided(Decision::Executed)
        } else {
            let claim = Claim {
                rule_id: rule.id.clone(),
                event_id: event.event_id.clone(),
                cooldown: rule.cooldown.map(|c| CooldownClaim {
                    per: c.per,
                    value: key_value(event, c.per).unwrap_or_else(|| "-".to_string()),
                    duration_ms: c.duration_ms,
                }),
                limit: rule.limit.map(|l| LimitClaim {
                    count: l.count,
                    window_ms: l.window_ms,
                }),
            };
            Some(Pending::Claim { claim })
        };
    }

    pub(crate) fn rule(&self, rule_id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == rule_id)
    }
}

/// Suppression stops actions aimed at the recipient's mailbox or profile; `suppress` and
/// `unsuppress` themselves always run.
pub(crate) fn blockable(kind: &ActionKind) -> bool {
    !matches!(kind, ActionKind::Suppress { .. })
}

/// The suppression lookup a rule needs, if it respects suppression and has an action the
/// suppression would stop.
fn suppression_lookup(rule: &Rule, event: &EmailEvent) -> Option<Lookup> {
    let needed = rule.respect_suppression && rule.actions.iter().any(|a| blockable(&a.kind));
    needed
        .then(|| {
            Some(Lookup::Suppressed {
                recipient: event.recipient.clone()?,
            })
        })
        .flatten()
}
