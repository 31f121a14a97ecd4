//! The canonical email event: what every provider event becomes on `mail.events`.
//!
//! Field names, types and enum symbols match `schemas/email_event.avsc` exactly, so
//! `apache_avro::to_value` / `from_value` round-trip an [`EmailEvent`] through that schema
//! (the normalizer's tests prove it). The taxonomy follows django-anymail's `EventType` and
//! `RejectReason`, the de-facto standard across ESPs.
//!
//! Invariant: enum symbols are only ever added, never renamed or removed; each Avro enum
//! has a `default` (`unknown`, `other`, `undetermined`) so an older reader maps a symbol it
//! does not know onto that default instead of failing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Provider;

/// The names of [`EmailEvent`]'s fields, in the order of `schemas/email_event.avsc`: the
/// Avro encoder checks the schema against it, the rules engine knows the variables a rule
/// may name from it.
pub const EVENT_FIELD_NAMES: [&str; 29] = [
    "event_id",
    "event_type",
    "provider_event",
    "provider",
    "source",
    "occurred_at",
    "received_at",
    "recipient",
    "recipient_domain",
    "message_id",
    "campaign_id",
    "tags",
    "metadata",
    "reject_reason",
    "bounce_class",
    "url",
    "user_agent",
    "ip",
    "geo",
    "mta_response",
    "description",
    "raw_request_id",
    "raw_event",
    "client_name",
    "client_os",
    "device_class",
    "machine_open",
    "machine_reason",
    "geo_source",
];

/// One event of one recipient, as reported by an ESP, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailEvent {
    /// The provider's own unique event id where it has one, else a stable SHA-256-based
    /// hash of provider, source and the event's identifying fields (rule per provider).
    pub event_id: String,
    pub event_type: EventType,
    /// The provider's own name for the event (`hard_bounce`, `email.delivered`, …); the
    /// way to tell apart what `event_type` groups together, and to triage `unknown`.
    pub provider_event: String,
    /// An Avro string (not an enum) so a new provider never needs a schema change; written
    /// as its id so schema-aware serializers see a string, not an enum variant.
    #[serde(serialize_with = "serialize_provider_id")]
    pub provider: Provider,
    /// Configured source (account/tenant) the webhook arrived on.
    pub source: String,
    /// When the event happened per the provider, UTC Unix milliseconds.
    pub occurred_at: i64,
    /// When our receiver got the request, UTC Unix milliseconds.
    pub received_at: i64,
    /// Bare address, lower-cased; `None` when the provider names no recipient.
    pub recipient: Option<String>,
    /// The part after the last `@` of `recipient`.
    pub recipient_domain: Option<String>,
    /// The ESP's message id (what its send API returned), as the provider spells it.
    pub message_id: Option<String>,
    pub campaign_id: Option<String>,
    pub tags: Vec<String>,
    /// Custom data attached at send time; non-string values as compact JSON text.
    pub metadata: BTreeMap<String, String>,
    /// Set on `rejected` and `bounced` events when a reason is known.
    pub reject_reason: Option<RejectReason>,
    /// Set on bounce-like events (`bounced`, `deferred`) when the provider tells.
    pub bounce_class: Option<BounceClass>,
    /// The clicked link (`clicked`).
    pub url: Option<String>,
    pub user_agent: Option<String>,
    /// Opener/clicker IP for engagement events; sending IP for delivery events.
    pub ip: Option<String>,
    pub geo: Option<Geo>,
    /// Raw SMTP/MTA text, as received.
    pub mta_response: Option<String>,
    /// Human-readable explanation from the provider.
    pub description: Option<String>,
    /// Id of the `mail.raw` record this event was parsed from.
    pub raw_request_id: String,
    /// The provider's original event, as JSON text.
    pub raw_event: String,
    // Enrichment (issue 23, schema v2): set by the normalize stage's enrichment step
    // (`mailpipe_stage_3_normalize::enrich`) on engagement events; `None` elsewhere.
    /// The reading software from the user agent ("Apple Mail", "Gmail", "Outlook", "Chrome").
    #[serde(default)]
    pub client_name: Option<String>,
    /// The reader's operating system from the user agent ("iOS", "Windows", "macOS").
    #[serde(default)]
    pub client_os: Option<String>,
    #[serde(default)]
    pub device_class: Option<DeviceClass>,
    /// On `opened`: whether a machine (a privacy proxy's prefetch, a link scanner) rather
    /// than a person opened; set by the provider's own flag where it sends one.
    #[serde(default)]
    pub machine_open: Option<bool>,
    /// Why `machine_open` is true: `provider_flag`, `apple_mail_privacy`, `security_scanner`,
    /// `bot`.
    #[serde(default)]
    pub machine_reason: Option<String>,
    /// Where `geo` came from: `provider`, or `ip_database` (the configured MaxMind file).
    #[serde(default)]
    pub geo_source: Option<String>,
}

/// The kind of device that read the message, from its user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    Desktop,
    Mobile,
    Tablet,
    /// A mail provider's image proxy or privacy relay fetched the content: the device is
    /// hidden (Gmail's and Yahoo's image proxies, Apple Mail Privacy Protection).
    Proxy,
    /// A robot: a security scanner following links, a crawler.
    Bot,
    Unknown,
}

