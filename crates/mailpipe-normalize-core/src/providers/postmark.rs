//! Postmark: one JSON object per request, discriminated by `RecordType`.
//!
//! | `RecordType` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `Delivery` | delivered | |
//! | `Bounce` | by `Type` (or `TypeCode`), see [`BOUNCE_TYPES`]: HardBounce → bounced (bounced, hard); SoftBounce → bounced (bounced, soft); Transient, DnsError, OpenRelayTest → deferred (soft); BadEmailAddress → rejected (invalid); ManuallyDeactivated, Blocked, DMARCPolicy → rejected (blocked); SpamNotification, SpamComplaint → complained; AutoResponder, AddressChange, ChallengeVerification → autoresponded; Unsubscribe → unsubscribed; Subscribe → subscribed; SMTPApiError, TemplateRenderingFailed → failed; others → unknown | |
//! | `SpamComplaint` | complained | |
//! | `Open` / `Click` | opened / clicked | |
//! | `SubscriptionChange` | `SuppressSending: false` → subscribed; else by `SuppressionReason`: ManualSuppression → unsubscribed, HardBounce → bounced (bounced, hard), SpamComplaint → complained (as anymail does) | |
//! | anything else | unknown | |
//!
//! - event_id: a Bounce or SpamComplaint record's own `ID` (Postmark's bounce id, so users
//!   can act on the bounce through Postmark's API; the dedupe key adds provider and source,
//!   so an account-scoped number cannot collide with another account's); the other
//!   records, and any without an `ID`, the hash of (`RecordType`, `ID`, `MessageID`,
//!   recipient, the record's time text, `OriginalLink`, `SuppressSending`).
//! - message_id: `MessageID`. recipient: `Email` or `Recipient`.
//! - occurred_at: `DeliveredAt`, `BouncedAt`, `ReceivedAt` or `ChangedAt` (RFC 3339 with
//!   offset, up to 7 fraction digits).
//! - tags: `[Tag]` when not empty; metadata: `Metadata`; campaign: none of its own (only the
//!   metadata `campaign_id` convention).
//! - user_agent: `UserAgent`; ip and geo: `Geo`; url: `OriginalLink`; description:
//!   `Description`; mta_response: `Details`.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Shape};
use crate::timestamp;

type Mapping = (EventType, Option<RejectReason>, Option<BounceClass>);

