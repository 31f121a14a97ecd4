//! The rule set and its evaluation of one event: plan the state, then decide.
//!
//! Rules run in priority order (higher first, ties by id). For each event the stage calls
//! [`RuleSet::plan`] (state to fetch), fetches, then [`RuleSet::evaluate`]; nothing here
//! reads a clock or does IO, so the same event and state always give the same evaluation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mailpipe_model::{EmailEvent, EventType};

use crate::action::ActionKind;
use crate::compile::Rule;
use crate::condition::counting::{key_value, CounterDef};
use crate::condition::EvalContext;
use crate::decision::{
    Claim, CooldownClaim, Decision, Evaluation, LimitClaim, Pending, PlannedAction, RuleOutcome,
    RuleStatus,
};
use crate::state::{CounterIncrement, Lookup, StatePlan, StateSnapshot};
use crate::template::{LazyContext, RuleVars, Templates};
use crate::vars::{event_time_ms, EventVars};

/// A checked rules file, ready to evaluate events. Cheap to share (`Arc`) across tasks.
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    templates: Templates,
    pub(crate) cel_env: Arc<cel::Env>,
    /// Every counter any rule reads, with the longest window it is read over.
    counters: Vec<(CounterDef, u64)>,
    /// Per event type (in `EventType::ALL`'s order), the enabled rules that can match an
    /// event of that type, in evaluation order: the rules a plan visits (most rules name
    /// the event types they are about).
    candidates: Vec<Vec<usize>>,
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
        let candidates = EventType::ALL
            .iter()
            .map(|t| {
                let may_match = |(_, r): &(usize, &Rule)| r.enabled && r.when.may_hold_for(*t);
                rules
                    .iter()
                    .enumerate()
                    .filter(may_match)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        RuleSet {
            rules,
            templates,
            cel_env,
            counters: longest.into_iter().collect(),
            candidates,
        }
    }

    /// The enabled rules that can match `event` (indexes), in evaluation order.
    fn candidates(&self, event: &EmailEvent) -> &[usize] {
        let position = EventType::ALL
            .iter()
            .position(|t| *t == event.event_type)
            .unwrap_or_default();
        &self.candidates[position]
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
        self.plan_open(event).0
    }

    /// [`RuleSet::plan`], and the rules it left open: those `event`'s stateless conditions
    /// do not already rule out, for [`RuleSet::evaluate_matched`].
    pub fn plan_open(&self, event: &EmailEvent) -> (StatePlan, OpenRules) {
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
        let mut open = Vec::new();
        // The suppression lookup is the same for every rule: asked once.
        let mut suppression_asked = false;
        // A rule that cannot match the event's type needs nothing (its lookups are None).
        for &index in self.candidates(event) {
            let rule = &self.rules[index];
            let Some(needed) = rule.when.lookups(&ctx) else {
                continue;
            };
            open.push(index);
            let certain_match = needed.is_empty();
            lookups.extend(needed);
            if !suppression_asked {
                if let Some(lookup) = suppression_lookup(rule, event) {
                    lookups.insert(lookup);
                    suppression_asked = true;
                }
            }
            if certain_match && rule.stop && !rule.dry_run {
                break;
            }
        }
        let plan = StatePlan {
            increments,
            lookups: lookups.into_iter().collect(),
        };
        (plan, OpenRules(open))
    }

    /// Evaluates every enabled rule on `event` with the state fetched for its plan.
    pub fn evaluate(&self, event: &EmailEvent, state: &StateSnapshot) -> Evaluation {
        self.run(event, state, Outcomes::Evaluated)
    }

    /// What the stage needs of [`RuleSet::evaluate`]: the outcomes of the rules that
    /// matched, exactly as `evaluate` gives them and in the same order, given the rules
    /// `event`'s plan left `open` ([`RuleSet::plan_open`]); the others are not visited
    /// again, and no outcome is built for a rule that does not match.
    pub fn evaluate_matched(
        &self,
        event: &EmailEvent,
        state: &StateSnapshot,
        open: &OpenRules,
    ) -> Evaluation {
        self.run(event, state, Outcomes::Matched(&open.0))
    }

    pub(crate) fn run(
        &self,
        event: &EmailEvent,
        state: &StateSnapshot,
        outcomes_of: Outcomes,
    ) -> Evaluation {
        let at_ms = event_time_ms(event);
        let explain = matches!(outcomes_of, Outcomes::Explained);
        let ctx = EvalContext::new(event, at_ms, state, explain, &self.cel_env);
        let vars = EventVars::of(event);
        let mut stopped_by: Option<&str> = None;
        let mut outcomes = Vec::new();
        // Matched outcomes only: the rules the plan ruled out are not visited (they would
        // not be listed), and after a `stop` nothing more matches.
        let rules: Box<dyn Iterator<Item = &Rule>> = match outcomes_of {
            Outcomes::Matched(open) => Box::new(open.iter().filter_map(|&i| self.rules.get(i))),
            _ => Box::new(self.rules.iter()),
        };
        let mut scratch = Vec::new();
        for rule in rules {
            let skipped = !rule.enabled || stopped_by.is_some();
            // Matched outcomes only: the `when` is walked once, and kept only if it matched.
            let mut matched_when = None;
            if matches!(outcomes_of, Outcomes::Matched(_)) {
                if stopped_by.is_some() {
                    break;
                }
                if skipped {
                    continue;
                }
                matched_when = rule.when.evaluate_if_matched(&ctx, &mut scratch);
                if matched_when.is_none() {
                    continue;
                }
            } else if skipped && !explain {
                continue;
            }
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
                let when = matched_when.unwrap_or_else(|| rule.when.evaluate(&ctx));
                if when.matched {
                    self.decide(rule, event, state, &vars, at_ms, &mut outcome);
                    if rule.stop && !rule.dry_run {
                        stopped_by = Some(&rule.id);
                    }
                }
                outcome.when = Some(when);
            }
            outcomes.push(outcome);
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
        let template_vars = LazyContext::new(vars, rule_vars);
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

/// The rules an event's plan left open ([`RuleSet::plan_open`]): the indexes of those
/// its stateless conditions did not rule out, in evaluation order. Meaningful only with
/// that event and this rule set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenRules(Vec<usize>);

/// Which rules' outcomes an evaluation lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcomes<'o> {
    /// The rules that matched among those open ([`RuleSet::evaluate_matched`]).
    Matched(&'o [usize]),
    /// Every rule evaluated: enabled and not stopped ([`RuleSet::evaluate`]).
    Evaluated,
    /// Every rule, with explanations ([`RuleSet::explain`]).
    Explained,
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

#[cfg(test)]
mod tests {
    use mailpipe_model::EventType;

    const RULES: &str = r#"
[[rule]]
id = "all"
[rule.when]
event_types = ["opened"]
tags = ["x"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "any"
[rule.when]
match = "any"
event_types = ["opened"]
tags = ["x"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "three-of-three"
[rule.when]
at_least = 3
event_types = ["opened", "clicked"]
providers = ["ses"]
tags = ["x"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "two-of-three"
[rule.when]
at_least = 2
event_types = ["opened"]
providers = ["ses"]
tags = ["x"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "no-types"
[rule.when]
tags = ["x"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "off"
enabled = false
[rule.when]
event_types = ["opened"]
[[rule.then]]
action = "score"
add = 1.0
"#;

    #[test]
    fn candidates_are_the_enabled_rules_an_event_type_can_match() {
        let rules = crate::load(RULES).unwrap();
        let candidates = |t: EventType| {
            let mut event = crate::vars::sample_event(&[]);
            event.event_type = t;
            let mut ids: Vec<&str> = rules
                .candidates(&event)
                .iter()
                .map(|&i| rules.rules[i].id.as_str())
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(
            candidates(EventType::Opened),
            ["all", "any", "no-types", "three-of-three", "two-of-three"]
        );
        assert_eq!(
            candidates(EventType::Clicked),
            ["any", "no-types", "three-of-three", "two-of-three"]
        );
        assert_eq!(
            candidates(EventType::Delivered),
            ["any", "no-types", "two-of-three"]
        );
    }
}
