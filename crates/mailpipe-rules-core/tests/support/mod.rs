//! Shared by the integration tests: case files' shapes, events from short specs, and the
//! state a case describes turned into answers to the engine's plan.

#![allow(dead_code)]

use std::collections::BTreeMap;

use mailpipe_model::{BounceClass, EmailEvent, EventType, Provider, RejectReason};
use mailpipe_rules_core::{Answer, ClaimResult, Lookup, RuleOutcome, StatePlan, StateSnapshot};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The rules, inline…
    pub rules: Option<String>,
    /// …or a file, relative to the crate.
    pub rules_file: Option<String>,
    pub case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub event: EventSpec,
    #[serde(default)]
    pub state: StateSpec,
    /// Exactly the rules that match, in evaluation order.
    pub matched: Vec<String>,
    pub increments: Option<Vec<String>>,
    pub lookups: Option<usize>,
    #[serde(default)]
    pub rule: Vec<RuleExpect>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Count per counter name (`bounced:soft/recipient`); unnamed counters count 0.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub suppressed: bool,
    /// History figures by `recipient.<metric>` / `domain.<metric>`; a figure not listed is
    /// absent (no value).
    #[serde(default)]
    pub history: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleExpect {
    pub id: String,
    /// `disabled`, `stopped`, `matched`, `not_matched`.
    pub status: Option<String>,
    pub decided_by: Option<String>,
    /// The claim result the stage reports, when the rule needs one.
    pub claim: Option<String>,
    /// Expected `pending` kind: `decided` or `claim`.
    pub pending: Option<String>,
    /// Final decision of every action…
    pub decision: Option<String>,
    /// …or of each action, in order.
    pub decisions: Option<Vec<String>>,
    /// The rendered actions (`action = "suppress"`, its fields…), or `render_failed` errors.
    pub actions: Option<Vec<toml::Value>>,
    pub delays_ms: Option<Vec<u64>>,
    pub idempotency_keys: Option<Vec<String>>,
}

/// An event in a few fields; the rest take typical values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    #[serde(default = "default_id")]
    pub event_id: String,
    pub event_type: EventType,
    #[serde(default = "default_provider")]
    pub provider: Provider,
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "default_time")]
    pub occurred_at: i64,
    #[serde(default = "default_recipient")]
    pub recipient: String,
    pub campaign_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub bounce_class: Option<BounceClass>,
    pub reject_reason: Option<RejectReason>,
    pub mta_response: Option<String>,
    pub url: Option<String>,
}

fn default_id() -> String {
    "ev-1".into()
}
fn default_provider() -> Provider {
    Provider::Sendgrid
}
fn default_source() -> String {
    "main".into()
}
/// 2026-01-01T12:00:00Z, a Thursday.
fn default_time() -> i64 {
    1_767_268_800_000
}
fn default_recipient() -> String {
    "ann@example.org".into()
}

impl EventSpec {
    pub fn to_event(&self) -> EmailEvent {
        let recipient = (!self.recipient.is_empty()).then(|| self.recipient.clone());
        EmailEvent {
            event_id: self.event_id.clone(),
            event_type: self.event_type,
            provider_event: self.event_type.as_str().into(),
            provider: self.provider,
            source: self.source.clone(),
            occurred_at: self.occurred_at,
            received_at: self.occurred_at + 1_000,
            recipient_domain: recipient
                .as_ref()
                .and_then(|r| r.rsplit_once('@'))
                .map(|(_, d)| d.to_string()),
            recipient,
            message_id: Some("msg-1".into()),
            campaign_id: self.campaign_id.clone(),
            tags: self.tags.clone(),
            metadata: self.metadata.clone(),
            reject_reason: self.reject_reason,
            bounce_class: self.bounce_class,
            url: self.url.clone(),
            user_agent: None,
            ip: None,
            geo: None,
            mta_response: self.mta_response.clone(),
            description: None,
            raw_request_id: "req-1".into(),
            raw_event: "{}".into(),
            client_name: None,
            client_os: None,
            device_class: None,
            machine_open: None,
            machine_reason: None,
            geo_source: None,
        }
    }
}

