//! Brevo (formerly Sendinblue) transactional webhooks: one JSON object per request, or an
//! array of up to 500 when the webhook was created with `batched: true`.
//!
//! | `event` | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `request` | queued (Brevo sends it even for messages it then blocks) | |
//! | `delivered` | delivered | |
//! | `hard_bounce` | bounced | bounced / hard |
//! | `soft_bounce` | bounced | bounced / soft |
//! | `invalid_email` | bounced | invalid / hard |
//! | `deferred` | deferred | soft |
//! | `blocked` | rejected | blocked |
//! | `spam`, `complaint` | complained | |
//! | `opened`, `unique_opened`, `proxy_open`, `unique_proxy_open(ed)` | opened | |
//! | `click` | clicked | |
//! | `unsubscribe`, `unsubscribed` | unsubscribed | |
//! | `error` | failed | |
//! | `list_addition` | subscribed | |
//! | anything else | unknown | |
//!
//! - event_id: Brevo has no event id (`id` is the webhook's), so the hash of
//!   (`message-id`, `event`, `email`, `ts_epoch` (else `ts_event`, `ts`), `link`).
//! - occurred_at: `ts_epoch` (milliseconds, the only reliably UTC field), else `ts_event` /
//!   `ts` (seconds; observed shifted by the account's time zone). `date` is never used.
//! - message_id: `message-id`. recipient: `email`.
//! - tags: `tags`, else `tag` (a string, or a JSON array in a string); metadata:
//!   `X-Mailin-custom` (a JSON object in a string, else kept whole under that key);
//!   campaign: `camp_id` (marketing events), else the metadata `campaign_id` convention.
//! - url: `link`; mta_response: `reason`.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Json, Object, Shape};
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
    let mut e = new_event(input, Provider::Brevo, name, raw);
    let time = [("ts_epoch", true), ("ts_event", false), ("ts", false)]
        .into_iter()
        .find_map(|(field, is_millis)| Some((field, is_millis, o.get(field)?)));
    if let Some((field, is_millis, at)) = time {
        e.occurred_at = if is_millis {
            timestamp::millis(at, field)?
        } else {
            timestamp::seconds(at, field)?
        };
    }
    e.recipient = o.str_of("email").map(str::to_string);
    e.message_id = o.str_of("message-id").map(str::to_string);
    e.tags = match (o.get("tags"), o.str_of("tag")) {
        (Some(tags), _) => json::string_list(Some(tags)),
        (None, Some(tag)) => match serde_json::from_str::<Json>(tag) {
            Ok(list @ Json::Array(_)) => json::string_list(Some(&list)),
            _ => vec![tag.to_string()],
        },
        (None, None) => Vec::new(),
    };
    if let Some(custom) = o.str_of("X-Mailin-custom") {
        e.metadata = match serde_json::from_str::<Object>(custom) {
            Ok(fields) => json::metadata(fields.members()),
            Err(_) => [("X-Mailin-custom".to_string(), custom.to_string())].into(),
        };
    }
    e.campaign_id = o.text_of("camp_id");
    e.url = o.str_of("link").map(str::to_string);
    e.ip = o.str_of("ip").map(str::to_string);
    e.user_agent = o.str_of("user_agent").map(str::to_string);
    e.mta_response = o.str_of("reason").map(|r| r.trim().to_string());

    // Brevo names proxy (machine) opens itself: Apple Mail Privacy Protection and the like.
    e.machine_open = match name {
        "proxy_open" | "unique_proxy_open" | "unique_proxy_opened" => Some(true),
        "opened" | "unique_opened" => Some(false),
        _ => None,
    };
    (e.event_type, e.reject_reason, e.bounce_class) = match name {
        "request" => (EventType::Queued, None, None),
        "delivered" => (EventType::Delivered, None, None),
        "hard_bounce" => (
            EventType::Bounced,
            Some(RejectReason::Bounced),
            Some(BounceClass::Hard),
        ),
        "soft_bounce" => (
            EventType::Bounced,
            Some(RejectReason::Bounced),
            Some(BounceClass::Soft),
        ),
        "invalid_email" => (
            EventType::Bounced,
            Some(RejectReason::Invalid),
            Some(BounceClass::Hard),
        ),
        "deferred" => (EventType::Deferred, None, Some(BounceClass::Soft)),
        "blocked" => (EventType::Rejected, Some(RejectReason::Blocked), None),
        "spam" | "complaint" => (EventType::Complained, None, None),
        "opened" | "unique_opened" | "proxy_open" | "unique_proxy_open" | "unique_proxy_opened" => {
            (EventType::Opened, None, None)
        }
        "click" => (EventType::Clicked, None, None),
        "unsubscribe" | "unsubscribed" => (EventType::Unsubscribed, None, None),
        "error" => (EventType::Failed, None, None),
        "list_addition" => (EventType::Subscribed, None, None),
        _ => (EventType::Unknown, None, None),
    };
    let time_text = time.map(|(_, _, at)| json::text(at).unwrap_or_default());
    e.event_id = hashed(
        Provider::Brevo,
        input.source,
        &[
            e.message_id.as_deref(),
            Some(name),
            crate::draft::address(e.recipient.as_deref().unwrap_or("")).as_deref(),
            time_text.as_deref(),
            e.url.as_deref(),
        ],
    );
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{events, failure};
    use crate::ParseFailure;

    #[test]
    fn single_and_batched_with_epoch_millis_preferred() {
        let one = r#"{"event":"hard_bounce","email":"a@x.example","message-id":"<m1@relay>","ts":1520331023,"ts_epoch":1520363423000,"tag":"[\"t1\",\"t2\"]","X-Mailin-custom":"{\"user\":5}"}"#;
        let e = events(Provider::Brevo, one);
        assert_eq!(
            (e[0].event_type, e[0].bounce_class),
            (EventType::Bounced, Some(BounceClass::Hard))
        );
        assert_eq!(e[0].occurred_at, 1_520_363_423_000);
        assert_eq!(e[0].tags, vec!["t1", "t2"]);
        assert_eq!(e[0].metadata["user"], "5");
        let batch = format!("[{one}, {{\"event\":\"soft_bounce\",\"email\":\"b@x.example\",\"ts_event\":1520331023}}]");
        let b = events(Provider::Brevo, &batch);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0], e[0], "a batched event is the same event");
        assert_eq!(b[1].occurred_at, 1_520_331_023_000);
        assert_eq!(b[1].bounce_class, Some(BounceClass::Soft));
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            failure(Provider::Brevo, r#"[{"email":"a@x"}]"#),
            ParseFailure::MissingField
        );
        assert_eq!(
            failure(Provider::Brevo, r#"{"event":"click","ts_epoch":"later"}"#),
            ParseFailure::InvalidField
        );
        assert_eq!(
            failure(Provider::Brevo, r#"[[]]"#),
            ParseFailure::WrongShape
        );
    }
}
