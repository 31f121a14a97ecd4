//! Mailgun's legacy webhooks (before 2018-06): form posts, urlencoded or multipart when
//! the original message is attached, with custom variables mixed into the form fields.
//!
//! Legacy `event`: `delivered`, `dropped` → rejected, `bounced` → bounced (hard),
//! `complained`, `unsubscribed`, `opened`, `clicked`; reject_reason from `code`: 499 →
//! timed_out, 605 → bounced, 607 → spam, other 4xx/5xx or enhanced 4.x.x/5.x.x → bounced,
//! anything else → other.
//!
//! - event_id: the hash of (Message-ID, `event`, recipient, `timestamp`, `url`); the
//!   `token` identifies the request, not the event.
//! - message_id: `Message-Id` / `message-id`, in angle brackets. occurred_at: `timestamp`.
//! - tags: repeated `tag` / `X-Mailgun-Tag`; metadata: every form field Mailgun does not
//!   define, plus the `X-Mailgun-Variables` JSON; campaign: `campaign-id`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use super::{bracketed, engagement};
use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{Json, Object};
use crate::timestamp;

/// Legacy form fields Mailgun defines; every other field is a custom variable.
#[rustfmt::skip]
const LEGACY_FIELDS: &[&str] = &[
    "attachment-count", "body-plain", "campaign-id", "campaign-name", "city", "client-name",
    "client-os", "client-type", "code", "country", "description", "device-type", "domain",
    "error", "event", "ip", "mailing-list", "message-headers", "Message-Id", "message-id",
    "notification", "reason", "recipient", "region", "signature", "tag", "timestamp", "token",
    "url", "user-agent", "X-Mailgun-Tag", "X-Mailgun-Variables",
];

pub(super) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let fields = input.form_fields();
    // Custom variables share the form's namespace; Mailgun's own value comes first (and
    // last for the signature fields), so read the first occurrence.
    let first = |name: &str| {
        fields
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    };
    let name = first("event").ok_or_else(|| ParseError::missing("`event` form field"))?;
    let mut raw = Map::new();
    for (key, value) in &fields {
        match raw.get_mut(key) {
            Some(Value::Array(values)) => values.push(value.clone().into()),
            Some(single) => *single = Value::Array(vec![single.take(), value.clone().into()]),
            None => drop(raw.insert(key.clone(), value.clone().into())),
        }
    }
    let mut e = new_event(
        input,
        Provider::Mailgun,
        name,
        &Value::Object(raw).to_string(),
    );
    let at = fields
        .iter()
        .rev()
        .find(|(k, _)| k == "timestamp")
        .map(|(_, v)| v.as_str());
    if let Some(at) = at {
        e.occurred_at = timestamp::seconds(&Json::String(Cow::Borrowed(at)), "timestamp")?;
    }
    e.recipient = first("recipient").map(str::to_string);
    e.message_id = first("Message-Id").or(first("message-id")).map(bracketed);
    e.tags = fields
        .iter()
        .filter(|(k, _)| k == "tag" || k == "X-Mailgun-Tag")
        .map(|(_, v)| v.clone())
        .collect();
    e.campaign_id = first("campaign-id").map(str::to_string);
    for (key, value) in &fields {
        if !LEGACY_FIELDS.contains(&key.as_str()) && !key.starts_with("attachment-") {
            e.metadata
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    // Some legacy events carry the variables only as the `X-Mailgun-Variables` JSON header.
    if let Some(Ok(variables)) = first("X-Mailgun-Variables").map(serde_json::from_str::<Object>) {
        for (key, value) in crate::json::metadata(variables.members()) {
            e.metadata.entry(key).or_insert(value);
        }
    }
    e.url = first("url").map(str::to_string);
    e.ip = first("ip").map(str::to_string);
    e.user_agent = first("user-agent").map(str::to_string);
    if first("country").is_some() || first("city").is_some() {
        let text = |k: &str| first(k).map(str::to_string);
        e.geo = Some(Geo {
            country: text("country"),
            region: text("region"),
            city: text("city"),
        });
    }
    e.mta_response = first("error").or(first("notification")).map(str::to_string);
    e.description = first("description").map(str::to_string);
    let code_reason = first("code")
        .map(legacy_code_reason)
        .unwrap_or(RejectReason::Other);
    match name {
        "delivered" => e.event_type = EventType::Delivered,
        "dropped" => {
            e.event_type = EventType::Rejected;
            e.reject_reason = Some(code_reason);
        }
        "bounced" => {
            e.event_type = EventType::Bounced;
            e.reject_reason = Some(code_reason);
            e.bounce_class = Some(BounceClass::Hard);
        }
        other => e.event_type = engagement(other),
    }
    e.event_id = hashed(
        Provider::Mailgun,
        input.source,
        &[
            e.message_id.as_deref(),
            Some(name),
            e.recipient.as_deref(),
            at,
            e.url.as_deref(),
        ],
    );
    Ok(vec![e])
}

fn legacy_code_reason(code: &str) -> RejectReason {
    match code.trim().parse::<u32>() {
        Ok(499) => RejectReason::TimedOut,
        Ok(605) => RejectReason::Bounced,
        Ok(607) => RejectReason::Spam,
        Ok(400..=599) => RejectReason::Bounced,
        Ok(_) => RejectReason::Other,
        // An enhanced status code such as 5.1.1: classes 4 and 5 are failures.
        Err(_) if code.trim().starts_with("4.") || code.trim().starts_with("5.") => {
            RejectReason::Bounced
        }
        Err(_) => RejectReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::parse_with;

    #[test]
    fn legacy_form_posts_with_custom_variables() {
        let body = "event=bounced&recipient=A%40x.example&code=550&error=no+such+user&Message-Id=%3Cm2%40x%3E&timestamp=1461261330&token=abc&signature=def&plan=pro&tag=t1&tag=t2&event=forged";
        let e = parse_with(
            Provider::Mailgun,
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            (e.event_type, e.reject_reason, e.bounce_class),
            (
                EventType::Bounced,
                Some(RejectReason::Bounced),
                Some(BounceClass::Hard)
            )
        );
        assert_eq!(e.occurred_at, 1_461_261_330_000);
        assert_eq!(e.metadata.get("plan").map(String::as_str), Some("pro"));
        assert_eq!(e.tags, vec!["t1", "t2"]);
        assert_eq!(e.mta_response.as_deref(), Some("no such user"));
        let raw: Value = serde_json::from_str(&e.raw_event).unwrap();
        assert_eq!(raw["event"], serde_json::json!(["bounced", "forged"]));
        assert_eq!(legacy_code_reason("499"), RejectReason::TimedOut);
        assert_eq!(legacy_code_reason("5.1.1"), RejectReason::Bounced);
        assert_eq!(legacy_code_reason("250"), RejectReason::Other);
    }
}