/// Answers every lookup of `plan` from the case's state, as the stage would from Redis.
pub fn answer_plan(plan: &StatePlan, spec: &StateSpec) -> StateSnapshot {
    plan.lookups
        .iter()
        .map(|lookup| {
            let answer = match lookup {
                Lookup::Count { key, .. } => {
                    Answer::Count(spec.counts.get(&key.counter).copied().unwrap_or(0))
                }
                Lookup::Score { .. } => Answer::Score(spec.score),
                Lookup::Segment { name, .. } => Answer::Flag(spec.segments.contains(name)),
                Lookup::Suppressed { .. } => Answer::Flag(spec.suppressed),
                Lookup::History { per, metric, .. } => spec
                    .history
                    .get(&format!("{}.{metric}", per.as_str()))
                    .map_or(Answer::Missing, |v| Answer::Score(*v)),
            };
            (lookup.clone(), answer)
        })
        .collect()
}

/// Every way `outcome` differs from `expect`.
pub fn check_rule(
    label: &str,
    outcome: &RuleOutcome,
    expect: &RuleExpect,
    claim: Option<ClaimResult>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut differ = |what: &str, got: String, want: &str| {
        if got != want {
            failures.push(format!(
                "{label}: rule {} {what} is {got}, want {want}",
                expect.id
            ));
        }
    };
    if let Some(want) = &expect.status {
        let got = match (&outcome.status, outcome.matched()) {
            (mailpipe_rules_core::RuleStatus::Disabled, _) => "disabled",
            (mailpipe_rules_core::RuleStatus::Stopped { .. }, _) => "stopped",
            (_, true) => "matched",
            (_, false) => "not_matched",
        };
        differ("status", got.into(), want);
    }
    if let Some(want) = &expect.decided_by {
        let got = outcome
            .when
            .as_ref()
            .and_then(|w| w.decided_by.as_ref())
            .map_or("none", |d| d.condition);
        differ("decided_by", got.into(), want);
    }
    if let Some(want) = &expect.pending {
        let got = match &outcome.pending {
            None => "none",
            Some(mailpipe_rules_core::Pending::Decided { .. }) => "decided",
            Some(mailpipe_rules_core::Pending::Claim { .. }) => "claim",
        };
        differ("pending", got.into(), want);
    }
    if let Some(want) = &expect.decision {
        for (action, decision) in outcome.decide(claim) {
            differ(
                &format!("action {} decision", action.index),
                decision.as_str().into(),
                want,
            );
        }
    }
    if let Some(want) = &expect.decisions {
        let got: Vec<&str> = outcome
            .decide(claim)
            .into_iter()
            .map(|(_, d)| d.as_str())
            .collect();
        differ("decisions", format!("{got:?}"), &format!("{want:?}"));
    }
    if let Some(want) = &expect.actions {
        let got: Vec<serde_json::Value> = outcome
            .actions
            .iter()
            .map(|a| match &a.params {
                Ok(params) => serde_json::to_value(params).unwrap(),
                Err(e) => serde_json::json!({ "render_failed": e }),
            })
            .collect();
        let want: Vec<serde_json::Value> = want
            .iter()
            .map(|v| serde_json::to_value(v).unwrap())
            .collect();
        differ(
            "actions",
            serde_json::to_string(&got).unwrap(),
            &serde_json::to_string(&want).unwrap(),
        );
    }
    if let Some(want) = &expect.delays_ms {
        let got: Vec<u64> = outcome.actions.iter().map(|a| a.delay_ms).collect();
        differ("delays", format!("{got:?}"), &format!("{want:?}"));
    }
    if let Some(want) = &expect.idempotency_keys {
        let got: Vec<&str> = outcome
            .actions
            .iter()
            .map(|a| a.idempotency_key.as_str())
            .collect();
        differ("idempotency keys", format!("{got:?}"), &format!("{want:?}"));
    }
    failures
}
