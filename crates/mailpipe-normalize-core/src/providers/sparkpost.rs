//! SparkPost (Bird): a JSON array of wrappers `{"msys": {"<class>": {…event…}}}` with classes
//! `message_event`, `track_event`, `gen_event`, `unsubscribe_event`, `relay_message`… An
//! empty wrapper `{"msys": {}}` is the ping SparkPost sends when a webhook is created or
//! tested: no event.
//!
//! | `type` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `injection` | queued | |
//! | `delivery` | delivered | |
//! | `bounce`, `out_of_band` | bounced (class 60, 100 → autoresponded; 80 → subscribed; 90 → unsubscribed) | from `bounce_class`, see [`BOUNCE_CLASSES`] |
//! | `delay` | deferred | from `bounce_class` when it has one (as anymail), else other / soft |
//! | `policy_rejection`, `generation_rejection` | rejected | from `bounce_class`, else other |
//! | `generation_failure` | failed | |
//! | `spam_complaint` | complained | |
//! | `open`, `amp_open` / `click`, `amp_click` | opened / clicked | |
//! | `list_unsubscribe`, `link_unsubscribe` | unsubscribed | |
//! | `initial_open`, `amp_initial_open` | unknown — as anymail: counting them too would double-count opens when `open` is also enabled | |
//! | relay events, anything else | unknown | |
//!
//! - event_id: `event_id` (unique per event); without it, the hash of (`type`,
//!   `message_id`, `rcpt_to`, `timestamp`, `target_link_url`).
//! - message_id: `transmission_id` (what the Transmissions API returned), else `message_id`.
//! - recipient: `rcpt_to`, else `raw_rcpt_to`. occurred_at: `timestamp` (Unix seconds as a
//!   string in webhooks, ISO 8601 from the Events API; both accepted).
//! - tags: `rcpt_tags`; metadata: `rcpt_meta`; campaign: `campaign_id`.
//! - url: `target_link_url`; ip: `ip_address`, else (message events) `sending_ip`; geo: `geo_ip`;
//!   mta_response: `raw_reason`; description: the bounce class's name.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Object, Shape};
use crate::timestamp;

/// SparkPost's bounce classification codes: name, reject reason, permanence.
const BOUNCE_CLASSES: &[(u64, &str, RejectReason, Option<BounceClass>)] = {
    use BounceClass::{Hard, Soft, Undetermined};
    use RejectReason::*;
    &[
        (1, "Undetermined", Other, Some(Undetermined)),
        (10, "Invalid Recipient", Invalid, Some(Hard)),
        (20, "Soft Bounce", Bounced, Some(Soft)),
        (21, "DNS Failure", Bounced, Some(Soft)),
        (22, "Mailbox Full", Bounced, Some(Soft)),
        (23, "Too Large", Bounced, Some(Soft)),
        (24, "Timeout", TimedOut, Some(Soft)),
        (25, "Admin Failure", Blocked, Some(Soft)),
        (30, "Generic Bounce: No RCPT", Bounced, Some(Hard)),
        (40, "Generic Bounce", Bounced, Some(Soft)),
        (50, "Mail Block", Blocked, Some(Soft)),
        (51, "Spam Block", Spam, Some(Soft)),
        (52, "Spam Content", Spam, Some(Soft)),
        (53, "Prohibited Attachment", Other, Some(Soft)),
        (54, "Relaying Denied", Blocked, Some(Soft)),
        (60, "Auto-Reply", Other, None),
        (70, "Transient Failure", Bounced, Some(Soft)),
        (80, "Subscribe", Other, None),
        (90, "Unsubscribe", Unsubscribed, Some(Hard)),
        (100, "Challenge-Response", Other, None),
    ]
};

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    let mut events = Vec::new();
    for (i, wrapper) in json::events(text, Shape::Array, "body")?
        .into_iter()
        .enumerate()
    {
        let msys = match wrapper.object.get("msys") {
            None => return Err(ParseError::missing(&format!("`msys` in element {i}"))),
            Some(msys) => msys.as_object().ok_or_else(|| {
                ParseError::shape(format!("msys of element {i} is {}", json::kind(msys)))
            })?,
        };
        // One class per wrapper; an empty wrapper is a ping.
        if let Some((class, event)) = msys.first_by_key() {
            let event = event.as_object().ok_or_else(|| {
                ParseError::shape(format!("msys.{class} is {}", json::kind(event)))
            })?;
            events.push(self::event(input, wrapper.raw, class, event)?);
        }
    }
    Ok(events)
}

