//! What an attempt writes: a `mail.deliveries` record ([`AttemptRecord`]). What a
//! delivery's end writes: a `mail.actions` record (schemas/rule_action.avsc) under
//! the action's id with outcome `delivered` or `failed`, the attempts, last status and
//! latency in its parameters and the last error in its detail; for a failure, also a
//! dead letter of the action's record. Both go through the store's outbox
//! ([`crate::store`]), written in the step that ends the delivery.

use serde::{Deserialize, Serialize};

use crate::job::Job;

/// The schema's `ActionKind` symbol of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Webhook,
}

/// The schema's `Decision` symbol: the action was executed (handed to delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Executed,
}

/// The schema's `Outcome` symbols delivery writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    Failed,
}

/// A `mail.actions` record of a delivery's end.
pub type OutcomeRecord = mailpipe_avro::records::RuleAction<Kind, Decision, Outcome>;

/// A `mail.deliveries` record: one attempt (schemas/delivery_attempt.avsc).
pub use mailpipe_avro::records::DeliveryAttemptRecord as AttemptRecord;

/// Its outbox key: one per attempt of a delivery.
pub fn attempt_outbox_key(attempt: &AttemptRecord) -> String {
    format!("{}#{}", attempt.action_id, attempt.attempt)
}

/// What the outbox holds: an attempt's record, or a delivery's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxEntry {
    Attempt(AttemptRecord),
    Ended(Ended),
}

/// What the outbox holds for one ended delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ended {
    pub record: OutcomeRecord,
    /// For a failure: why, for the dead letter of the action's record.
    pub dead_letter: Option<String>,
    pub origin: crate::job::Origin,
}

impl Ended {
    /// The end of `job` (its last attempt recorded) at `now_ms`.
    pub fn new(job: &Job, outcome: Outcome, detail: String, now_ms: i64) -> Ended {
        let a = &job.action;
        let mut parameters = a.parameters.clone();
        // The body was on the pending record already; the outcome says what happened.
        parameters.remove("body");
        // Header values may be credentials (Authorization, API keys): named, not copied.
        for (name, value) in parameters.iter_mut() {
            if name.starts_with("header.") {
                *value = "(set)".into();
            }
        }
        parameters.insert("attempts".into(), job.attempts.to_string());
        if let Some(last) = &job.last {
            if let Some(status) = last.status {
                parameters.insert("status".into(), status.to_string());
            }
            parameters.insert("latency_ms".into(), last.latency_ms.to_string());
        }
        let record = OutcomeRecord {
            action_id: a.action_id.clone(),
            rule_id: a.rule_id.clone(),
            rule_version: a.rule_version.clone(),
            action_index: a.action_index,
            action: Kind::Webhook,
            parameters,
            decision: Decision::Executed,
            outcome,
            event_id: a.event_id.clone(),
            event_type: a.event_type.clone(),
            provider: a.provider.clone(),
            source: a.source.clone(),
            recipient: a.recipient.clone(),
            campaign_id: a.campaign_id.clone(),
            occurred_at: a.occurred_at,
            decided_at: now_ms,
            due_at: a.due_at,
            detail: detail.clone(),
        };
        Ended {
            record,
            dead_letter: (outcome == Outcome::Failed).then_some(detail),
            origin: job.origin.clone(),
        }
    }
}
