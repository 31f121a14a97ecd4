//! What the rules stage writes: one [`ActionRecord`] per action of a matching rule on
//! `mail.actions` (`schemas/rule_action.avsc`), one [`SuppressionRecord`] per change of the
//! suppression list on `mail.suppressions` (`schemas/suppression.avsc`), and the records of
//! `publish` actions. Field names are the schemas', so the Avro codec serializes these as
//! they are.

use std::collections::BTreeMap;

use mailpipe_model::EmailEvent;
use mailpipe_rules_core::{ActionParams, Decision, PlannedAction};
use serde::Serialize;

/// One action a rule decided for one event (`mail.actions`, key = `action_id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    pub action_id: String,
    pub rule_id: String,
    pub rule_version: String,
    pub action_index: i32,
    pub action: ActionKind,
    pub parameters: BTreeMap<String, String>,
    pub decision: Decision,
    pub outcome: Outcome,
    pub event_id: String,
    pub event_type: &'static str,
    pub provider: &'static str,
    pub source: String,
    pub recipient: Option<String>,
    pub campaign_id: Option<String>,
    pub occurred_at: i64,
    pub decided_at: i64,
    pub due_at: i64,
    pub detail: String,
}

/// What an action does (the schema's `ActionKind`; `unknown` when it could not be rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Suppress,
    Unsuppress,
    Score,
    Segment,
    Publish,
    Webhook,
    Unknown,
}

/// What became of an action (the schema's `Outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done by this stage (suppression, score, segment, publish).
    Applied,
    /// Waits for its due time.
    Scheduled,
    /// Handed to outbound delivery (`webhook`).
    Pending,
    /// Not executed; the decision says why.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Scheduled => "scheduled",
            Outcome::Pending => "pending",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The kind of an action's rendered fields.
pub fn action_kind(params: &Result<ActionParams, String>) -> ActionKind {
    match params {
        Ok(ActionParams::Suppress { .. }) => ActionKind::Suppress,
        Ok(ActionParams::Unsuppress { .. }) => ActionKind::Unsuppress,
        Ok(ActionParams::Score { .. }) => ActionKind::Score,
        Ok(ActionParams::Segment { .. }) => ActionKind::Segment,
        Ok(ActionParams::Publish { .. }) => ActionKind::Publish,
        Ok(ActionParams::Webhook { .. }) => ActionKind::Webhook,
        Err(_) => ActionKind::Unknown,
    }
}

/// The rendered fields as the schema's string map (a render error under `render_error`).
pub fn parameters(params: &Result<ActionParams, String>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        map.insert(k.to_string(), v);
    };
    match params {
        Ok(ActionParams::Suppress {
            recipient,
            reason,
            scope,
        })
        | Ok(ActionParams::Unsuppress {
            recipient,
            reason,
            scope,
        }) => {
            put("recipient", recipient.clone());
            put("reason", reason.clone());
            put("scope", scope.clone());
        }
        Ok(ActionParams::Score { recipient, add }) => {
            put("recipient", recipient.clone());
            put("add", add.to_string());
        }
        Ok(ActionParams::Segment {
            recipient,
            segment,
            remove,
        }) => {
            put("recipient", recipient.clone());
            put("segment", segment.clone());
            put("remove", remove.to_string());
        }
        Ok(ActionParams::Publish { topic, key, value }) => {
            put("topic", topic.clone());
            if let Some(key) = key {
                put("key", key.clone());
            }
            put("value", value.clone());
        }
        Ok(ActionParams::Webhook {
            url,
            method,
            headers,
            body,
        }) => {
            put("url", url.clone());
            put("method", method.clone());
            for (name, value) in headers {
                put(&format!("header.{name}"), value.clone());
            }
            put("body", body.clone());
        }
        Err(error) => put("render_error", error.clone()),
    }
    map
}

