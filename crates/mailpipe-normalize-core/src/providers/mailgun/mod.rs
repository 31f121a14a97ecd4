//! Mailgun: the current JSON webhook (`{"signature": {…}, "event-data": {…}}`, one event per
//! request) and the legacy form post (urlencoded or multipart, custom variables mixed into
//! the form fields).
//!
//! | current `event` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `accepted` | queued | |
//! | `rejected` | rejected | from `reason` (else other) |
//! | `delivered` | delivered | |
//! | `failed`, `severity: permanent` | bounced | from `reason`: bounce, generic → bounced; espblock → blocked; old → timed_out; other → other / hard |
//! | `failed`, `reason: suppress-bounce / -unsubscribe / -complaint` | rejected | bounced / unsubscribed / spam (never attempted) |
//! | `failed`, `severity: temporary` | deferred | soft |
//! | `opened`, `clicked`, `complained`, `unsubscribed` | same names | |
//! | anything else (`stored`…) | unknown | |
//!
//! Legacy form posts: see [`legacy`].
//!
//! - event_id: Mailgun's `event-data.id` is unique only within a day, so the hash of
//!   (`id`, `timestamp`, `event`, recipient, Message-ID); legacy: the hash of (Message-ID,
//!   `event`, recipient, `timestamp`, `url`). The signature token is deliberately not used:
//!   it identifies a request, not the event.
//! - message_id: `message.headers.message-id` in angle brackets, as the send API returns it.
//! - occurred_at: `event-data.timestamp` (float seconds); legacy `timestamp` (seconds).
//! - tags: `tags` (legacy: repeated `tag` / `X-Mailgun-Tag`); metadata: `user-variables`
//!   (legacy: every form field Mailgun does not define); campaign: `campaigns[0].id`
//!   (legacy: `campaign-id`).

use serde_json::value::RawValue;

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Json};
use crate::timestamp;

mod legacy;

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let is_json = input.media_type().as_deref() == Some("application/json")
        || input.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_json {
        current(input)
    } else {
        legacy::parse(input)
    }
}

/// The current format's body; the signature was checked by the verify stage.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "event-data")]
    event_data: Option<&'a RawValue>,
}

fn current(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    let envelope: Envelope<'_> = json::envelope(text, "body")?;
    let raw = envelope
        .event_data
        .ok_or_else(|| ParseError::missing("`event-data`"))?;
    let d = &json::object(raw.get(), "event-data")?.object;
    let name = d.required_str("event")?;
    let mut e = new_event(input, Provider::Mailgun, name, raw.get());
    if let Some(at) = d.get("timestamp") {
        e.occurred_at = timestamp::seconds(at, "event-data.timestamp")?;
    }
    let headers = d.object_of("message").and_then(|m| m.object_of("headers"));
    e.recipient = d
        .str_of("recipient")
        .or_else(|| headers?.str_of("to"))
        .map(str::to_string);
    e.message_id = headers.and_then(|h| h.str_of("message-id")).map(bracketed);
    e.tags = json::string_list(d.get("tags"));
    e.metadata = d
        .object_of("user-variables")
        .map(|m| json::metadata(m.members()))
        .unwrap_or_default();
    e.campaign_id = d
        .array_of("campaigns")
        .and_then(|c| c.first())
        .and_then(|c| {
            let c = c.as_object()?;
            c.text_of("id").or_else(|| c.text_of("name"))
        });
    e.url = d.str_of("url").map(str::to_string);
    e.ip = d.str_of("ip").map(str::to_string);
    let client_info = d.object_of("client-info");
    e.user_agent = client_info
        .and_then(|c| c.str_of("user-agent"))
        .map(str::to_string);
    e.machine_open = client_info.and_then(mailgun_bot_flag);
    e.geo = d.object_of("geolocation").map(|g| Geo {
        country: g.text_of("country"),
        region: g.text_of("region"),
        city: g.text_of("city"),
    });
    let status = d.object_of("delivery-status");
    e.mta_response = status.and_then(|s| s.str_of("message")).map(str::to_string);
    e.description = status
        .and_then(|s| s.str_of("description"))
        .or_else(|| d.object_of("reject")?.str_of("description"))
        .or_else(|| d.object_of("reject")?.str_of("reason"))
        .map(str::to_string);

    let reason = d.str_of("reason").unwrap_or("");
    match (name, d.str_of("severity")) {
        ("accepted", _) => e.event_type = EventType::Queued,
        ("rejected", _) => {
            e.event_type = EventType::Rejected;
            e.reject_reason = Some(failure_reason(reason));
        }
        ("delivered", _) => e.event_type = EventType::Delivered,
        ("failed", _) if reason.starts_with("suppress-") => {
            e.event_type = EventType::Rejected;
            e.reject_reason = Some(failure_reason(reason));
        }
        ("failed", Some("temporary")) => {
            e.event_type = EventType::Deferred;
            e.bounce_class = Some(BounceClass::Soft);
        }
        ("failed", severity) => {
            e.event_type = EventType::Bounced;
            e.reject_reason = Some(failure_reason(reason));
            e.bounce_class = (severity == Some("permanent")).then_some(BounceClass::Hard);
        }
        (other, _) => e.event_type = engagement(other),
    }
    let at = d.get("timestamp").map(Json::to_string);
    e.event_id = hashed(
        Provider::Mailgun,
        input.source,
        &[
            d.text_of("id").as_deref(),
            at.as_deref(),
            Some(name),
            e.recipient.as_deref(),
            e.message_id.as_deref(),
        ],
    );
    Ok(vec![e])
}

