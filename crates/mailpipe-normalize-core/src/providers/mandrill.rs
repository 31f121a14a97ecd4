//! Mandrill (Mailchimp Transactional): a form post whose single field `mandrill_events`
//! holds a JSON array of up to 1000 events. Message events carry `event`; sync events
//! (allow/deny-list changes) carry `type` instead.
//!
//! | `event` / `type` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `send` | sent | |
//! | `deferral` | deferred | soft |
//! | `hard_bounce` | bounced | from `msg.bounce_description` / hard |
//! | `soft_bounce` | bounced | from `msg.bounce_description` / soft |
//! | `delivered` | delivered | |
//! | `open` / `click` | opened / clicked | |
//! | `spam` | complained | |
//! | `unsub` | unsubscribed | |
//! | `reject` | rejected | other |
//! | sync `whitelist` / `blacklist`, `inbound`, anything else | unknown | |
//!
//! `bounce_description`: bad_mailbox, invalid_domain, invalid → invalid; spam_related →
//! spam; policy_related → blocked; anything else (mailbox_full, general…) → bounced.
//!
//! - event_id: Mandrill has no event id (`_id` is the message's), so the hash of (`event`
//!   or `type`, `_id`, `ts`, `url`, recipient, sync `action`).
//! - message_id: `_id` (= `msg._id`). recipient: `msg.email` (sync: `reject.email`, `entry.email`).
//! - occurred_at: `ts`, Unix seconds.
//! - tags: `msg.tags`; metadata: `msg.metadata`; campaign: the metadata `campaign_id`
//!   convention only. user_agent, ip, url: top-level `user_agent`, `ip`, `url`; geo:
//!   `location`. mta_response: `msg.diag`; description: `msg.bounce_description`, or for
//!   sync events `reject.detail` / `reject.reason`.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Object, Shape};
use crate::timestamp;

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let fields = input.form_fields();
    let batch = fields
        .iter()
        .find(|(key, _)| key == "mandrill_events")
        .map(|(_, value)| value.as_str())
        .ok_or_else(|| ParseError::missing("`mandrill_events` form field"))?;
    json::events(batch, Shape::Array, "mandrill_events")?
        .into_iter()
        .map(|raw| event(input, raw.raw, &raw.object))
        .collect()
}

fn event(input: &ParseInput<'_>, raw: &str, o: &Object) -> Result<EmailEvent, ParseError> {
    let name = match (o.get("event"), o.get("type")) {
        (Some(_), _) => o.required_str("event")?,
        (None, Some(_)) => o.required_str("type")?,
        (None, None) => return Err(ParseError::missing("`event` or `type` field")),
    };
    let empty = Object::default();
    let msg = o.object_of("msg").unwrap_or(&empty);
    let sync = o
        .object_of("reject")
        .or_else(|| o.object_of("entry"))
        .unwrap_or(&empty);
    let mut e = new_event(input, Provider::Mandrill, name, raw);
    if let Some(ts) = o.get("ts") {
        e.occurred_at = timestamp::seconds(ts, "ts")?;
    }
    e.recipient = msg
        .str_of("email")
        .or(sync.str_of("email"))
        .map(str::to_string);
    e.message_id = o.str_of("_id").or(msg.str_of("_id")).map(str::to_string);
    e.tags = json::string_list(msg.get("tags"));
    e.metadata = msg
        .object_of("metadata")
        .map(|m| json::metadata(m.members()))
        .unwrap_or_default();
    e.url = o.str_of("url").map(str::to_string);
    e.user_agent = o.str_of("user_agent").map(str::to_string);
    e.ip = o.str_of("ip").map(str::to_string);
    e.geo = o.object_of("location").map(|l| Geo {
        country: l
            .str_of("country_short")
            .or(l.str_of("country"))
            .map(str::to_string),
        region: l.str_of("region").map(str::to_string),
        city: l.str_of("city").map(str::to_string),
    });
    e.mta_response = msg.str_of("diag").map(str::to_string);
    let bounce_description = msg.str_of("bounce_description");
    e.description = bounce_description
        .or(sync.str_of("detail"))
        .or(sync.str_of("reason"))
        .map(str::to_string);

    let bounce_reason = Some(bounce_description.map_or(RejectReason::Bounced, bounce_reason));
    (e.event_type, e.reject_reason, e.bounce_class) = match name {
        "send" => (EventType::Sent, None, None),
        "deferral" => (EventType::Deferred, None, Some(BounceClass::Soft)),
        "hard_bounce" => (EventType::Bounced, bounce_reason, Some(BounceClass::Hard)),
        "soft_bounce" => (EventType::Bounced, bounce_reason, Some(BounceClass::Soft)),
        "delivered" => (EventType::Delivered, None, None),
        "open" => (EventType::Opened, None, None),
        "click" => (EventType::Clicked, None, None),
        "spam" => (EventType::Complained, None, None),
        "unsub" => (EventType::Unsubscribed, None, None),
        "reject" => (EventType::Rejected, Some(RejectReason::Other), None),
        _ => (EventType::Unknown, None, None),
    };

    e.event_id = hashed(
        Provider::Mandrill,
        input.source,
        &[
            Some(name),
            e.message_id.as_deref(),
            o.text_of("ts").as_deref(),
            e.url.as_deref(),
            crate::draft::address(e.recipient.as_deref().unwrap_or("")).as_deref(),
            o.str_of("action"),
        ],
    );
    Ok(e)
}

