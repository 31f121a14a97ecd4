//! The rules file as written: serde structs that mirror the TOML, before any checking.
//!
//! Every struct denies unknown fields, so a misspelt key is an error with its line rather
//! than a silently ignored condition. Leaves that later checks can reject (patterns,
//! templates, durations, zones) are `Spanned` so those errors point at the value itself.
//! `compile` turns these into the checked types the engine evaluates.

use std::collections::BTreeMap;

use mailpipe_model::{BounceClass, EventType, Provider, RejectReason};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::state::KeyKind;

/// One `[[rule]]` table.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: String,
    /// Higher runs first; ties run in id order.
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub stop: bool,
    /// The operator's version label; when absent, a hash of the rule's content.
    #[serde(default)]
    pub version: Option<RawVersion>,
    /// Whether actions skip a recipient already on the suppression list.
    #[serde(default = "yes")]
    pub respect_suppression: bool,
    #[serde(default)]
    pub when: RawWhen,
    /// Not `Spanned`: toml_edit gives an array of tables no span of its own.
    pub then: Vec<RawAction>,
    #[serde(default)]
    pub cooldown: Option<RawCooldown>,
    #[serde(default)]
    pub limit: Option<RawLimit>,
}

fn yes() -> bool {
    true
}

/// `version = 3` or `version = "2026-11-a"`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum RawVersion {
    Number(i64),
    Text(String),
}

/// How the conditions of a `when` combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawMatch {
    All,
    Any,
}

/// A `when` (or an action's `guard`) table: each key present is one condition.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWhen {
    #[serde(default, rename = "match")]
    pub mode: Option<RawMatch>,
    #[serde(default)]
    pub at_least: Option<Spanned<u32>>,
    pub event_types: Option<Spanned<Vec<EventType>>>,
    pub providers: Option<Spanned<Vec<Provider>>>,
    pub sources: Option<Spanned<Vec<String>>>,
    pub campaign_ids: Option<Spanned<Vec<String>>>,
    pub tags: Option<Spanned<Vec<String>>>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub bounce_classes: Option<Spanned<Vec<BounceClass>>>,
    pub reject_reasons: Option<Spanned<Vec<RejectReason>>>,
    pub recipient_matches: Option<Spanned<Vec<Spanned<String>>>>,
    pub recipient_domain_matches: Option<Spanned<Vec<Spanned<String>>>>,
    pub time_window: Option<RawTimeWindow>,
    pub expression: Option<Spanned<String>>,
    pub in_segment: Option<String>,
    pub not_in_segment: Option<String>,
    pub score: Option<RawScore>,
    pub history: Option<RawHistory>,
    pub threshold: Option<RawThreshold>,
    pub rate: Option<RawRate>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeWindow {
    pub zone: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    #[serde(default)]
    pub days: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScore {
    pub at_least: Option<f64>,
    pub below: Option<f64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    /// `recipient` (default) or `domain`.
    #[serde(default)]
    pub of: Option<Spanned<KeyKind>>,
    pub metric: Spanned<String>,
    pub at_least: Option<f64>,
    pub below: Option<f64>,
    #[serde(default)]
    pub if_absent: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThreshold {
    pub events: Spanned<Vec<EventType>>,
    #[serde(default)]
    pub bounce_classes: Vec<BounceClass>,
    pub per: KeyKind,
    pub within: Spanned<String>,
    pub at_least: Option<Spanned<u64>>,
    pub at_most: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    pub numerator: Spanned<Vec<EventType>>,
    pub denominator: Spanned<Vec<EventType>>,
    pub per: KeyKind,
    pub within: Spanned<String>,
    pub above_percent: Option<Spanned<f64>>,
    pub below_percent: Option<Spanned<f64>>,
    #[serde(default = "one")]
    pub min_denominator: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCooldown {
    pub duration: Spanned<String>,
    pub per: KeyKind,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub count: Spanned<u64>,
    pub window: Spanned<String>,
}

/// The kind of an action; the other fields of [`RawAction`] that each kind takes are
/// checked by `compile` (an internally tagged enum would lose the spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawActionKind {
    Suppress,
    Unsuppress,
    Score,
    Segment,
    Publish,
    Webhook,
}

/// One `[[rule.then]]` table.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAction {
    pub action: Spanned<RawActionKind>,
    pub delay: Option<Spanned<String>>,
    /// Re-checked when a delayed action comes due; it runs only if these still hold.
    pub guard: Option<RawWhen>,
    pub reason: Option<Spanned<String>>,
    pub scope: Option<Spanned<String>>,
    pub add: Option<Spanned<f64>>,
    pub segment: Option<Spanned<String>>,
    pub remove: Option<bool>,
    pub topic: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub value: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
    pub body: Option<Spanned<String>>,
}
