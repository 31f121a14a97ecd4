//! SendGrid Event Webhook: a JSON array of event objects (also for one event).
//!
//! | `event` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `processed` | queued | |
//! | `deferred` | deferred | soft |
//! | `delivered` | delivered | |
//! | `bounce`, `type: bounce` | bounced | bounced / hard |
//! | `bounce`, `type: blocked` | bounced | blocked / soft |
//! | `dropped` | rejected | from `type`, else `reason`: invalid → invalid; bounced address → bounced; unsubscribed address → unsubscribed; spam reporting address, spam content → spam; blocked → blocked; expired → timed_out; else other |
//! | `open` / `click` | opened / clicked | |
//! | `spamreport` | complained | |
//! | `unsubscribe`, `group_unsubscribe` | unsubscribed | |
//! | `group_resubscribe` | subscribed | |
//! | anything else (`account_status_change`…) | unknown | |
//!
//! - event_id: `sg_event_id` (a base64url UUID, unique across accounts); without it, the
//!   hash of (`sg_message_id`, `event`, `email`, `timestamp`, `url`).
//! - message_id: the part of `sg_message_id` before the first `.` (= the `X-Message-Id` the
//!   send API returned); for asynchronous bounces, which lack it, the local part of `smtp-id`.
//! - occurred_at: `timestamp`, Unix seconds.
//! - tags: `category` (a string or an array). metadata: custom args, which SendGrid merges
//!   into the event as top-level keys — every key not in [`KNOWN_FIELDS`].
//! - campaign: `marketing_campaign_id`, else `singlesend_id`.
//! - mta_response: `response` (delivered, deferred) or `reason` (bounce); description:
//!   `reason` (dropped).

use mailpipe_model::{BounceClass, EmailEvent, EventType, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Object, Shape};
use crate::timestamp;

/// Fields SendGrid itself sets; any other top-level key is a custom arg (metadata). The
/// list includes newer fields seen in real payloads so they are not mistaken for metadata.
/// Sorted, for binary search (a test checks).
#[rustfmt::skip]
const KNOWN_FIELDS: &[&str] = &[
    "asm_group_id", "attempt", "bounce_classification", "category", "cert_err", "email",
    "event", "ip", "marketing_campaign_id", "marketing_campaign_name",
    "marketing_campaign_split_id", "marketing_campaign_version", "mc_stats", "newsletter",
    "nlvx_campaign_id", "nlvx_campaign_split_id", "nlvx_user_id", "phase_id", "pool",
    "post_type", "reason", "response", "send_at", "sg_content_type", "sg_event_id",
    "sg_machine_open", "sg_message_id", "sg_template_id", "sg_template_name", "singlesend_id",
    "singlesend_name", "smtp-id", "status", "template_id", "timestamp", "tls", "type", "url",
    "url_offset", "useragent",
];

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    json::events(text, Shape::Array, "body")?
        .into_iter()
        .map(|raw| event(input, raw.raw, &raw.object))
        .collect()
}

fn event(input: &ParseInput<'_>, raw: &str, o: &Object) -> Result<EmailEvent, ParseError> {
    let name = o.required_str("event")?;
    let mut e = new_event(input, Provider::Sendgrid, name, raw);
    if let Some(at) = o.get("timestamp") {
        e.occurred_at = timestamp::seconds(at, "timestamp")?;
    }
    e.recipient = o.str_of("email").map(str::to_string);
    e.message_id = message_id(o);
    e.url = o.str_of("url").map(str::to_string);
    e.user_agent = o.str_of("useragent").map(str::to_string);
    e.ip = o.str_of("ip").map(str::to_string);
    e.tags = json::string_list(o.get("category"));
    e.campaign_id = o
        .text_of("marketing_campaign_id")
        .or_else(|| o.text_of("singlesend_id"));
    e.metadata = json::metadata(
        o.members()
            .filter(|(k, _)| KNOWN_FIELDS.binary_search(k).is_err()),
    );

    let reason = o.str_of("reason").map(str::to_string);
    match name {
        "processed" => e.event_type = EventType::Queued,
        "deferred" => {
            e.event_type = EventType::Deferred;
            e.bounce_class = Some(BounceClass::Soft);
            e.mta_response = o.str_of("response").map(str::to_string).or(reason);
        }
        "delivered" => {
            e.event_type = EventType::Delivered;
            e.mta_response = o.str_of("response").map(str::to_string);
        }
        "bounce" => {
            e.event_type = EventType::Bounced;
            let blocked = o
                .str_of("type")
                .is_some_and(|t| t.eq_ignore_ascii_case("blocked"));
            (e.reject_reason, e.bounce_class) = if blocked {
                (Some(RejectReason::Blocked), Some(BounceClass::Soft))
            } else {
                (Some(RejectReason::Bounced), Some(BounceClass::Hard))
            };
            e.mta_response = reason;
        }
        "dropped" => {
            e.event_type = EventType::Rejected;
            let why = o.str_of("type").or(o.str_of("reason")).unwrap_or("");
            e.reject_reason = Some(dropped_reason(why));
            e.description = reason;
        }
        "open" => {
            e.event_type = EventType::Opened;
            // Apple Mail Privacy Protection and similar prefetches, as SendGrid judges them.
            e.machine_open = o.bool_of("sg_machine_open");
        }
        "click" => e.event_type = EventType::Clicked,
        "spamreport" => e.event_type = EventType::Complained,
        "unsubscribe" | "group_unsubscribe" => e.event_type = EventType::Unsubscribed,
        "group_resubscribe" => e.event_type = EventType::Subscribed,
        _ => e.event_type = EventType::Unknown,
    }

    e.event_id = match o.str_of("sg_event_id") {
        Some(id) => id.to_string(),
        None => hashed(
            Provider::Sendgrid,
            input.source,
            &[
                o.str_of("sg_message_id"),
                Some(name),
                e.recipient.as_deref(),
                o.text_of("timestamp").as_deref(),
                e.url.as_deref(),
            ],
        ),
    };
    Ok(e)
}