/// The record of `action` of rule `rule_id`/`rule_version` for `event`.
#[allow(clippy::too_many_arguments)]
pub fn action_record(
    event: &EmailEvent,
    rule_id: &str,
    rule_version: &str,
    action: &PlannedAction,
    decision: Decision,
    outcome: Outcome,
    decided_at: i64,
    detail: String,
) -> ActionRecord {
    ActionRecord {
        action_id: action.idempotency_key.clone(),
        rule_id: rule_id.to_string(),
        rule_version: rule_version.to_string(),
        action_index: i32::try_from(action.index).unwrap_or(i32::MAX),
        action: action_kind(&action.params),
        parameters: parameters(&action.params),
        decision,
        outcome,
        event_id: event.event_id.clone(),
        event_type: event.event_type.as_str(),
        provider: event.provider.as_str(),
        source: event.source.clone(),
        recipient: event.recipient.clone(),
        campaign_id: event.campaign_id.clone(),
        occurred_at: event.occurred_at,
        decided_at,
        due_at: action.due_at_ms,
        detail,
    }
}

/// One change of the suppression list (`mail.suppressions`, compacted, key =
/// `<scope>:<recipient>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuppressionRecord {
    pub recipient: String,
    pub scope: String,
    pub suppressed: bool,
    pub reason: String,
    pub origin: String,
    pub event_id: Option<String>,
    pub at: i64,
}

impl SuppressionRecord {
    /// The compacted topic's key: the latest record of a key is the recipient's state.
    pub fn key(&self) -> String {
        format!("{}:{}", self.scope, self.recipient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpipe_avro::{parse_schema, RegisteredSchema, RULE_ACTION_SCHEMA, SUPPRESSION_SCHEMA};

    fn sample_action() -> ActionRecord {
        ActionRecord {
            action_id: "r/e/0".into(),
            rule_id: "r".into(),
            rule_version: "v1".into(),
            action_index: 0,
            action: ActionKind::Suppress,
            parameters: BTreeMap::from([("reason".to_string(), "complaint".to_string())]),
            decision: Decision::Executed,
            outcome: Outcome::Applied,
            event_id: "e".into(),
            event_type: "complained",
            provider: "sendgrid",
            source: "main".into(),
            recipient: Some("a@x.example".into()),
            campaign_id: None,
            occurred_at: 1,
            decided_at: 2,
            due_at: 1,
            detail: String::new(),
        }
    }

    #[test]
    fn records_encode_with_their_topic_schemas() {
        let actions = RegisteredSchema::new(1, parse_schema(RULE_ACTION_SCHEMA).unwrap()).unwrap();
        let framed = actions.encode(&sample_action(), 256).unwrap();
        assert_eq!(framed[0], 0, "Confluent framing");
        let suppressions =
            RegisteredSchema::new(2, parse_schema(SUPPRESSION_SCHEMA).unwrap()).unwrap();
        let record = SuppressionRecord {
            recipient: "a@x.example".into(),
            scope: "global".into(),
            suppressed: true,
            reason: "complaint".into(),
            origin: "rule:r".into(),
            event_id: Some("e".into()),
            at: 3,
        };
        suppressions.encode(&record, 128).unwrap();
    }

    #[test]
    fn every_decision_and_outcome_is_a_symbol_of_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(RULE_ACTION_SCHEMA).unwrap();
        let symbols = |field: &str| -> Vec<String> {
            let fields = schema["fields"].as_array().unwrap();
            let f = fields.iter().find(|f| f["name"] == field).unwrap();
            serde_json::from_value(f["type"]["symbols"].clone()).unwrap()
        };
        use mailpipe_rules_core::Decision::*;
        for decision in [
            Executed,
            DryRun,
            CooledDown,
            Limited,
            SuppressedRecipient,
            RenderFailed,
            GuardFailed,
        ] {
            assert!(
                symbols("decision").contains(&decision.as_str().to_string()),
                "{decision:?}"
            );
        }
        for outcome in [
            Outcome::Applied,
            Outcome::Scheduled,
            Outcome::Pending,
            Outcome::Skipped,
        ] {
            assert!(
                symbols("outcome").contains(&outcome.as_str().to_string()),
                "{outcome:?}"
            );
        }
    }
}
