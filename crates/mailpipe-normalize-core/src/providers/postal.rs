//! Postal (self-hosted): one JSON object per request, `{"event", "timestamp", "payload",
//! "uuid"}`.
//!
//! | `event` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `MessageSent` | delivered (Postal's "sent" is the receiving server's acceptance) | |
//! | `MessageDelayed` | deferred | soft |
//! | `MessageDeliveryFailed` | bounced — a permanent SMTP failure at the receiving server (anymail says failed, but the taxonomy's failed is for the ESP's own failures) | bounced / hard |
//! | `MessageHeld` | queued | |
//! | `MessageBounced`, or any payload with `bounce` | bounced | bounced |
//! | `MessageLinkClicked` | clicked | |
//! | `MessageLoaded` | opened | |
//! | `DomainDNSError`, `SendLimit*`, anything else | unknown | |
//! | any, about a message whose `direction` is `incoming` | no event (Postal's report on mail it received) | |
//!
//! A body with `rcpt_to` and no `event` is an incoming message posted by a Postal HTTP
//! endpoint, not a webhook: refused (`wrong_shape`, so dead-lettered with the reason).
//!
//! - event_id: top-level `uuid`; without it, the hash of (`event`, message id,
//!   `timestamp`, `url`).
//! - message_id: `payload.message.id` (Postal's integer id; `original_message` for bounces).
//! - recipient: the message's `to`. occurred_at: `payload.timestamp` (delivery time), else
//!   the top-level `timestamp` (float seconds).
//! - tags: the message's `tag`; metadata: none; campaign: none of its own.
//! - url, ip, user_agent: `payload.url`, `.ip_address`, `.user_agent`; mta_response:
//!   `payload.output`; description: `payload.details`.

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
    if o.contains_key("rcpt_to") && !o.contains_key("event") {
        // Postal's HTTP endpoint for *incoming* mail posts the message itself (rcpt_to,
        // mail_from, plain_body …): a routing mistake on the Postal side, not an event.
        return Err(ParseError::shape(String::from(
            "an incoming message from a Postal HTTP endpoint (it has rcpt_to), not a webhook \
             event: route incoming mail elsewhere",
        )));
    }
    let name = o.required_str("event")?;
    let empty = Object::default();
    let payload = match o.get("payload") {
        None | Some(Json::Null) => &empty,
        Some(Json::Object(payload)) => payload,
        Some(other) => {
            return Err(ParseError::shape(format!(
                "payload is {}",
                json::kind(other)
            )))
        }
    };
    let message = payload
        .object_of("message")
        .or_else(|| payload.object_of("original_message"))
        .unwrap_or(&empty);
    if message.str_of("direction") == Some("incoming") {
        // Postal reports on the mail it receives as well as on the mail it sends; only the
        // outgoing messages' events are email events (as anymail: no event).
        return Ok(Vec::new());
    }
    let mut e = new_event(input, Provider::Postal, name, event.raw);
    let time = [("payload.timestamp", payload), ("timestamp", o)]
        .into_iter()
        .find_map(|(field, obj)| Some((field, obj.get("timestamp")?)));
    if let Some((field, at)) = time {
        e.occurred_at = timestamp::seconds(at, field)?;
    }
    e.recipient = message.str_of("to").map(str::to_string);
    e.message_id = message.text_of("id");
    e.tags = message
        .str_of("tag")
        .map(|t| vec![t.to_string()])
        .unwrap_or_default();
    e.url = payload.str_of("url").map(str::to_string);
    e.ip = payload.str_of("ip_address").map(str::to_string);
    e.user_agent = payload.str_of("user_agent").map(str::to_string);
    e.mta_response = payload.str_of("output").map(|o| o.trim_end().to_string());
    e.description = payload.str_of("details").map(str::to_string);

    (e.event_type, e.reject_reason, e.bounce_class) = match name {
        _ if payload.contains_key("bounce") => {
            (EventType::Bounced, Some(RejectReason::Bounced), None)
        }
        "MessageSent" => (EventType::Delivered, None, None),
        "MessageDelayed" => (EventType::Deferred, None, Some(BounceClass::Soft)),
        "MessageDeliveryFailed" => (
            EventType::Bounced,
            Some(RejectReason::Bounced),
            Some(BounceClass::Hard),
        ),
        "MessageHeld" => (EventType::Queued, None, None),
        "MessageBounced" => (EventType::Bounced, Some(RejectReason::Bounced), None),
        "MessageLinkClicked" => (EventType::Clicked, None, None),
        "MessageLoaded" => (EventType::Opened, None, None),
        _ => (EventType::Unknown, None, None),
    };
    e.event_id = match o.str_of("uuid") {
        Some(uuid) => uuid.to_string(),
        None => hashed(
            Provider::Postal,
            input.source,
            &[
                Some(name),
                e.message_id.as_deref(),
                o.get("timestamp").map(Json::to_string).as_deref(),
                e.url.as_deref(),
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
    fn statuses_bounces_and_float_seconds() {
        let sent = events(
            Provider::Postal,
            r#"{"event":"MessageSent","timestamp":1606753101.354368,"uuid":"u1",
            "payload":{"message":{"id":1563,"to":"a@x.example","tag":"welcome"},"status":"Sent","output":"250 OK\n","timestamp":1606752106.9858062}}"#,
        );
        assert_eq!(
            (sent[0].event_type, sent[0].occurred_at),
            (EventType::Delivered, 1_606_752_106_985)
        );
        assert_eq!(
            (
                sent[0].message_id.as_deref(),
                sent[0].mta_response.as_deref()
            ),
            (Some("1563"), Some("250 OK"))
        );
        let bounced = events(
            Provider::Postal,
            r#"{"event":"MessageDelayed","timestamp":1606753101.5,"uuid":"u2",
            "payload":{"original_message":{"id":7,"to":"a@x.example"},"bounce":{"id":8}}}"#,
        );
        assert_eq!(
            (bounced[0].event_type, bounced[0].occurred_at),
            (EventType::Bounced, 1_606_753_101_500)
        );
        assert_eq!(bounced[0].message_id.as_deref(), Some("7"));
        assert_eq!(
            failure(Provider::Postal, r#"{"event":"MessageSent","payload":[]}"#),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(Provider::Postal, r#"{"payload":{}}"#),
            ParseFailure::MissingField
        );
    }
}
