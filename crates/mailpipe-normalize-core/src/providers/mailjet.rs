//! Mailjet Event API: one JSON object per request (version 1), or an array of the events
//! of the last second (version 2, "grouped").
//!
//! | `event` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `sent` | delivered (Mailjet's "sent" is the receiving server's acceptance) | |
//! | `bounce`, `hard_bounce: true` | bounced | from `error` / hard |
//! | `bounce`, `error: greylisted` | deferred | soft |
//! | `bounce`, otherwise | bounced | from `error` / soft |
//! | `blocked` | rejected | from `error` |
//! | `open` / `click` | opened / clicked | |
//! | `spam` | complained | |
//! | `unsub` | unsubscribed | |
//! | anything else | unknown | |
//!
//! `error`: user unknown, mailbox inactive, quota exceeded, invalid domain, no mail host,
//! relay/access denied → bounced; typofix → invalid; blacklisted, sender blocked, content
//! blocked, policy issue, preblocked → blocked; spam reporter → spam; else other.
//!
//! - event_id: Mailjet has no event id, so the hash of (`MessageID`, `event`, `email`,
//!   `time`, `url`).
//! - message_id: `MessageID` (a 64-bit integer beyond 2^53, kept exact as text), else
//!   `Message_GUID`. occurred_at: `time`, Unix seconds.
//! - tags: none; metadata: `Payload` (a JSON object in a string, else kept whole under
//!   `Payload`) and `CustomID`; campaign: `customcampaign`, else a non-zero `mj_campaign_id`.
//! - user_agent: `agent`; ip: `ip`; geo: `geo` (country code); url: `url`; mta_response:
//!   `smtp_reply`; description: `error_related_to: error`.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Object, Shape};
use crate::timestamp;

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    json::events(text, Shape::ObjectOrArray, "body")?
        .into_iter()
        .map(|raw| event(input, raw.raw, &raw.object))
        .collect()
}

fn event(input: &ParseInput<'_>, raw: &str, o: &Object) -> Result<EmailEvent, ParseError> {
    let name = o.required_str("event")?;
    let mut e = new_event(input, Provider::Mailjet, name, raw);
    if let Some(at) = o.get("time") {
        e.occurred_at = timestamp::seconds(at, "time")?;
    }
    e.recipient = o.str_of("email").map(str::to_string);
    // Mailjet sends MessageID 0 for events not tied to a message.
    e.message_id = o
        .text_of("MessageID")
        .filter(|id| id != "0")
        .or_else(|| o.text_of("Message_GUID"));
    e.campaign_id = o
        .str_of("customcampaign")
        .map(str::to_string)
        .or_else(|| o.text_of("mj_campaign_id").filter(|id| id != "0"));
    if let Some(payload) = o.str_of("Payload") {
        e.metadata = match serde_json::from_str::<Object>(payload) {
            Ok(fields) => json::metadata(fields.members()),
            Err(_) => [("Payload".to_string(), payload.to_string())].into(),
        };
    }
    if let Some(custom_id) = o.text_of("CustomID") {
        e.metadata.insert("CustomID".to_string(), custom_id);
    }
    e.user_agent = o.str_of("agent").map(str::to_string);
    e.ip = o.str_of("ip").map(str::to_string);
    e.geo = o.str_of("geo").map(|country| Geo {
        country: Some(country.to_string()),
        ..Geo::default()
    });
    e.url = o.str_of("url").map(str::to_string);
    e.mta_response = o.str_of("smtp_reply").map(str::to_string);
    let error = o.str_of("error");
    e.description = match (o.str_of("error_related_to"), error) {
        (Some(group), Some(error)) => Some(format!("{group}: {error}")),
        (None, Some(error)) => Some(error.to_string()),
        _ => None,
    };

    let reason = Some(error.map_or(RejectReason::Other, error_reason));
    let hard = o.bool_of("hard_bounce") == Some(true);
    (e.event_type, e.reject_reason, e.bounce_class) = match name {
        "sent" => (EventType::Delivered, None, None),
        "bounce" if hard => (EventType::Bounced, reason, Some(BounceClass::Hard)),
        "bounce" if error == Some("greylisted") => {
            (EventType::Deferred, None, Some(BounceClass::Soft))
        }
        "bounce" => (EventType::Bounced, reason, Some(BounceClass::Soft)),
        "blocked" => (EventType::Rejected, reason, None),
        "open" => (EventType::Opened, None, None),
        "click" => (EventType::Clicked, None, None),
        "spam" => (EventType::Complained, None, None),
        "unsub" => (EventType::Unsubscribed, None, None),
        _ => (EventType::Unknown, None, None),
    };
    e.event_id = hashed(
        Provider::Mailjet,
        input.source,
        &[
            e.message_id.as_deref(),
            Some(name),
            crate::draft::address(e.recipient.as_deref().unwrap_or("")).as_deref(),
            o.text_of("time").as_deref(),
            e.url.as_deref(),
        ],
    );
    Ok(e)
}

