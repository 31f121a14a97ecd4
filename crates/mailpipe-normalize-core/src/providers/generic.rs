//! Generic: for senders without a dedicated parser, a canonical JSON shape that maps 1:1
//! onto the event. The body is one object or an array of objects:
//!
//! ```json
//! {
//!   "event_id": "4f1c…",                      optional; unique across this deployment's generic sources
//!   "event_type": "bounced",                  required; a canonical symbol, anything else → unknown
//!   "recipient": "Ann <ann@example.com>",     optional; display name removed, lower-cased
//!   "occurred_at": "2024-05-01T12:00:00Z",    optional; RFC 3339 / RFC 2822 text or integer Unix ms
//!   "message_id": "…", "campaign_id": "…",    optional strings
//!   "tags": ["welcome"],                      optional; a string or an array of strings
//!   "metadata": {"user_id": 42},              optional object; non-string values kept as JSON text
//!   "reject_reason": "invalid",               optional; invalid|bounced|timed_out|blocked|spam|unsubscribed|other
//!   "bounce_class": "hard",                   optional; hard|soft|undetermined
//!   "url": "…", "user_agent": "…", "ip": "…", optional strings
//!   "geo": {"country": "FR", "region": "…", "city": "…"},
//!   "mta_response": "550 5.1.1 …", "description": "…"
//! }
//! ```
//!
//! Unknown `reject_reason` values become `other`, unknown `bounce_class` values
//! `undetermined`; unknown keys are ignored (they stay in `raw_event`).
//!
//! - event_id: `event_id` as given; without it, the hash of (`event_type`, recipient,
//!   `occurred_at` as sent, `message_id`, `url`).
//! - campaign: `campaign_id`, else the metadata `campaign_id` convention.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Json, Object, Shape};
use crate::timestamp;

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    parse_as(Provider::Generic, input)
}

/// The canonical shape, for `provider`: any provider that sends mailpipe's own shape (a
/// relay, a variant of generic signed differently) parses with this, its events carrying
/// its own id.
pub(crate) fn parse_as(
    provider: Provider,
    input: &ParseInput<'_>,
) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    json::events(text, Shape::ObjectOrArray, "body")?
        .into_iter()
        .map(|raw| event(provider, input, raw.raw, &raw.object))
        .collect()
}

fn event(
    provider: Provider,
    input: &ParseInput<'_>,
    raw: &str,
    o: &Object,
) -> Result<EmailEvent, ParseError> {
    let name = o.required_str("event_type")?;
    let mut e = new_event(input, provider, name, raw);
    e.event_type = EventType::from_symbol(name).unwrap_or(EventType::Unknown);
    match o.get("occurred_at") {
        None | Some(Json::Null) => {}
        Some(Json::String(at)) => e.occurred_at = timestamp::text(at, "occurred_at")?,
        Some(at) => e.occurred_at = timestamp::millis(at, "occurred_at")?,
    }
    let text = |key: &str| o.text_of(key);
    e.recipient = text("recipient");
    e.message_id = text("message_id");
    e.campaign_id = text("campaign_id");
    e.tags = json::string_list(o.get("tags"));
    e.metadata = o
        .object_of("metadata")
        .map(|m| json::metadata(m.members()))
        .unwrap_or_default();
    e.reject_reason = o
        .str_of("reject_reason")
        .map(|r| RejectReason::from_symbol(r).unwrap_or(RejectReason::Other));
    e.bounce_class = o
        .str_of("bounce_class")
        .map(|c| BounceClass::from_symbol(c).unwrap_or(BounceClass::Undetermined));
    e.url = text("url");
    e.user_agent = text("user_agent");
    e.ip = text("ip");
    e.geo = o.object_of("geo").map(|g| Geo {
        country: g.text_of("country"),
        region: g.text_of("region"),
        city: g.text_of("city"),
    });
    e.mta_response = text("mta_response");
    e.description = text("description");
    e.event_id = match text("event_id") {
        Some(id) => id,
        None => hashed(
            provider,
            input.source,
            &[
                Some(name),
                crate::draft::address(e.recipient.as_deref().unwrap_or("")).as_deref(),
                o.get("occurred_at").map(Json::to_string).as_deref(),
                e.message_id.as_deref(),
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
    fn canonical_fields_map_one_to_one() {
        let e = events(
            Provider::Generic,
            r#"[{"event_id":"g1","event_type":"bounced","recipient":"Ann <ANN@x.example>",
            "occurred_at":"2024-05-01T12:00:00.250+02:00","reject_reason":"invalid","bounce_class":"hard","tags":"t",
            "metadata":{"campaign_id":"spring","n":1},"geo":{"country":"FR"}},
            {"event_type":"teleported","occurred_at":1714564800000,"reject_reason":"cosmic","bounce_class":"very"}]"#,
        );
        assert_eq!(
            (e[0].event_id.as_str(), e[0].event_type),
            ("g1", EventType::Bounced)
        );
        assert_eq!(
            (e[0].reject_reason, e[0].bounce_class),
            (Some(RejectReason::Invalid), Some(BounceClass::Hard))
        );
        assert_eq!(e[0].occurred_at, 1_714_557_600_250);
        assert_eq!(
            (e[0].recipient.as_deref(), e[0].campaign_id.as_deref()),
            (Some("ann@x.example"), Some("spring"))
        );
        assert_eq!(
            (e[1].event_type, e[1].provider_event.as_str()),
            (EventType::Unknown, "teleported")
        );
        assert_eq!(
            (e[1].reject_reason, e[1].bounce_class),
            (Some(RejectReason::Other), Some(BounceClass::Undetermined))
        );
        assert_eq!(
            (e[1].occurred_at, e[1].event_id.len()),
            (1_714_564_800_000, 64)
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            failure(Provider::Generic, r#"{"recipient":"a@x"}"#),
            ParseFailure::MissingField
        );
        assert_eq!(
            failure(
                Provider::Generic,
                r#"{"event_type":"sent","occurred_at":1.5}"#
            ),
            ParseFailure::InvalidField
        );
        assert_eq!(
            failure(
                Provider::Generic,
                r#"{"event_type":"sent","occurred_at":"yesterday"}"#
            ),
            ParseFailure::InvalidField
        );
        assert_eq!(failure(Provider::Generic, "42"), ParseFailure::WrongShape);
    }
}