/// Bounce `Type`, `TypeCode` and what they mean (postmark.js `BounceTypeCode`).
const BOUNCE_TYPES: &[(&str, u64, Mapping)] = {
    use BounceClass::{Hard, Soft};
    use EventType::*;
    use RejectReason as R;
    &[
        ("HardBounce", 1, (Bounced, Some(R::Bounced), Some(Hard))),
        ("Transient", 2, (Deferred, None, Some(Soft))),
        ("Unsubscribe", 16, (Unsubscribed, None, None)),
        ("Subscribe", 32, (Subscribed, None, None)),
        ("AutoResponder", 64, (Autoresponded, None, None)),
        ("AddressChange", 128, (Autoresponded, None, None)),
        ("DnsError", 256, (Deferred, None, Some(Soft))),
        ("SpamNotification", 512, (Complained, None, None)),
        ("OpenRelayTest", 1024, (Deferred, None, Some(Soft))),
        ("Unknown", 2048, (Unknown, None, None)),
        ("SoftBounce", 4096, (Bounced, Some(R::Bounced), Some(Soft))),
        ("VirusNotification", 8192, (Bounced, Some(R::Other), None)),
        ("ChallengeVerification", 16384, (Autoresponded, None, None)),
        (
            "BadEmailAddress",
            100000,
            (Rejected, Some(R::Invalid), None),
        ),
        ("SpamComplaint", 100001, (Complained, None, None)),
        (
            "ManuallyDeactivated",
            100002,
            (Rejected, Some(R::Blocked), None),
        ),
        ("Unconfirmed", 100003, (Rejected, None, None)),
        ("Blocked", 100006, (Rejected, Some(R::Blocked), None)),
        ("SMTPApiError", 100007, (Failed, None, None)),
        ("InboundError", 100008, (Unknown, None, None)),
        ("DMARCPolicy", 100009, (Rejected, Some(R::Blocked), None)),
        ("TemplateRenderingFailed", 100010, (Failed, None, None)),
    ]
};

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    let record = json::events(text, Shape::Object, "body")?.remove(0);
    let o = &record.object;
    let name = o.required_str("RecordType")?;
    let mut e = new_event(input, Provider::Postmark, name, record.raw);

    let time_field = ["DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt"]
        .into_iter()
        .find(|f| o.str_of(f).is_some());
    if let Some(field) = time_field {
        e.occurred_at = timestamp::text(o.str_of(field).unwrap_or_default(), field)?;
    }
    e.recipient = o
        .str_of("Email")
        .or(o.str_of("Recipient"))
        .map(str::to_string);
    e.message_id = o.str_of("MessageID").map(str::to_string);
    e.tags = o
        .str_of("Tag")
        .map(|t| vec![t.to_string()])
        .unwrap_or_default();
    e.metadata = o
        .object_of("Metadata")
        .map(|m| json::metadata(m.members()))
        .unwrap_or_default();
    e.user_agent = o.str_of("UserAgent").map(str::to_string);
    e.url = o.str_of("OriginalLink").map(str::to_string);
    e.description = o.str_of("Description").map(str::to_string);
    e.mta_response = o.str_of("Details").map(str::to_string);
    if let Some(g) = o.object_of("Geo").filter(|g| !g.is_empty()) {
        e.ip = g.str_of("IP").map(str::to_string);
        e.geo = Some(Geo {
            country: g
                .str_of("CountryISOCode")
                .or(g.str_of("Country"))
                .map(str::to_string),
            region: g.str_of("Region").map(str::to_string),
            city: g.str_of("City").map(str::to_string),
        });
    }

    (e.event_type, e.reject_reason, e.bounce_class) = match name {
        "Delivery" => (EventType::Delivered, None, None),
        "Bounce" => {
            let by_name = o
                .str_of("Type")
                .and_then(|t| BOUNCE_TYPES.iter().find(|(n, _, _)| *n == t));
            let by_code = || {
                let code = o.get("TypeCode")?.as_u64()?;
                BOUNCE_TYPES.iter().find(|(_, c, _)| *c == code)
            };
            by_name
                .or_else(by_code)
                .map_or((EventType::Unknown, None, None), |(_, _, m)| *m)
        }
        "SpamComplaint" => (EventType::Complained, None, None),
        "Open" => (EventType::Opened, None, None),
        "Click" => (EventType::Clicked, None, None),
        "SubscriptionChange" => match (o.bool_of("SuppressSending"), o.str_of("SuppressionReason"))
        {
            (Some(false), _) => (EventType::Subscribed, None, None),
            (_, Some("HardBounce")) => (
                EventType::Bounced,
                Some(RejectReason::Bounced),
                Some(BounceClass::Hard),
            ),
            (_, Some("SpamComplaint")) => (EventType::Complained, None, None),
            _ => (EventType::Unsubscribed, None, None),
        },
        _ => (EventType::Unknown, None, None),
    };

    let time_text = time_field.and_then(|f| o.str_of(f));
    let suppress = o.bool_of("SuppressSending").map(|b| b.to_string());
    let own_id = matches!(name, "Bounce" | "SpamComplaint")
        .then(|| o.text_of("ID"))
        .flatten()
        .filter(|id| !id.is_empty());
    e.event_id = match own_id {
        Some(id) => id,
        None => hashed(
            Provider::Postmark,
            input.source,
            &[
                Some(name),
                o.text_of("ID").as_deref(),
                e.message_id.as_deref(),
                e.recipient.as_deref(),
                time_text,
                e.url.as_deref(),
                suppress.as_deref(),
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

    fn one(body: &str) -> EmailEvent {
        events(Provider::Postmark, body).remove(0)
    }

    #[test]
    fn bounce_types_by_name_or_code() {
        let hard = one(
            r#"{"RecordType":"Bounce","ID":42,"Type":"HardBounce","Email":"a@x.example","BouncedAt":"2014-08-01T13:28:10.2735393-04:00"}"#,
        );
        assert_eq!(
            (hard.event_type, hard.reject_reason, hard.bounce_class),
            (
                EventType::Bounced,
                Some(RejectReason::Bounced),
                Some(BounceClass::Hard)
            )
        );
        assert_eq!(hard.occurred_at, 1_406_914_090_273);
        let soft = one(r#"{"RecordType":"Bounce","ID":43,"TypeCode":4096,"Email":"a@x.example"}"#);
        assert_eq!(soft.bounce_class, Some(BounceClass::Soft));
        let transient =
            one(r#"{"RecordType":"Bounce","ID":44,"Type":"Transient","Email":"a@x.example"}"#);
        assert_eq!(transient.event_type, EventType::Deferred);
        let invalid = one(
            r#"{"RecordType":"Bounce","ID":45,"Type":"BadEmailAddress","Email":"a@x.example"}"#,
        );
        assert_eq!(
            (invalid.event_type, invalid.reject_reason),
            (EventType::Rejected, Some(RejectReason::Invalid))
        );
        let new_type =
            one(r#"{"RecordType":"Bounce","ID":46,"Type":"Brand new","Email":"a@x.example"}"#);
        assert_eq!(new_type.event_type, EventType::Unknown);
        assert_ne!(hard.event_id, soft.event_id);
    }

    #[test]
    fn subscription_changes_and_empty_geo() {
        let unsub = one(
            r#"{"RecordType":"SubscriptionChange","Recipient":"a@x.example","SuppressSending":true,"SuppressionReason":"ManualSuppression","ChangedAt":"2022-06-05T17:17:32Z","Tag":""}"#,
        );
        assert_eq!(unsub.event_type, EventType::Unsubscribed);
        assert!(unsub.tags.is_empty());
        let resub = one(
            r#"{"RecordType":"SubscriptionChange","Recipient":"a@x.example","SuppressSending":false,"ChangedAt":"2022-06-05T17:17:32Z"}"#,
        );
        assert_eq!(resub.event_type, EventType::Subscribed);
        assert_ne!(unsub.event_id, resub.event_id);
        let open = one(
            r#"{"RecordType":"Open","Recipient":"a@x.example","Geo":{},"ReceivedAt":"2017-10-25T15:21:11.9065619Z"}"#,
        );
        assert_eq!(open.geo, None);
        assert_eq!(open.occurred_at, 1_508_944_871_906);
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            failure(Provider::Postmark, r#"[{"RecordType":"Open"}]"#),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(Provider::Postmark, r#"{"Recipient":"a@x"}"#),
            ParseFailure::MissingField
        );
        assert_eq!(
            failure(
                Provider::Postmark,
                r#"{"RecordType":"Open","ReceivedAt":"yesterday"}"#
            ),
            ParseFailure::InvalidField
        );
    }
}
