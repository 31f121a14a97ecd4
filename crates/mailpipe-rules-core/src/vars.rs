//! The event as variables: what templates and expressions can name, and their values.
//!
//! One list of names ([`EVENT_FIELDS`]) serves both the load-time checks (an unknown name is
//! an error with its line) and the values built per event, so the two cannot drift apart.
//! Absent optional fields are `null`: templates render them as empty text, expressions can
//! test `recipient == null`. `geo` is always an object so `geo.country` is never undefined.

use std::collections::{BTreeMap, HashMap};

use cel::common::types::{CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
use cel::common::value::{CowVal, Val};
use mailpipe_model::{EmailEvent, EventType, Geo, Provider};
use serde::Serialize;

/// Names an expression or template may use, as in `schemas/email_event.avsc`, plus
/// `event_time` (the time the engine counts by: `occurred_at`, else `received_at`).
pub const EVENT_FIELDS: [&str; 30] = {
    // The event's own fields (mailpipe-model's list) and `event_time`, after `received_at`.
    let own = mailpipe_model::EVENT_FIELD_NAMES;
    let mut all = [""; 30];
    let mut i = 0;
    let mut j = 0;
    while i < own.len() {
        all[j] = own[i];
        j += 1;
        if matches!(own[i].as_bytes(), b"received_at") {
            all[j] = "event_time";
            j += 1;
        }
        i += 1;
    }
    all
};

/// Names a template may use: the event's fields and `rule` (`rule.id`, `rule.description`,
/// `rule.version`).
pub const KNOWN_FIELDS: [&str; 31] = {
    let mut all = [""; 31];
    let mut i = 0;
    while i < EVENT_FIELDS.len() {
        all[i] = EVENT_FIELDS[i];
        i += 1;
    }
    all[30] = "rule";
    all
};

/// Fields with a fixed set of sub-fields; `metadata` takes any key.
const NESTED: [(&str, &[&str]); 2] = [
    ("geo", &["country", "region", "city"]),
    ("rule", &["id", "description", "version"]),
];

/// Whether a dotted variable path (`recipient`, `metadata.plan`, `geo.city`) names
/// something that exists, given the top-level names allowed.
pub(crate) fn is_known_path(path: &str, top_level: &[&str]) -> bool {
    let mut parts = path.splitn(2, '.');
    let head = parts.next().unwrap_or_default();
    if !top_level.contains(&head) {
        return false;
    }
    match parts.next() {
        None => true,
        Some(rest) if head == "metadata" => !rest.is_empty(),
        Some(rest) => {
            let first = rest.split('.').next().unwrap_or_default();
            NESTED
                .iter()
                .any(|(name, subs)| *name == head && subs.contains(&first))
        }
    }
}

/// The event's variables, borrowed from it.
#[derive(Debug, Serialize)]
pub(crate) struct EventVars<'a> {
    event_id: &'a str,
    event_type: &'static str,
    provider_event: &'a str,
    provider: &'static str,
    source: &'a str,
    occurred_at: i64,
    received_at: i64,
    event_time: i64,
    recipient: Option<&'a str>,
    recipient_domain: Option<&'a str>,
    message_id: Option<&'a str>,
    campaign_id: Option<&'a str>,
    tags: &'a [String],
    metadata: &'a BTreeMap<String, String>,
    reject_reason: Option<&'static str>,
    bounce_class: Option<&'static str>,
    url: Option<&'a str>,
    user_agent: Option<&'a str>,
    ip: Option<&'a str>,
    geo: GeoVars<'a>,
    mta_response: Option<&'a str>,
    description: Option<&'a str>,
    raw_request_id: &'a str,
    raw_event: &'a str,
    client_name: Option<&'a str>,
    client_os: Option<&'a str>,
    device_class: Option<&'static str>,
    machine_open: Option<bool>,
    machine_reason: Option<&'a str>,
    geo_source: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct GeoVars<'a> {
    country: Option<&'a str>,
    region: Option<&'a str>,
    city: Option<&'a str>,
}

