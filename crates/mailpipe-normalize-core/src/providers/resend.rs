//! Resend: one JSON object per request, `{"type", "created_at", "data"}`, delivered by Svix
//! (Standard Webhooks headers `svix-id` / `webhook-id`).
//!
//! | `type` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `email.scheduled` | queued | |
//! | `email.sent` | sent | |
//! | `email.delivered` | delivered | |
//! | `email.delivery_delayed` | deferred | soft |
//! | `email.bounced` | bounced | blocked if `bounce.message` mentions suppression, else bounced / from `bounce.type`: Permanent → hard, Transient → soft, Undetermined → undetermined |
//! | `email.bounced`, `bounce.subType` Suppressed / OnAccountSuppressionList | rejected (never attempted, as for SES) | bounced / blocked |
//! | `email.suppressed` | rejected | from `suppressed.type`: bounce → bounced, complaint → spam, unsubscribe → unsubscribed, else blocked |
//! | `email.failed` | failed | |
//! | `email.complained` | complained | |
//! | `email.opened` / `email.clicked` | opened / clicked | |
//! | `email.received`, `contact.*`, `domain.*`, anything else | unknown | |
//!
//! - event_id: the `svix-id` (or `webhook-id`) header, unique per event and kept across
//!   retries and replays; without it, the hash of (`type`, `created_at`, `data.email_id`,
//!   recipient).
//! - message_id: `data.email_id`. recipient: the first of `data.to` (Resend sends one
//!   event per recipient but does not say which; a message to one recipient is exact).
//! - occurred_at: top-level `created_at` (the event's time; `data.created_at` is the email's).
//! - tags: none; metadata: `data.tags` (Resend's tags are name/value pairs); campaign:
//!   `data.broadcast_id`.
//! - url, ip, user_agent: `data.click.link`, `.ipAddress`, `.userAgent`; description:
//!   `bounce.message`, `failed.reason` or `suppressed.message`.

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
    let mut e = new_event(input, Provider::Resend, name, event.raw);
    if let Some(at) = o.str_of("created_at") {
        e.occurred_at = timestamp::text(at, "created_at")?;
    }
    let to = json::string_list(data.get("to"));
    e.recipient = to
        .first()
        .cloned()
        .or_else(|| data.str_of("email").map(str::to_string));
    e.message_id = data.str_of("email_id").map(str::to_string);
    e.campaign_id = data.str_of("broadcast_id").map(str::to_string);
    e.metadata = match data.get("tags") {
        Some(Json::Object(tags)) => json::metadata(tags.members()),
        // The send API's form: [{"name": …, "value": …}].
        Some(Json::Array(tags)) => tags
            .iter()
            .filter_map(|t| {
                Some((
                    t.get("name")?.as_str()?.to_string(),
                    json::text(t.get("value")?)?,
                ))
            })
            .collect(),
        _ => Default::default(),
    };
    if let Some(click) = data.object_of("click") {
        e.url = click.str_of("link").map(str::to_string);
        e.ip = click.str_of("ipAddress").map(str::to_string);
        e.user_agent = click.str_of("userAgent").map(str::to_string);
    }
    let bounce = data.object_of("bounce").unwrap_or(&empty);
    let suppressed = data.object_of("suppressed").unwrap_or(&empty);
    e.description = bounce
        .str_of("message")
        .or_else(|| data.object_of("failed")?.str_of("reason"))
        .or(suppressed.str_of("message"))
        .map(str::to_string);

    (e.event_type, e.reject_reason, e.bounce_class) = match name {
        "email.scheduled" => (EventType::Queued, None, None),
        "email.sent" => (EventType::Sent, None, None),
        "email.delivered" => (EventType::Delivered, None, None),
        "email.delivery_delayed" => (EventType::Deferred, None, Some(BounceClass::Soft)),
        "email.bounced" => {
            let message = bounce.str_of("message").unwrap_or("").to_ascii_lowercase();
            let reason = if message.contains("suppress") {
                RejectReason::Blocked
            } else {
                RejectReason::Bounced
            };
            // Resend relays SES's bounce types: a suppression-list "bounce" was never attempted.
            match (bounce.str_of("type"), bounce.str_of("subType")) {
                (_, Some("Suppressed")) => (EventType::Rejected, Some(RejectReason::Bounced), None),
                (_, Some("OnAccountSuppressionList")) => {
                    (EventType::Rejected, Some(RejectReason::Blocked), None)
                }
                (Some("Permanent"), _) => {
                    (EventType::Bounced, Some(reason), Some(BounceClass::Hard))
                }
                (Some("Transient"), _) => {
                    (EventType::Bounced, Some(reason), Some(BounceClass::Soft))
                }
                (Some("Undetermined"), _) => (
                    EventType::Bounced,
                    Some(reason),
                    Some(BounceClass::Undetermined),
                ),
                _ => (EventType::Bounced, Some(reason), None),
            }
        }
        "email.suppressed" => {
            let reason = match suppressed
                .str_of("type")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("bounce" | "bounced") => RejectReason::Bounced,
                Some("complaint" | "complained") => RejectReason::Spam,
                Some("unsubscribe" | "unsubscribed") => RejectReason::Unsubscribed,
                _ => RejectReason::Blocked,
            };
            (EventType::Rejected, Some(reason), None)
        }
        "email.failed" => (EventType::Failed, None, None),
        "email.complained" => (EventType::Complained, None, None),
        "email.opened" => (EventType::Opened, None, None),
        "email.clicked" => (EventType::Clicked, None, None),
        _ => (EventType::Unknown, None, None),
    };
    e.event_id = match input
        .header("svix-id")
        .or_else(|| input.header("webhook-id"))
    {
        Some(id) => id.to_string(),
        None => hashed(
            Provider::Resend,
            input.source,
            &[
                Some(name),
                o.str_of("created_at"),
                e.message_id.as_deref(),
                crate::draft::address(e.recipient.as_deref().unwrap_or("")).as_deref(),
            ],
        ),
    };
    Ok(vec![e])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{events, failure, parse_with};
    use crate::ParseFailure;

    #[test]
    fn ids_come_from_the_svix_header() {
        let body = r#"{"type":"email.delivered","created_at":"2024-02-22T23:41:12.126Z","data":{"email_id":"e1","to":["Ann <Ann@x.example>"],"tags":{"campaign_id":"c9"}}}"#;
        let e = parse_with(Provider::Resend, &[("svix-id", "msg_1")], body)
            .unwrap()
            .remove(0);
        assert_eq!(
            (e.event_id.as_str(), e.event_type),
            ("msg_1", EventType::Delivered)
        );
        assert_eq!(e.recipient.as_deref(), Some("ann@x.example"));
        assert_eq!(e.campaign_id.as_deref(), Some("c9"), "metadata convention");
        assert_eq!(e.occurred_at, 1_708_645_272_126);
        let hashed = events(Provider::Resend, body).remove(0);
        assert_eq!(hashed.event_id.len(), 64);
    }

    #[test]
    fn bounces_and_suppressions() {
        let bounce = events(
            Provider::Resend,
            r#"{"type":"email.bounced","data":{"to":["a@x.example"],"bounce":{"type":"Permanent","message":"hard bounce message"}}}"#,
        );
        assert_eq!(
            (bounce[0].reject_reason, bounce[0].bounce_class),
            (Some(RejectReason::Bounced), Some(BounceClass::Hard))
        );
        let suppressed = events(
            Provider::Resend,
            r#"{"type":"email.suppressed","data":{"to":["a@x.example"],"suppressed":{"type":"complaint"}}}"#,
        );
        assert_eq!(
            (suppressed[0].event_type, suppressed[0].reject_reason),
            (EventType::Rejected, Some(RejectReason::Spam))
        );
        assert_eq!(
            events(Provider::Resend, r#"{"type":"domain.updated","data":{}}"#)[0].event_type,
            EventType::Unknown
        );
        assert_eq!(
            failure(Provider::Resend, r#"{"type":"email.sent","data":[]}"#),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(Provider::Resend, r#"{"data":{}}"#),
            ParseFailure::MissingField
        );
    }
}