fn bounce_reason(description: &str) -> RejectReason {
    match description {
        "bad_mailbox" | "invalid_domain" | "invalid" => RejectReason::Invalid,
        "spam_related" => RejectReason::Spam,
        "policy_related" => RejectReason::Blocked,
        _ => RejectReason::Bounced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::parse_with;
    use crate::ParseFailure;

    fn form(events: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("mandrill_events", events)
            .finish()
    }

    fn parse(events: &str) -> Result<Vec<EmailEvent>, ParseError> {
        parse_with(
            Provider::Mandrill,
            &[("content-type", "application/x-www-form-urlencoded")],
            &form(events),
        )
    }

    #[test]
    fn hard_and_soft_bounces_sync_events_and_batch_order() {
        let e = parse(r#"[
          {"event":"hard_bounce","_id":"m1","ts":1461095246,"msg":{"email":"a@x.example","bounce_description":"bad_mailbox","diag":"smtp;550 5.1.1","tags":["t"],"metadata":{"user":7}}},
          {"event":"soft_bounce","_id":"m1","ts":1461095247,"msg":{"email":"a@x.example","bounce_description":"mailbox_full"}},
          {"type":"blacklist","action":"add","reject":{"email":"B@x.example","reason":"manual edit"}}]"#)
        .unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.event_type, e.reject_reason, e.bounce_class))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    EventType::Bounced,
                    Some(RejectReason::Invalid),
                    Some(BounceClass::Hard)
                ),
                (
                    EventType::Bounced,
                    Some(RejectReason::Bounced),
                    Some(BounceClass::Soft)
                ),
                (EventType::Unknown, None, None),
            ]
        );
        assert_eq!(e[0].metadata["user"], "7");
        assert_eq!(e[0].occurred_at, 1_461_095_246_000);
        assert_eq!(e[2].recipient.as_deref(), Some("b@x.example"));
        assert_eq!(e[2].description.as_deref(), Some("manual edit"));
        assert_eq!(e[2].provider_event, "blacklist");
    }

    #[test]
    fn shape_errors() {
        let fail = |body: &str| {
            parse_with(Provider::Mandrill, &[], body)
                .unwrap_err()
                .failure
        };
        assert_eq!(fail("other=1"), ParseFailure::MissingField);
        assert_eq!(fail(&form("GARBAGE DATA")), ParseFailure::NotJson);
        assert_eq!(fail(&form(r#"{"event":"send"}"#)), ParseFailure::WrongShape);
        assert_eq!(fail(&form(r#"[{"msg":{}}]"#)), ParseFailure::MissingField);
        // Invalid UTF-8 is replaced while form-decoding; outside a string that breaks the JSON.
        assert_eq!(fail("mandrill_events=%5B%FF%5D"), ParseFailure::NotJson);
        assert!(parse("[]").unwrap().is_empty());
    }
}