impl<'a> EventVars<'a> {
    pub(crate) fn of(event: &'a EmailEvent) -> Self {
        let geo = event.geo.as_ref();
        EventVars {
            event_id: &event.event_id,
            event_type: event.event_type.as_str(),
            provider_event: &event.provider_event,
            provider: event.provider.as_str(),
            source: &event.source,
            occurred_at: event.occurred_at,
            received_at: event.received_at,
            event_time: event_time_ms(event),
            recipient: event.recipient.as_deref(),
            recipient_domain: event.recipient_domain.as_deref(),
            message_id: event.message_id.as_deref(),
            campaign_id: event.campaign_id.as_deref(),
            tags: &event.tags,
            metadata: &event.metadata,
            reject_reason: event.reject_reason.map(|r| r.as_str()),
            bounce_class: event.bounce_class.map(|c| c.as_str()),
            url: event.url.as_deref(),
            user_agent: event.user_agent.as_deref(),
            ip: event.ip.as_deref(),
            geo: GeoVars {
                country: geo.and_then(|g| g.country.as_deref()),
                region: geo.and_then(|g| g.region.as_deref()),
                city: geo.and_then(|g| g.city.as_deref()),
            },
            mta_response: event.mta_response.as_deref(),
            description: event.description.as_deref(),
            raw_request_id: &event.raw_request_id,
            raw_event: &event.raw_event,
            client_name: event.client_name.as_deref(),
            client_os: event.client_os.as_deref(),
            device_class: event.device_class.map(|d| d.as_str()),
            machine_open: event.machine_open,
            machine_reason: event.machine_reason.as_deref(),
            geo_source: event.geo_source.as_deref(),
        }
    }
}

/// The variables of CEL expressions, looked up when an expression reads one: nothing is
/// converted for a field no expression reads, and text is borrowed from the event, not
/// copied. The values are those the event's JSON form gives (as templates see it): absent
/// fields are `null`, `metadata` and `geo` are maps, and a time, a number of JSON, is a
/// `uint` (`int` if negative) — a test checks every field against that form.
impl cel::context::VariableResolver for EventVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = match variable {
            "event_id" => text(self.event_id),
            "event_type" => text(self.event_type),
            "provider_event" => text(self.provider_event),
            "provider" => text(self.provider),
            "source" => text(self.source),
            "occurred_at" => number(self.occurred_at),
            "received_at" => number(self.received_at),
            "event_time" => number(self.event_time),
            "recipient" => optional_text(self.recipient),
            "recipient_domain" => optional_text(self.recipient_domain),
            "message_id" => optional_text(self.message_id),
            "campaign_id" => optional_text(self.campaign_id),
            "tags" => Box::new(CelList::from(
                self.tags.iter().map(|t| text(t)).collect::<Vec<_>>(),
            )),
            "metadata" => map(self.metadata.iter().map(|(k, v)| (k.as_str(), text(v)))),
            "reject_reason" => optional_text(self.reject_reason),
            "bounce_class" => optional_text(self.bounce_class),
            "url" => optional_text(self.url),
            "user_agent" => optional_text(self.user_agent),
            "ip" => optional_text(self.ip),
            "geo" => map([
                ("country", optional_text(self.geo.country)),
                ("region", optional_text(self.geo.region)),
                ("city", optional_text(self.geo.city)),
            ]),
            "mta_response" => optional_text(self.mta_response),
            "description" => optional_text(self.description),
            "raw_request_id" => text(self.raw_request_id),
            "raw_event" => text(self.raw_event),
            "client_name" => optional_text(self.client_name),
            "client_os" => optional_text(self.client_os),
            "device_class" => optional_text(self.device_class),
            "machine_open" => match self.machine_open {
                Some(machine) => {
                    Box::new(cel::common::types::CelBool::from(machine)) as Box<dyn Val>
                }
                None => Box::new(CelNull),
            },
            "machine_reason" => optional_text(self.machine_reason),
            "geo_source" => optional_text(self.geo_source),
            _ => return None,
        };
        Some(CowVal::Owned(value))
    }
}

fn text(value: &str) -> Box<dyn Val + '_> {
    Box::new(CelString::from(value))
}

fn optional_text(value: Option<&str>) -> Box<dyn Val + '_> {
    match value {
        Some(value) => text(value),
        None => Box::new(CelNull),
    }
}

/// A number as JSON carries it into CEL: non-negative ones are `uint`s.
fn number(value: i64) -> Box<dyn Val + 'static> {
    match u64::try_from(value) {
        Ok(value) => Box::new(CelUInt::from(value)),
        Err(_) => Box::new(cel::common::types::CelInt::from(value)),
    }
}