/// What happened, normalized (anymail's `EventType`, without the inbound types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The ESP accepted the message and will try to send it, possibly later.
    Queued,
    /// The ESP handed the message off; delivery not yet known.
    Sent,
    /// The ESP refused to send (suppression list, policy, invalid address…).
    Rejected,
    /// The ESP could not send (template rendering error…).
    Failed,
    /// The receiving MTA rejected or blocked the message.
    Bounced,
    /// The receiving MTA delayed it; `bounced` or `delivered` is expected later.
    Deferred,
    /// The receiving MTA accepted it (not a promise of inbox placement).
    Delivered,
    /// A robot replied (vacation notice, challenge/response).
    Autoresponded,
    Opened,
    Clicked,
    /// The recipient reported spam, usually through a feedback loop.
    Complained,
    Unsubscribed,
    Subscribed,
    /// Not normalized: see `provider_event` and `raw_event`.
    Unknown,
}

/// Why a message was rejected or bounced (anymail's `RejectReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Bad address format, or the address does not exist.
    Invalid,
    /// A bounce; on `rejected`: the address is on the ESP's prior-bounce list.
    Bounced,
    /// The ESP gave up after repeated transient failures.
    TimedOut,
    /// Policy (the ESP's or the receiver's) prohibits this recipient or message.
    Blocked,
    /// Judged spam; on `rejected`: the address is on the prior-complaint list.
    Spam,
    /// The recipient is on the unsubscribe list.
    Unsubscribed,
    Other,
}

/// Whether a bounce is permanent, for suppression decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// Permanent: the address should not be mailed again.
    Hard,
    /// Temporary: mailbox full, greylisting, a block that may lift…
    Soft,
    /// The provider says it cannot tell (SES `Undetermined`, SparkPost class 1).
    Undetermined,
}

/// Where an engagement event came from, as far as the provider knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geo {
    /// Country, usually an ISO 3166 code, as the provider gives it.
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::Queued,
        EventType::Sent,
        EventType::Rejected,
        EventType::Failed,
        EventType::Bounced,
        EventType::Deferred,
        EventType::Delivered,
        EventType::Autoresponded,
        EventType::Opened,
        EventType::Clicked,
        EventType::Complained,
        EventType::Unsubscribed,
        EventType::Subscribed,
        EventType::Unknown,
    ];

    /// The schema's symbol, also used as a low-cardinality metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Queued => "queued",
            EventType::Sent => "sent",
            EventType::Rejected => "rejected",
            EventType::Failed => "failed",
            EventType::Bounced => "bounced",
            EventType::Deferred => "deferred",
            EventType::Delivered => "delivered",
            EventType::Autoresponded => "autoresponded",
            EventType::Opened => "opened",
            EventType::Clicked => "clicked",
            EventType::Complained => "complained",
            EventType::Unsubscribed => "unsubscribed",
            EventType::Subscribed => "subscribed",
            EventType::Unknown => "unknown",
        }
    }

    /// The event type named by a schema symbol, if any.
    pub fn from_symbol(symbol: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == symbol)
    }
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Invalid,
        RejectReason::Bounced,
        RejectReason::TimedOut,
        RejectReason::Blocked,
        RejectReason::Spam,
        RejectReason::Unsubscribed,
        RejectReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Invalid => "invalid",
            RejectReason::Bounced => "bounced",
            RejectReason::TimedOut => "timed_out",
            RejectReason::Blocked => "blocked",
            RejectReason::Spam => "spam",
            RejectReason::Unsubscribed => "unsubscribed",
            RejectReason::Other => "other",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == symbol)
    }
}

impl BounceClass {
    pub const ALL: [BounceClass; 3] = [
        BounceClass::Hard,
        BounceClass::Soft,
        BounceClass::Undetermined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
            BounceClass::Undetermined => "undetermined",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<BounceClass> {
        BounceClass::ALL.into_iter().find(|c| c.as_str() == symbol)
    }
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 6] = [
        DeviceClass::Desktop,
        DeviceClass::Mobile,
        DeviceClass::Tablet,
        DeviceClass::Proxy,
        DeviceClass::Bot,
        DeviceClass::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Proxy => "proxy",
            DeviceClass::Bot => "bot",
            DeviceClass::Unknown => "unknown",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<DeviceClass> {
        DeviceClass::ALL.into_iter().find(|c| c.as_str() == symbol)
    }
}

fn serialize_provider_id<S: serde::Serializer>(p: &Provider, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip() {
        // The serde names are checked against these symbols (and the Avro schema) by the
        // normalizer's Avro round-trip test; here only the lookups.
        for t in EventType::ALL {
            assert_eq!(EventType::from_symbol(t.as_str()), Some(t));
        }
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::from_symbol(r.as_str()), Some(r));
        }
        for c in BounceClass::ALL {
            assert_eq!(BounceClass::from_symbol(c.as_str()), Some(c));
        }
        for d in DeviceClass::ALL {
            assert_eq!(DeviceClass::from_symbol(d.as_str()), Some(d));
        }
        assert_eq!(EventType::from_symbol("inbound"), None);
        assert_eq!(RejectReason::from_symbol("TimedOut"), None);
    }
}
