//! The rules and deliver stages' records as ClickHouse rows: a `mail.actions` record
//! becomes a `rule_executions` row (schemas/clickhouse/003_rule_executions.sql), a
//! `mail.suppressions` record a `suppressions` row (004_suppressions.sql), a
//! `mail.deliveries` record a `delivery_attempts` row (005_delivery_attempts.sql).
//!
//! The records are read with the registry's resolution (`decode_retrying`), so any writer
//! version of their schemas reads; enums arrive as their symbol. Absent values become ''.

use serde::{Deserialize, Serialize};

use crate::row::datetime_seconds;

pub use mailpipe_avro::records::{
    DeliveryAttemptRecord as AttemptRecord, RuleActionView as ActionRecord,
};

/// A `mail.suppressions` record (schemas/suppression.avsc).
#[derive(Debug, Clone, Deserialize)]
pub struct SuppressionRecord {
    pub recipient: String,
    pub scope: String,
    pub suppressed: bool,
    pub reason: String,
    pub origin: String,
    pub event_id: Option<String>,
    pub at: i64,
}

/// One row of `rule_executions`, fields in column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clickhouse::Row)]
pub struct ActionRow {
    pub action_id: String,
    pub rule_id: String,
    pub rule_version: String,
    pub action_index: i32,
    pub action: String,
    pub parameter_keys: Vec<String>,
    pub parameter_values: Vec<String>,
    pub decision: String,
    pub outcome: String,
    pub event_id: String,
    pub event_type: String,
    pub provider: String,
    pub source: String,
    pub recipient: String,
    pub campaign_id: String,
    pub occurred_at: u32,
    pub occurred_at_ms: i64,
    pub decided_at: u32,
    pub decided_at_ms: i64,
    pub due_at: u32,
    pub due_at_ms: i64,
    pub detail: String,
}

impl From<ActionRecord> for ActionRow {
    fn from(r: ActionRecord) -> ActionRow {
        let (parameter_keys, parameter_values) = r.parameters.into_iter().unzip();
        ActionRow {
            action_id: r.action_id,
            rule_id: r.rule_id,
            rule_version: r.rule_version,
            action_index: r.action_index,
            action: r.action,
            parameter_keys,
            parameter_values,
            decision: r.decision,
            outcome: r.outcome,
            event_id: r.event_id,
            event_type: r.event_type,
            provider: r.provider,
            source: r.source,
            recipient: r.recipient.unwrap_or_default(),
            campaign_id: r.campaign_id.unwrap_or_default(),
            occurred_at: datetime_seconds(r.occurred_at),
            occurred_at_ms: r.occurred_at,
            decided_at: datetime_seconds(r.decided_at),
            decided_at_ms: r.decided_at,
            due_at: datetime_seconds(r.due_at),
            due_at_ms: r.due_at,
            detail: r.detail,
        }
    }
}

impl ActionRow {
    /// Roughly the row's size on the wire, for batch limits.
    pub fn approximate_bytes(&self) -> usize {
        let strings = [
            &self.action_id,
            &self.rule_id,
            &self.rule_version,
            &self.action,
            &self.decision,
            &self.outcome,
            &self.event_id,
            &self.event_type,
            &self.provider,
            &self.source,
            &self.recipient,
            &self.campaign_id,
            &self.detail,
        ];
        let params: usize = self
            .parameter_keys
            .iter()
            .chain(&self.parameter_values)
            .map(|s| s.len() + 1)
            .sum();
        strings.iter().map(|s| s.len() + 1).sum::<usize>() + params + 48
    }
}

/// One row of `suppressions`, fields in column order. The Kafka position orders the
/// changes of one key (they share a partition): the newest offset is the key's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clickhouse::Row)]
pub struct SuppressionRow {
    pub scope: String,
    pub recipient: String,
    pub suppressed: u8,
    pub reason: String,
    pub origin: String,
    pub event_id: String,
    pub at: u32,
    pub at_ms: i64,
    pub kafka_partition: i32,
    pub kafka_offset: u64,
}