fn message_id(o: &Object) -> Option<String> {
    if let Some(id) = o.str_of("sg_message_id") {
        return Some(id.split('.').next().unwrap_or(id).to_string());
    }
    let smtp_id = o
        .str_of("smtp-id")?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let local = smtp_id.split('@').next().unwrap_or(smtp_id);
    (!local.is_empty()).then(|| local.to_string())
}

/// The documented `dropped` reasons (and `type` values) onto the taxonomy.
fn dropped_reason(why: &str) -> RejectReason {
    match why.trim().to_ascii_lowercase().as_str() {
        "invalid" => RejectReason::Invalid,
        "bounce" | "bounced address" => RejectReason::Bounced,
        "unsubscribed address" => RejectReason::Unsubscribed,
        "spam reporting address" | "spam content" => RejectReason::Spam,
        "blocked" => RejectReason::Blocked,
        "expired" => RejectReason::TimedOut,
        _ => RejectReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{events, failure};
    use crate::ParseFailure;

    #[test]
    fn bounce_types_and_dropped_reasons() {
        let body = r#"[
          {"event":"bounce","type":"bounce","email":"a@x.example","timestamp":1600000000,"sg_event_id":"e1","reason":"550 no such user"},
          {"event":"bounce","type":"blocked","email":"a@x.example","timestamp":1600000001,"sg_event_id":"e2"},
          {"event":"dropped","reason":"Bounced Address","email":"a@x.example","timestamp":1600000002,"sg_event_id":"e3"},
          {"event":"dropped","reason":"Spam Reporting Address","email":"a@x.example","sg_event_id":"e4"},
          {"event":"dropped","reason":"Invalid SMTPAPI header","email":"a@x.example","sg_event_id":"e5"}]"#;
        let e = events(Provider::Sendgrid, body);
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
                    EventType::Bounced,
                    Some(RejectReason::Blocked),
                    Some(BounceClass::Soft)
                ),
                (EventType::Rejected, Some(RejectReason::Bounced), None),
                (EventType::Rejected, Some(RejectReason::Spam), None),
                (EventType::Rejected, Some(RejectReason::Other), None),
            ]
        );
        assert_eq!(e[0].mta_response.as_deref(), Some("550 no such user"));
        assert_eq!(e[0].occurred_at, 1_600_000_000_000);
        assert_eq!(
            e[3].occurred_at,
            crate::draft::UNKNOWN_TIME,
            "no timestamp: unknown, never the time of receipt"
        );
    }

    #[test]
    fn categories_custom_args_and_message_ids() {
        let body = r#"[{"event":"open","email":"A@X.example","sg_event_id":"e1","category":"news",
            "sg_message_id":"abc.filter-1.0","user_id":42,"plan":"pro","sg_machine_open":true},
            {"event":"bounce","email":"a@x.example","category":["c1","c2"],"smtp-id":"<xyz@host>"}]"#;
        let e = events(Provider::Sendgrid, body);
        assert_eq!(e[0].tags, vec!["news"]);
        assert_eq!(e[0].message_id.as_deref(), Some("abc"));
        assert_eq!(e[0].metadata.len(), 2, "{:?}", e[0].metadata);
        assert_eq!(e[0].metadata["user_id"], "42");
        assert_eq!(e[0].recipient.as_deref(), Some("a@x.example"));
        assert_eq!(e[1].tags, vec!["c1", "c2"]);
        assert_eq!(e[1].message_id.as_deref(), Some("xyz"));
        assert_eq!(e[1].event_id.len(), 64, "hashed without sg_event_id");
    }

    #[test]
    fn known_fields_are_sorted_for_binary_search() {
        assert!(KNOWN_FIELDS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            failure(Provider::Sendgrid, r#"{"event":"open"}"#),
            ParseFailure::WrongShape
        );
        assert_eq!(
            failure(Provider::Sendgrid, r#"[{"email":"a@x"}]"#),
            ParseFailure::MissingField
        );
        assert_eq!(
            failure(
                Provider::Sendgrid,
                r#"[{"event":"open","timestamp":"soon"}]"#
            ),
            ParseFailure::InvalidField
        );
        assert!(events(Provider::Sendgrid, "[]").is_empty());
    }
}