/// Mailgun's own bot verdict on an open (`client-info.bot`): a non-empty value names the
/// robot (e.g. Apple's privacy proxy) → a machine open; empty → none. A value naming an
/// image proxy that fetches when the reader opens (Gmail, Yahoo) is not a machine open: such
/// proxies act for a person. Only kept on opens (`enrich` ignores it elsewhere).
fn mailgun_bot_flag(client_info: &crate::json::Object<'_>) -> Option<bool> {
    let bot = client_info.str_of("bot")?.trim().to_ascii_lowercase();
    if bot.is_empty() {
        return Some(false);
    }
    let human_proxy = ["gmail", "google", "yahoo"].iter().any(|p| bot.contains(p));
    Some(!human_proxy)
}

/// Event names shared by both formats that need no further fields.
pub(super) fn engagement(name: &str) -> EventType {
    match name {
        "opened" => EventType::Opened,
        "clicked" => EventType::Clicked,
        "complained" => EventType::Complained,
        "unsubscribed" => EventType::Unsubscribed,
        _ => EventType::Unknown,
    }
}

fn failure_reason(reason: &str) -> RejectReason {
    match reason {
        "bounce" | "generic" | "suppress-bounce" => RejectReason::Bounced,
        "suppress-unsubscribe" => RejectReason::Unsubscribed,
        "suppress-complaint" => RejectReason::Spam,
        "espblock" => RejectReason::Blocked,
        "old" => RejectReason::TimedOut,
        _ => RejectReason::Other,
    }
}

pub(super) fn bracketed(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{events, failure, parse_with};
    use crate::ParseFailure;

    fn current(event: &str) -> EmailEvent {
        let body = format!(
            r#"{{"signature":{{"timestamp":"1","token":"t","signature":"s"}},"event-data":{event}}}"#
        );
        events(Provider::Mailgun, &body).remove(0)
    }

    #[test]
    fn severity_decides_hard_soft_and_suppressions_are_rejections() {
        let perm = current(
            r#"{"event":"failed","severity":"permanent","reason":"generic","recipient":"a@x.example","timestamp":1534108637.153125}"#,
        );
        assert_eq!(
            (perm.event_type, perm.reject_reason, perm.bounce_class),
            (
                EventType::Bounced,
                Some(RejectReason::Bounced),
                Some(BounceClass::Hard)
            )
        );
        assert_eq!(perm.occurred_at, 1_534_108_637_153);
        let temp = current(
            r#"{"event":"failed","severity":"temporary","reason":"generic","recipient":"a@x.example"}"#,
        );
        assert_eq!(
            (temp.event_type, temp.reject_reason, temp.bounce_class),
            (
                EventType::Deferred,
                Some(RejectReason::Other),
                Some(BounceClass::Soft)
            )
        );
        let supp = current(
            r#"{"event":"failed","severity":"permanent","reason":"suppress-complaint","recipient":"a@x.example"}"#,
        );
        assert_eq!(
            (supp.event_type, supp.reject_reason),
            (EventType::Rejected, Some(RejectReason::Spam))
        );
        let rejected = current(
            r#"{"event":"rejected","reject":{"reason":"no recipients"},"message":{"headers":{"to":"Bob <Bob@x.example>","message-id":"m1@x"}}}"#,
        );
        assert_eq!(rejected.recipient.as_deref(), Some("bob@x.example"));
        assert_eq!(rejected.message_id.as_deref(), Some("<m1@x>"));
        assert_eq!(rejected.description.as_deref(), Some("no recipients"));
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            failure(Provider::Mailgun, r#"{"signature":{}}"#),
            ParseFailure::MissingField
        );
        assert_eq!(
            failure(Provider::Mailgun, r#"{"event-data":[1]}"#),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(Provider::Mailgun, r#"[{"event-data":{}}]"#),
            ParseFailure::WrongShape
        );
        let form = parse_with(Provider::Mailgun, &[], "recipient=a%40x").unwrap_err();
        assert_eq!(form.failure, ParseFailure::MissingField);
    }
}