impl SuppressionRow {
    pub fn new(r: SuppressionRecord, kafka_partition: i32, kafka_offset: i64) -> SuppressionRow {
        SuppressionRow {
            scope: r.scope,
            recipient: r.recipient,
            suppressed: u8::from(r.suppressed),
            reason: r.reason,
            origin: r.origin,
            event_id: r.event_id.unwrap_or_default(),
            at: datetime_seconds(r.at),
            at_ms: r.at,
            kafka_partition,
            kafka_offset: u64::try_from(kafka_offset).unwrap_or(0),
        }
    }

    /// Roughly the row's size on the wire, for batch limits.
    pub fn approximate_bytes(&self) -> usize {
        self.scope.len()
            + self.recipient.len()
            + self.reason.len()
            + self.origin.len()
            + self.event_id.len()
            + 40
    }
}

/// One row of `delivery_attempts`, fields in column order (status 0: no answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clickhouse::Row)]
pub struct AttemptRow {
    pub action_id: String,
    pub webhook_id: String,
    pub rule_id: String,
    pub event_id: String,
    pub target: String,
    pub attempt: i32,
    pub at: u32,
    pub at_ms: i64,
    pub status: u16,
    pub latency_ms: i64,
    pub verdict: String,
    pub reason: String,
    pub error: String,
    pub next_attempt_at_ms: i64,
}

impl From<AttemptRecord> for AttemptRow {
    fn from(r: AttemptRecord) -> AttemptRow {
        AttemptRow {
            action_id: r.action_id,
            webhook_id: r.webhook_id,
            rule_id: r.rule_id,
            event_id: r.event_id,
            target: r.target,
            attempt: r.attempt,
            at: datetime_seconds(r.at),
            at_ms: r.at,
            status: r.status.and_then(|s| u16::try_from(s).ok()).unwrap_or(0),
            latency_ms: r.latency_ms,
            verdict: r.verdict,
            reason: r.reason,
            error: r.error,
            next_attempt_at_ms: r.next_attempt_at,
        }
    }
}

impl AttemptRow {
    /// Roughly the row's size on the wire, for batch limits.
    pub fn approximate_bytes(&self) -> usize {
        self.action_id.len()
            + self.webhook_id.len()
            + self.rule_id.len()
            + self.event_id.len()
            + self.target.len()
            + self.verdict.len()
            + self.reason.len()
            + self.error.len()
            + 48
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn an_action_record_maps_to_its_row_with_parameters_as_parallel_arrays() {
        let record = ActionRecord {
            action_id: "r/e1/0".into(),
            rule_id: "r".into(),
            rule_version: "v1".into(),
            action_index: 0,
            action: "suppress".into(),
            parameters: BTreeMap::from([
                ("reason".to_string(), "complaint".to_string()),
                ("recipient".to_string(), "a@x.example".to_string()),
            ]),
            decision: "executed".into(),
            outcome: "applied".into(),
            event_id: "e1".into(),
            event_type: "complained".into(),
            provider: "sendgrid".into(),
            source: "s".into(),
            recipient: Some("a@x.example".into()),
            campaign_id: None,
            occurred_at: 1_700_000_000_123,
            decided_at: 1_700_000_001_000,
            due_at: 1_700_000_001_000,
            detail: String::new(),
        };
        let row = ActionRow::from(record);
        assert_eq!(row.parameter_keys, ["reason", "recipient"]);
        assert_eq!(row.parameter_values, ["complaint", "a@x.example"]);
        assert_eq!(row.occurred_at, 1_700_000_000);
        assert_eq!(row.occurred_at_ms, 1_700_000_000_123);
        assert_eq!(row.campaign_id, "");
        assert_eq!(row.recipient, "a@x.example");
    }

    #[test]
    fn a_suppression_row_carries_its_kafka_position_as_version() {
        let record = SuppressionRecord {
            recipient: "a@x.example".into(),
            scope: "all".into(),
            suppressed: false,
            reason: "operator".into(),
            origin: "operator:ann".into(),
            event_id: None,
            at: -5,
        };
        let row = SuppressionRow::new(record, 3, 42);
        assert_eq!((row.kafka_partition, row.kafka_offset), (3, 42));
        assert_eq!(row.suppressed, 0);
        assert_eq!(row.at, 0, "times before 1970 are clamped");
        assert_eq!(row.event_id, "");
    }
}
