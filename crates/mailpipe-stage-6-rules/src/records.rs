//! What the rules stage writes: one [`ActionRecord`] per action of a matching rule on
//! `mail.actions` (`schemas/rule_action.avsc`), one [`SuppressionRecord`] per change of the
//! suppression list on `mail.suppressions` (`schemas/suppression.avsc`), and the records of
//! `publish` actions. Field names are the schemas', so the Avro codec serializes these as
//! they are.

use std::collections::BTreeMap;

use mailpipe_avro::datum::{write_long, write_optional_string, write_string, write_string_map};
use mailpipe_avro::RegisteredSchema;
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

/// The fields of `schemas/rule_action.avsc`, in order: what [`ActionEncoder`] writes.
const ACTION_FIELDS: [&str; 18] = [
    "action_id",
    "rule_id",
    "rule_version",
    "action_index",
    "action",
    "parameters",
    "decision",
    "outcome",
    "event_id",
    "event_type",
    "provider",
    "source",
    "recipient",
    "campaign_id",
    "occurred_at",
    "decided_at",
    "due_at",
    "detail",
];

const ACTION_KINDS: [ActionKind; 7] = [
    ActionKind::Suppress,
    ActionKind::Unsuppress,
    ActionKind::Score,
    ActionKind::Segment,
    ActionKind::Publish,
    ActionKind::Webhook,
    ActionKind::Unknown,
];

const DECISIONS: [Decision; 7] = [
    Decision::Executed,
    Decision::DryRun,
    Decision::CooledDown,
    Decision::Limited,
    Decision::SuppressedRecipient,
    Decision::RenderFailed,
    Decision::GuardFailed,
];

const OUTCOMES: [Outcome; 4] = [
    Outcome::Applied,
    Outcome::Scheduled,
    Outcome::Pending,
    Outcome::Skipped,
];

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Suppress => "suppress",
            ActionKind::Unsuppress => "unsuppress",
            ActionKind::Score => "score",
            ActionKind::Segment => "segment",
            ActionKind::Publish => "publish",
            ActionKind::Webhook => "webhook",
            ActionKind::Unknown => "unknown",
        }
    }
}

/// Writes `mail.actions` records field by field (as the normalize stage writes events):
/// the same bytes as the schema-aware serde encoding of an [`ActionRecord`], at a fraction
/// of its cost (serde looks every field up by name). Built only for a schema whose fields
/// are exactly [`ACTION_FIELDS`]; enum values are written as their index in that schema.
#[derive(Debug, Clone)]
pub struct ActionEncoder {
    schema: RegisteredSchema,
    kinds: [i64; 7],
    decisions: [i64; 7],
    outcomes: [i64; 4],
}

impl ActionEncoder {
    /// An encoder for the registered `mail.actions` schema; None when that schema is not
    /// the one this encoder follows (the caller then encodes through serde).
    pub fn new(schema: &RegisteredSchema) -> Option<ActionEncoder> {
        let json = serde_json::to_value(schema.schema()).ok()?;
        let fields = json.get("fields")?.as_array()?;
        let names: Vec<&str> = fields
            .iter()
            .map(|f| f.get("name").and_then(|n| n.as_str()).unwrap_or_default())
            .collect();
        if names != ACTION_FIELDS {
            return None;
        }
        let symbols = |field: &str| -> Option<Vec<String>> {
            let f = fields.iter().find(|f| f["name"] == field)?;
            serde_json::from_value(f["type"]["symbols"].clone()).ok()
        };
        fn indexes<const N: usize>(names: [&str; N], symbols: &[String]) -> Option<[i64; N]> {
            let mut out = [0; N];
            for (slot, name) in out.iter_mut().zip(names) {
                *slot = i64::try_from(symbols.iter().position(|s| s == name)?).ok()?;
            }
            Some(out)
        }
        Some(ActionEncoder {
            kinds: indexes(ACTION_KINDS.map(ActionKind::as_str), &symbols("action")?)?,
            decisions: indexes(DECISIONS.map(Decision::as_str), &symbols("decision")?)?,
            outcomes: indexes(OUTCOMES.map(Outcome::as_str), &symbols("outcome")?)?,
            schema: schema.clone(),
        })
    }

    /// One Confluent-framed `mail.actions` record.
    pub fn encode(&self, record: &ActionRecord) -> Vec<u8> {
        self.schema.encode_with(512, |out| self.write(out, record))
    }

    fn write(&self, out: &mut Vec<u8>, r: &ActionRecord) {
        fn index<T: PartialEq>(all: &[T], table: &[i64], value: T) -> i64 {
            let at = all.iter().position(|v| *v == value).unwrap_or_default();
            table[at]
        }
        write_string(out, &r.action_id);
        write_string(out, &r.rule_id);
        write_string(out, &r.rule_version);
        write_long(out, i64::from(r.action_index));
        write_long(out, index(&ACTION_KINDS, &self.kinds, r.action));
        write_string_map(
            out,
            r.parameters.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        write_long(out, index(&DECISIONS, &self.decisions, r.decision));
        write_long(out, index(&OUTCOMES, &self.outcomes, r.outcome));
        write_string(out, &r.event_id);
        write_string(out, r.event_type);
        write_string(out, r.provider);
        write_string(out, &r.source);
        write_optional_string(out, r.recipient.as_deref());
        write_optional_string(out, r.campaign_id.as_deref());
        write_long(out, r.occurred_at);
        write_long(out, r.decided_at);
        write_long(out, r.due_at);
        write_string(out, &r.detail);
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
    fn the_field_by_field_encoder_writes_what_serde_writes() {
        let schema = RegisteredSchema::new(7, parse_schema(RULE_ACTION_SCHEMA).unwrap()).unwrap();
        let encoder = ActionEncoder::new(&schema).expect("the schema's fields and symbols");
        let mut records = vec![sample_action()];
        for (i, kind) in ACTION_KINDS.into_iter().enumerate() {
            let mut r = sample_action();
            r.action = kind;
            r.decision = DECISIONS[i % DECISIONS.len()];
            r.outcome = OUTCOMES[i % OUTCOMES.len()];
            r.action_index = i32::try_from(i * 1000).unwrap() - 3;
            r.recipient = (i % 2 == 0).then(|| format!("r{i}@x.example"));
            r.campaign_id = (i % 3 == 0).then(|| "spring-ünï".to_string());
            r.parameters = (0..i)
                .map(|k| (format!("k{k}"), "v".repeat(k * 40)))
                .collect();
            r.occurred_at = -1 - i as i64;
            r.decided_at = i64::MAX - i as i64;
            r.due_at = 1 << (i * 9);
            r.detail = "d".repeat(i * 30);
            records.push(r);
        }
        for d in DECISIONS {
            let mut r = sample_action();
            r.decision = d;
            records.push(r);
        }
        for record in &records {
            assert_eq!(
                encoder.encode(record),
                schema.encode(record, 256).unwrap(),
                "{record:?}"
            );
        }
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