fn error_reason(error: &str) -> RejectReason {
    match error {
        "user unknown"
        | "mailbox inactive"
        | "quota exceeded"
        | "invalid domain"
        | "no mail host"
        | "relay/access denied" => RejectReason::Bounced,
        "typofix" => RejectReason::Invalid,
        "blacklisted" | "sender blocked" | "content blocked" | "policy issue" | "preblocked" => {
            RejectReason::Blocked
        }
        "spam reporter" => RejectReason::Spam,
        _ => RejectReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{events, failure};
    use crate::ParseFailure;

    #[test]
    fn bounces_greylisting_and_big_message_ids() {
        let body = r#"[
          {"event":"bounce","time":1430812195,"MessageID":13792286917004336,"email":"a@x.example","hard_bounce":true,"error":"user unknown","error_related_to":"recipient"},
          {"event":"bounce","time":1430812196,"MessageID":13792286917004336,"email":"a@x.example","hard_bounce":false,"error":"greylisted"},
          {"event":"blocked","time":1430812197,"MessageID":19421777835146490,"email":"a@x.example","error":"preblocked"}]"#;
        let e = events(Provider::Mailjet, body);
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.event_type, e.reject_reason, e.bounce_class))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    EventType::Bounced,
                    Some(RejectReason::Bounced),
                    Some(BounceClass::Hard)
                ),
                (
                    EventType::Deferred,
                    Some(RejectReason::Other),
                    Some(BounceClass::Soft)
                ),
                (EventType::Rejected, Some(RejectReason::Blocked), None),
            ]
        );
        assert_eq!(
            e[2].message_id.as_deref(),
            Some("19421777835146490"),
            "exact beyond 2^53"
        );
        assert_eq!(e[0].description.as_deref(), Some("recipient: user unknown"));
    }

    #[test]
    fn payload_metadata_and_campaigns() {
        let e = events(
            Provider::Mailjet,
            r#"{"event":"open","email":"a@x.example","Payload":"{\"user\":1}","CustomID":"c-1","customcampaign":"","mj_campaign_id":7257,"geo":"FR"}"#,
        );
        assert_eq!(e[0].metadata.len(), 2);
        assert_eq!(e[0].campaign_id.as_deref(), Some("7257"));
        assert_eq!(
            e[0].geo.as_ref().and_then(|g| g.country.as_deref()),
            Some("FR")
        );
        assert_eq!(e[0].occurred_at, crate::draft::UNKNOWN_TIME);
        assert_eq!(
            failure(Provider::Mailjet, r#"{"event":"open","time":"noon"}"#),
            ParseFailure::InvalidField
        );
        assert_eq!(
            failure(Provider::Mailjet, r#"[{"event":null}]"#),
            ParseFailure::MissingField
        );
    }
}
