//! `mail.actions` records as the tests write them, for the stages that read that topic
//! (aggregate, deliver). The rules stage writes its own typed records; here the schema's
//! enums are [`Symbol`]s (an Avro enum is written from a unit variant, not a string).

use serde::Serialize;

/// The symbols of `schemas/rule_action.avsc`'s enums that tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Symbol {
    Suppress,
    Webhook,
    Executed,
    Pending,
    Scheduled,
    Applied,
}

/// A `mail.actions` record (schemas/rule_action.avsc), field for field.
pub type ActionRecord = mailpipe_avro::records::RuleAction<Symbol, Symbol, Symbol>;

/// An executed action `<rule>/<event>/0` of a complaint (sendgrid), `action` with
/// `parameters`, outcome `outcome`, decided at `decided_at`.
pub fn action_record(
    rule: &str,
    event: &str,
    action: Symbol,
    parameters: &[(&str, &str)],
    outcome: Symbol,
    decided_at: i64,
) -> ActionRecord {
    ActionRecord {
        action_id: format!("{rule}/{event}/0"),
        rule_id: rule.into(),
        rule_version: "v1".into(),
        action_index: 0,
        action,
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        decision: Symbol::Executed,
        outcome,
        event_id: event.into(),
        event_type: "complained".into(),
        provider: "sendgrid".into(),
        source: "sendgrid".into(),
        recipient: None,
        campaign_id: None,
        occurred_at: decided_at,
        decided_at,
        due_at: decided_at,
        detail: String::new(),
    }
}

/// A pending `webhook` action of `rule` for `event`: POST `body` to `url`.
pub fn webhook_action(rule: &str, event: &str, url: &str, body: &str) -> ActionRecord {
    let parameters = [("url", url), ("method", "POST"), ("body", body)];
    action_record(
        rule,
        event,
        Symbol::Webhook,
        &parameters,
        Symbol::Pending,
        1_700_000_000_000,
    )
}