fn map<'b>(entries: impl IntoIterator<Item = (&'b str, Box<dyn Val + 'b>)>) -> Box<dyn Val + 'b> {
    let entries: HashMap<CelMapKey<'b>, Box<dyn Val + 'b>> = entries
        .into_iter()
        .map(|(key, value)| (CelMapKey::from(key), value))
        .collect();
    Box::new(CelMap::from(entries))
}

/// The time the engine counts and schedules by: when the event happened, or when it was
/// received when the provider gave no time.
pub fn event_time_ms(event: &EmailEvent) -> i64 {
    if event.occurred_at != 0 {
        event.occurred_at
    } else {
        event.received_at
    }
}

/// An event with every optional field set and the given metadata keys, to render templates
/// against at load time (so an unknown filter is a load error, not a runtime one).
pub(crate) fn sample_event(metadata_keys: &[String]) -> EmailEvent {
    let text = |s: &str| Some(s.to_string());
    EmailEvent {
        event_id: "sample-event".into(),
        event_type: EventType::Bounced,
        provider_event: "bounce".into(),
        provider: Provider::Generic,
        source: "sample".into(),
        occurred_at: 1_767_225_600_000,
        received_at: 1_767_225_601_000,
        recipient: text("someone@example.com"),
        recipient_domain: text("example.com"),
        message_id: text("sample-message"),
        campaign_id: text("sample-campaign"),
        tags: vec!["sample".into()],
        metadata: metadata_keys
            .iter()
            .map(|k| (k.clone(), "sample".to_string()))
            .collect(),
        reject_reason: None,
        bounce_class: None,
        url: text("https://example.com/"),
        user_agent: text("sample-agent"),
        ip: text("192.0.2.1"),
        geo: Some(Geo {
            country: text("FR"),
            region: text("IDF"),
            city: text("Paris"),
        }),
        mta_response: text("550 5.1.1 sample"),
        description: text("sample"),
        raw_request_id: "sample-request".into(),
        raw_event: "{}".into(),
        client_name: text("Apple Mail"),
        client_os: text("iOS"),
        device_class: Some(mailpipe_model::DeviceClass::Mobile),
        machine_open: Some(false),
        machine_reason: text("apple_mail_privacy"),
        geo_source: text("provider"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths() {
        for path in ["recipient", "metadata.plan", "geo.city", "rule.id", "tags"] {
            assert!(is_known_path(path, &KNOWN_FIELDS), "{path}");
        }
        // Expressions see the event only, not `rule`.
        for path in [
            "recipient.x",
            "metadata.",
            "geo.street",
            "nope",
            "rule",
            "rule.id",
        ] {
            assert!(!is_known_path(path, &EVENT_FIELDS), "{path}");
        }
    }

    /// The resolver gives every field, with the value the event's JSON form gives it (what
    /// expressions saw when their variables were built from that form).
    #[test]
    fn expressions_see_every_field_as_its_json_form() {
        let mut full = sample_event(&["plan".to_string()]);
        full.bounce_class = Some(mailpipe_model::BounceClass::Hard);
        full.reject_reason = Some(mailpipe_model::RejectReason::Invalid);
        let mut bare = EmailEvent {
            recipient: None,
            recipient_domain: None,
            message_id: None,
            campaign_id: None,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            url: None,
            user_agent: None,
            ip: None,
            geo: None,
            mta_response: None,
            description: None,
            client_name: None,
            client_os: None,
            device_class: None,
            machine_open: None,
            machine_reason: None,
            geo_source: None,
            ..sample_event(&[])
        };
        bare.occurred_at = -5;
        let env = std::sync::Arc::new(cel::Env::stdlib());
        for event in [&full, &bare] {
            let vars = EventVars::of(event);
            let json = serde_json::to_value(&vars).unwrap();
            let mut resolved = cel::Context::with_env(env.clone());
            resolved.set_variable_resolver(&vars);
            for name in EVENT_FIELDS {
                let mut from_json = cel::Context::with_env(env.clone());
                from_json.add_variable_from_value(name, cel::to_value(&json[name]).unwrap());
                let program = cel::Program::compile(name).unwrap();
                assert!(program.execute(&resolved).is_ok(), "{name}");
                assert_eq!(
                    program.execute(&resolved),
                    program.execute(&from_json),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn event_time_falls_back_to_receipt() {
        let mut event = sample_event(&[]);
        assert_eq!(event_time_ms(&event), 1_767_225_600_000);
        event.occurred_at = 0;
        assert_eq!(event_time_ms(&event), 1_767_225_601_000);
    }
}
