//! MailerSend: one JSON object per request, `{"type": "activity.<x>", "created_at", "data":
//! {…activity…}}`.
//!
//! | `type` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `activity.sent` | sent | |
//! | `activity.delivered` | delivered | |
//! | `activity.soft_bounced` | bounced | bounced / soft |
//! | `activity.hard_bounced` | bounced | bounced / hard |
//! | `activity.opened` / `activity.clicked` | opened / clicked | |
//! | `activity.unsubscribed` | unsubscribed | |
//! | `activity.spam_complaint` | complained | |
//! | `activity.opened_unique`, `activity.clicked_unique` | unknown — as anymail: they repeat an `opened` / `clicked` already counted | |
//! | `activity.survey_*`, `maintenance.*`, anything else | unknown | |
//!
//! - event_id: `data.id` (the activity's ObjectId, unique per event); without it, the hash
//!   of (`type`, `data.created_at`, `data.email.id`, recipient).
//! - message_id: `data.email.message.id` (the `X-Message-Id` the send API returned).
//! - recipient: `data.email.recipient.email`. occurred_at: `data.created_at`, else
//!   `created_at` (RFC 3339).
//! - tags: `data.email.tags`; metadata: none (MailerSend has no custom data on events);
//!   campaign: none of its own (only the metadata convention, which cannot apply).
//! - ip, url, user_agent: `data.morph.ip`, `.url`, `.user_agent`; description:
//!   `data.morph.readable_reason`, else `.reason`.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Json, Object, Shape};
use crate::timestamp;

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    let event = json::events(text, Shape::Object, "body")?.remove(0);
    let o = &event.object;
    let name = o.required_str("type")?;
    let empty = Object::default();
    let data = match o.get("data") {
        None | Some(Json::Null) => &empty,
        Some(Json::Object(data)) => data,
        Some(other) => return Err(ParseError::shape(format!("data is {}", json::kind(other)))),
    };
    let email = data.object_of("email").unwrap_or(&empty);
    let morph = data.object_of("morph").unwrap_or(&empty);
    let mut e = new_event(input, Provider::Mailersend, name, event.raw);
    let time = [("data.created_at", data), ("created_at", o)]
        .into_iter()
        .find_map(|(field, obj)| Some((field, obj.str_of("created_at")?)));
    if let Some((field, at)) = time {
        e.occurred_at = timestamp::text(at, field)?;
    }
    e.recipient = email
        .object_of("recipient")
        .and_then(|r| r.str_of("email"))
        .map(str::to_string);
    e.message_id = email.object_of("message").and_then(|m| m.text_of("id"));
    e.tags = json::string_list(email.get("tags"));
    e.ip = morph.str_of("ip").map(str::to_string);
    e.url = morph.str_of("url").map(str::to_string);
    e.user_agent = morph.str_of("user_agent").map(str::to_string);
    e.description = morph
        .str_of("readable_reason")
        .or(morph.str_of("reason"))
        .map(str::to_string);

    let activity = name.strip_prefix("activity.").unwrap_or(name);
    (e.event_type, e.reject_reason, e.bounce_class) = match activity {
        "sent" => (EventType::Sent, None, None),
        "delivered" => (EventType::Delivered, None, None),
        "soft_bounced" => (
            EventType::Bounced,
            Some(RejectReason::Bounced),
            Some(BounceClass::Soft),
        ),
        "hard_bounced" => (
            EventType::Bounced,
            Some(RejectReason::Bounced),
            Some(BounceClass::Hard),
        ),
        "opened" => (EventType::Opened, None, None),
        "clicked" => (EventType::Clicked, None, None),
        "unsubscribed" => (EventType::Unsubscribed, None, None),
        "spam_complaint" => (EventType::Complained, None, None),
        _ => (EventType::Unknown, None, None),
    };
    e.event_id = match data.text_of("id") {
        Some(id) => id,
        None => hashed(
            Provider::Mailersend,
            input.source,
            &[
                Some(name),
                data.str_of("created_at"),
                email.text_of("id").as_deref(),
                crate::draft::address(e.recipient.as_deref().unwrap_or("")).as_deref(),
            ],
        ),
    };
    Ok(vec![e])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{events, failure};
    use crate::ParseFailure;

    #[test]
    fn activities_and_escaped_slashes() {
        let body = r#"{"type":"activity.hard_bounced","created_at":"2023-02-27T21:09:49.520507Z","data":{"id":"63fd1c1d31b9c750540fe85c",
            "type":"hard_bounced","created_at":"2023-02-27T21:09:49.506000Z","email":{"id":"e1","tags":["t1"],
            "message":{"id":"m1"},"recipient":{"email":"A@x.example"}},"morph":{"object":"recipient_bounce","reason":"Host or domain name not found","url":"https:\/\/x.example\/"}}}"#;
        let e = events(Provider::Mailersend, body).remove(0);
        assert_eq!(
            (e.event_type, e.reject_reason, e.bounce_class),
            (
                EventType::Bounced,
                Some(RejectReason::Bounced),
                Some(BounceClass::Hard)
            )
        );
        assert_eq!(
            (e.event_id.as_str(), e.message_id.as_deref()),
            ("63fd1c1d31b9c750540fe85c", Some("m1"))
        );
        assert_eq!(e.occurred_at, 1_677_532_189_506);
        assert_eq!(e.url.as_deref(), Some("https://x.example/"));
        assert!(
            e.raw_event.contains(r"https:\/\/"),
            "raw_event is the original text"
        );
    }

    #[test]
    fn unknown_and_errors() {
        let e = events(
            Provider::Mailersend,
            r#"{"type":"activity.opened_unique","data":{"email":{"recipient":{"email":"a@x.example"}}}}"#,
        );
        assert_eq!(
            (e[0].event_type, e[0].event_id.len()),
            (EventType::Unknown, 64)
        );
        assert_eq!(
            failure(
                Provider::Mailersend,
                r#"{"type":"activity.sent","data":"x"}"#
            ),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(
                Provider::Mailersend,
                r#"{"type":"activity.sent","created_at":"2023-02-30T00:00:00Z"}"#
            ),
            ParseFailure::InvalidField
        );
    }
}
