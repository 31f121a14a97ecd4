//! What the engine decided for one event, and the pure step that finishes a decision once
//! the stage has made its atomic cooldown/limit claim.
//!
//! The engine decides `dry_run` and `suppressed_recipient` itself. Cooldowns and limits are
//! shared across replicas, so for those it hands the stage a [`Claim`]; the stage checks
//! and takes it atomically (idempotent by event id, so a redelivery is granted again), and
//! [`finish`] turns the result into `executed`, `cooled_down` or `limited`.

use serde::Serialize;

use crate::action::ActionParams;
use crate::condition::when::WhenOutcome;
use crate::state::KeyKind;

/// The decision recorded for each action on `mail.actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Executed,
    DryRun,
    CooledDown,
    Limited,
    SuppressedRecipient,
    /// A template could not be rendered for this event (e.g. a metadata key it names is
    /// missing); the action is recorded with the error, never half-executed.
    RenderFailed,
    /// A delayed action that came due no longer runs: its guard failed, or its rule was
    /// removed, disabled or changed ([`crate::RuleSet::check_guard`]).
    GuardFailed,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Executed => "executed",
            Decision::DryRun => "dry_run",
            Decision::CooledDown => "cooled_down",
            Decision::Limited => "limited",
            Decision::SuppressedRecipient => "suppressed_recipient",
            Decision::RenderFailed => "render_failed",
            Decision::GuardFailed => "guard_failed",
        }
    }
}

/// A cooldown and/or a limit the stage must check and take in one atomic step; the
/// cooldown first, so a cooled-down event does not use up the limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub rule_id: String,
    /// The claim's holder: the same event asking again is granted again.
    pub event_id: String,
    pub cooldown: Option<CooldownClaim>,
    pub limit: Option<LimitClaim>,
}

/// No second execution of the rule for `(per, value)` within `duration_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CooldownClaim {
    pub per: KeyKind,
    /// The event's value of `per`; `-` when it has none (all such events share one key).
    pub value: String,
    pub duration_ms: u64,
}

/// At most `count` executions of the rule per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitClaim {
    pub count: u64,
    pub window_ms: u64,
}

/// What the stage's atomic claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimResult {
    Granted,
    CooledDown,
    Limited,
}

/// A matched rule's decision before the claim, if one is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "pending", rename_all = "snake_case")]
pub enum Pending {
    /// Final already (dry run, every action's recipient suppressed, or no claim needed).
    Decided { decision: Decision },
    /// Executed if the claim is granted.
    Claim { claim: Claim },
}

/// Finishes a rule's decision. A missing claim result where one was needed counts as not
/// granted (`cooled_down`): never act without the claim.
pub fn finish(pending: &Pending, claim: Option<ClaimResult>) -> Decision {
    match (pending, claim) {
        (Pending::Decided { decision }, _) => *decision,
        (Pending::Claim { .. }, Some(ClaimResult::Granted)) => Decision::Executed,
        (Pending::Claim { .. }, Some(ClaimResult::Limited)) => Decision::Limited,
        (Pending::Claim { .. }, Some(ClaimResult::CooledDown) | None) => Decision::CooledDown,
    }
}

/// One action of a matched rule, rendered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedAction {
    /// Its index in the rule's `then`.
    pub index: usize,
    /// `rule id/event id/action index`: a redelivered event never acts twice.
    pub idempotency_key: String,
    pub delay_ms: u64,
    /// When it should run: the event's time plus the delay (UTC ms).
    pub due_at_ms: i64,
    /// Whether a guard must still hold when it comes due ([`crate::RuleSet::check_guard`]).
    pub guarded: bool,
    /// The rendered fields, or why they could not be rendered (serialized as the
    /// fields, or as `{"render_error": "…"}`).
    #[serde(serialize_with = "serialize_params")]
    pub params: Result<ActionParams, String>,
    /// Skipped because the recipient is suppressed (decided by the engine).
    pub recipient_suppressed: bool,
}

fn serialize_params<S: serde::Serializer>(
    params: &Result<ActionParams, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct RenderError<'a> {
        render_error: &'a str,
    }
    match params {
        Ok(params) => params.serialize(serializer),
        Err(error) => RenderError {
            render_error: error,
        }
        .serialize(serializer),
    }
}

impl PlannedAction {
    /// This action's decision, given its rule's.
    pub fn decision(&self, rule: Decision) -> Decision {
        if self.params.is_err() {
            Decision::RenderFailed
        } else if self.recipient_suppressed && rule != Decision::DryRun {
            Decision::SuppressedRecipient
        } else {
            rule
        }
    }
}

/// Why a rule was not evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RuleStatus {
    Evaluated,
    Disabled,
    /// A higher-priority rule with `stop` matched first.
    Stopped {
        by: String,
    },
}

/// One rule's outcome for one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleOutcome {
    pub rule_id: String,
    pub rule_version: String,
    pub priority: i64,
    pub status: RuleStatus,
    /// The conditions' outcome (`None` when not evaluated).
    pub when: Option<WhenOutcome>,
    /// Set when the rule matched.
    pub pending: Option<Pending>,
    /// Empty unless the rule matched.
    pub actions: Vec<PlannedAction>,
}

impl RuleOutcome {
    pub fn matched(&self) -> bool {
        self.when.as_ref().is_some_and(|w| w.matched)
    }

    /// Each action with its final decision, given the claim result (if a claim was needed).
    pub fn decide(&self, claim: Option<ClaimResult>) -> Vec<(&PlannedAction, Decision)> {
        let Some(pending) = &self.pending else {
            return Vec::new();
        };
        let rule = finish(pending, claim);
        self.actions.iter().map(|a| (a, a.decision(rule))).collect()
    }
}

/// Every enabled rule's outcome for one event, in priority order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub event_id: String,
    /// The time windows end at and delays count from (UTC ms).
    pub event_time_ms: i64,
    pub rules: Vec<RuleOutcome>,
}

impl Evaluation {
    /// The claims the stage must make, one per matched rule that needs one.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.rules.iter().filter_map(|r| match &r.pending {
            Some(Pending::Claim { claim }) => Some(claim),
            _ => None,
        })
    }
}