fn event(
    input: &ParseInput<'_>,
    raw: &str,
    class: &str,
    o: &Object,
) -> Result<EmailEvent, ParseError> {
    let name = match o.get("type") {
        Some(_) => o.required_str("type")?,
        None => class, // relay_message carries no type
    };
    let mut e = new_event(input, Provider::Sparkpost, name, raw);
    if let Some(at) = o.get("timestamp") {
        e.occurred_at = timestamp::seconds_or_text(at, "timestamp")?;
    }
    e.recipient = o
        .str_of("rcpt_to")
        .or(o.str_of("raw_rcpt_to"))
        .map(str::to_string);
    e.message_id = o
        .text_of("transmission_id")
        .or_else(|| o.text_of("message_id"));
    e.tags = json::string_list(o.get("rcpt_tags"));
    e.metadata = o
        .object_of("rcpt_meta")
        .map(|m| json::metadata(m.members()))
        .unwrap_or_default();
    e.campaign_id = o.str_of("campaign_id").map(str::to_string);
    e.url = o.str_of("target_link_url").map(str::to_string);
    e.user_agent = o.str_of("user_agent").map(str::to_string);
    // The sending IP only on message events: on engagement events `ip` is the recipient's.
    let sending_ip = o.str_of("sending_ip").filter(|_| class == "message_event");
    e.ip = o.str_of("ip_address").or(sending_ip).map(str::to_string);
    e.geo = o.object_of("geo_ip").map(|g| Geo {
        country: g.text_of("country"),
        region: g.text_of("region"),
        city: g.text_of("city"),
    });
    e.mta_response = o
        .str_of("raw_reason")
        .or(o.str_of("reason"))
        .map(str::to_string);

    let code = o
        .text_of("bounce_class")
        .and_then(|c| c.trim().parse::<u64>().ok());
    let class_info = code.and_then(|c| BOUNCE_CLASSES.iter().find(|(n, ..)| *n == c));
    e.description = class_info.map(|(_, text, ..)| text.to_string());
    let reason = class_info.map_or(RejectReason::Other, |(_, _, r, _)| *r);
    (e.event_type, e.reject_reason, e.bounce_class) = match name {
        "injection" => (EventType::Queued, None, None),
        "delivery" => (EventType::Delivered, None, None),
        "bounce" | "out_of_band" => match code {
            Some(60 | 100) => (EventType::Autoresponded, None, None),
            Some(80) => (EventType::Subscribed, None, None),
            Some(90) => (EventType::Unsubscribed, None, None),
            _ => (
                EventType::Bounced,
                Some(reason),
                class_info.and_then(|(.., c)| *c),
            ),
        },
        "delay" => (
            EventType::Deferred,
            class_info.map(|(_, _, r, _)| *r),
            Some(BounceClass::Soft),
        ),
        "policy_rejection" | "generation_rejection" => (EventType::Rejected, Some(reason), None),
        "generation_failure" => (EventType::Failed, None, None),
        "spam_complaint" => (EventType::Complained, None, None),
        "open" | "amp_open" => (EventType::Opened, None, None),
        "click" | "amp_click" => (EventType::Clicked, None, None),
        "list_unsubscribe" | "link_unsubscribe" => (EventType::Unsubscribed, None, None),
        _ => (EventType::Unknown, None, None),
    };
    e.event_id = match o.text_of("event_id") {
        Some(id) => id,
        None => hashed(
            Provider::Sparkpost,
            input.source,
            &[
                Some(name),
                o.text_of("message_id").as_deref(),
                o.str_of("rcpt_to"),
                o.text_of("timestamp").as_deref(),
                e.url.as_deref(),
            ],
        ),
    };
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{events, failure};
    use crate::ParseFailure;

    #[test]
    fn bounce_classes_pings_and_timestamp_forms() {
        let body = r#"[{"msys":{}},
          {"msys":{"message_event":{"type":"bounce","bounce_class":"10","event_id":"1","rcpt_to":"a@x.example","timestamp":"1464824548","transmission_id":"t1"}}},
          {"msys":{"message_event":{"type":"bounce","bounce_class":"22","event_id":"2","rcpt_to":"a@x.example","timestamp":"2016-04-18T14:25:07.000+00:00"}}},
          {"msys":{"message_event":{"type":"out_of_band","bounce_class":"60","event_id":"3","rcpt_to":"a@x.example"}}},
          {"msys":{"message_event":{"type":"policy_rejection","bounce_class":"25","event_id":"4","rcpt_to":"a@x.example"}}},
          {"msys":{"track_event":{"type":"initial_open","event_id":"5","rcpt_to":"a@x.example"}}}]"#;
        let e = events(Provider::Sparkpost, body);
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
                (EventType::Autoresponded, None, None),
                (EventType::Rejected, Some(RejectReason::Blocked), None),
                (EventType::Unknown, None, None),
            ]
        );
        assert_eq!(e[0].occurred_at, 1_464_824_548_000);
        assert_eq!(e[1].occurred_at, 1_460_989_507_000);
        assert_eq!(
            (e[0].event_id.as_str(), e[0].message_id.as_deref()),
            ("1", Some("t1"))
        );
        assert_eq!(e[1].description.as_deref(), Some("Mailbox Full"));
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            failure(Provider::Sparkpost, r#"[{"cust":{}}]"#),
            ParseFailure::MissingField
        );
        assert_eq!(
            failure(Provider::Sparkpost, r#"[{"msys":[]}]"#),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(Provider::Sparkpost, r#"[{"msys":{"track_event":"open"}}]"#),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(
                Provider::Sparkpost,
                r#"[{"msys":{"track_event":{"type":7}}}]"#
            ),
            ParseFailure::InvalidField
        );
        assert!(events(Provider::Sparkpost, r#"[{"msys":{}}]"#).is_empty());
    }
}
