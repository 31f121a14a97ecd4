//! Amazon SES through SNS: an SNS envelope whose `Message` is the SES event as a JSON
//! string (or, with raw message delivery, the SES event itself). Both SES formats are
//! read: event publishing (`eventType`) and identity notifications (`notificationType`).
//! SNS `SubscriptionConfirmation` / `UnsubscribeConfirmation` and SES's topic-validation
//! message are control traffic: no events, not an error.
//!
//! One event per recipient: `bouncedRecipients`, `complainedRecipients`,
//! `delivery.recipients`, `delayedRecipients`, else `mail.destination`.
//!
//! | SES type | event_type | reject_reason / bounce_class |
//! |---|---|---|
//! | `Send` | sent | |
//! | `Reject` | rejected | blocked |
//! | `Bounce` Permanent | bounced | bounced / hard (subtype `Suppressed` → rejected, bounced; `OnAccountSuppressionList` → rejected, blocked) |
//! | `Bounce` Transient | bounced | bounced / soft (SES has stopped retrying) |
//! | `Bounce` Undetermined | bounced | other / undetermined |
//! | `Complaint` | complained (`complaintSubType: OnAccountSuppressionList` → rejected, spam) | |
//! | `Delivery` | delivered | |
//! | `DeliveryDelay` | deferred | soft |
//! | `Open` / `Click` | opened / clicked | |
//! | `Rendering Failure` | failed | |
//! | `Subscription` | unsubscribed if `unsubscribeAll` or any topic `OptOut`, else subscribed | |
//! | anything else | unknown | |
//!
//! - event_id: SNS `MessageId` is shared by the fanned-out recipients, so the hash of
//!   (`MessageId`, recipient); with raw delivery (no envelope) the hash of (SES type,
//!   `mail.messageId`, `feedbackId`, event timestamp, recipient).
//! - message_id: `mail.messageId`. occurred_at: the event object's `timestamp`, else
//!   `mail.timestamp` (Send, Reject, Rendering Failure), else the SNS `Timestamp`.
//! - tags: none; metadata: `mail.tags` (message tags, values joined with `,`) except the
//!   automatic `ses:*` ones; campaign: the metadata `campaign_id` convention only.
//! - mta_response: `diagnosticCode` / `smtpResponse`; description: bounce type and
//!   subtype, complaint feedback type, delay type, reject reason or rendering error.

use mailpipe_model::{BounceClass, EmailEvent, EventType, Provider, RejectReason};

use crate::draft::new_event;
use crate::error::ParseError;
use crate::event_id::hashed;
use crate::input::ParseInput;
use crate::json::{self, Json, Object, Shape};
use crate::timestamp;

/// What SES publishes once when an SNS topic is attached as an event destination.
const VALIDATION_MESSAGE: &str =
    "Successfully validated SNS topic for Amazon SES event publishing.";

pub(crate) fn parse(input: &ParseInput<'_>) -> Result<Vec<EmailEvent>, ParseError> {
    let text = json::utf8(input.body, "body")?;
    let body = json::events(text, Shape::Object, "body")?.remove(0);
    let o = &body.object;
    if o.get("Type").is_none()
        && (o.contains_key("eventType") || o.contains_key("notificationType"))
    {
        return ses_event(input, body.raw, o, None, None);
    }
    match o.required_str("Type")? {
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => Ok(Vec::new()),
        "Notification" => {
            let message = o.required_str("Message")?.trim();
            if message == VALIDATION_MESSAGE {
                return Ok(Vec::new());
            }
            let event = json::object(message, "SNS Message")?;
            let sns_id = o.required_str("MessageId")?;
            ses_event(
                input,
                event.raw,
                &event.object,
                Some(sns_id),
                o.str_of("Timestamp"),
            )
        }
        other => Err(ParseError::invalid(
            "Type",
            format!("unknown SNS message type {other:?}"),
        )),
    }
}

fn ses_event(
    input: &ParseInput<'_>,
    raw: &str,
    o: &Object,
    sns_id: Option<&str>,
    sns_time: Option<&str>,
) -> Result<Vec<EmailEvent>, ParseError> {
    let name = match o.get("eventType") {
        Some(_) => o.required_str("eventType")?,
        None => o.required_str("notificationType")?,
    };
    let empty = Object::default();
    let mail = o.object_of("mail").unwrap_or(&empty);
    // The event object is named after the type in lowerCamelCase; Rendering Failure's is `failure`.
    let detail_key = match name {
        "Rendering Failure" => "failure".to_string(),
        _ => name.get(..1).unwrap_or("").to_ascii_lowercase() + name.get(1..).unwrap_or(""),
    };
    let detail = o.object_of(&detail_key).unwrap_or(&empty);

    let event_time = detail.str_of("timestamp");
    let occurred_at = match (event_time, mail.str_of("timestamp"), sns_time) {
        (Some(t), _, _) => Some(timestamp::text(t, &format!("{detail_key}.timestamp"))?),
        (None, Some(t), _) if matches!(name, "Send" | "Reject" | "Rendering Failure") => {
            Some(timestamp::text(t, "mail.timestamp")?)
        }
        (None, _, Some(t)) => Some(timestamp::text(t, "Timestamp")?),
        _ => None,
    };

    let (event_type, reject_reason, bounce_class) = classify(name, detail);
    let description = match name {
        "Bounce" => Some(format!(
            "{}: {}",
            detail.str_of("bounceType").unwrap_or("?"),
            detail.str_of("bounceSubType").unwrap_or("?")
        )),
        "Complaint" => detail.str_of("complaintFeedbackType").map(str::to_string),
        "DeliveryDelay" => detail.str_of("delayType").map(str::to_string),
        "Reject" => detail.str_of("reason").map(str::to_string),
        "Rendering Failure" => detail.str_of("errorMessage").map(str::to_string),
        _ => None,
    };
    let metadata: std::collections::BTreeMap<String, String> = mail
        .object_of("tags")
        .into_iter()
        .flat_map(Object::members)
        .filter(|(name, _)| !name.starts_with("ses:"))
        .map(|(name, values)| (name.to_string(), json::string_list(Some(values)).join(",")))
        .collect();

    let mut events = Vec::new();
    for (recipient, mta_response) in recipients(name, detail, mail) {
        let mut e = new_event(input, Provider::Ses, name, raw);
        (e.event_type, e.reject_reason, e.bounce_class) = (event_type, reject_reason, bounce_class);
        e.occurred_at = occurred_at.unwrap_or(crate::draft::UNKNOWN_TIME);
        e.recipient = recipient.clone();
        e.message_id = mail.str_of("messageId").map(str::to_string);
        e.metadata = metadata.clone();
        e.mta_response = mta_response.or_else(|| detail.str_of("smtpResponse").map(str::to_string));
        e.description = description.clone();
        e.ip = detail.str_of("ipAddress").map(str::to_string);
        e.user_agent = detail.str_of("userAgent").map(str::to_string);
        e.url = detail.str_of("link").map(str::to_string);
        let recipient = crate::draft::address(recipient.as_deref().unwrap_or(""));
        e.event_id = match sns_id {
            Some(id) => hashed(
                Provider::Ses,
                input.source,
                &[Some(id), recipient.as_deref()],
            ),
            None => hashed(
                Provider::Ses,
                input.source,
                &[
                    Some(name),
                    e.message_id.as_deref(),
                    detail.str_of("feedbackId"),
                    event_time,
                    recipient.as_deref(),
                ],
            ),
        };
        events.push(e);
    }
    Ok(events)
}

fn classify(name: &str, detail: &Object) -> (EventType, Option<RejectReason>, Option<BounceClass>) {
    use EventType::*;
    match name {
        "Send" => (Sent, None, None),
        "Reject" => (Rejected, Some(RejectReason::Blocked), None),
        "Bounce" => match (detail.str_of("bounceType"), detail.str_of("bounceSubType")) {
            (_, Some("Suppressed")) => (Rejected, Some(RejectReason::Bounced), None),
            (_, Some("OnAccountSuppressionList")) => (Rejected, Some(RejectReason::Blocked), None),
            (Some("Permanent"), _) => (
                Bounced,
                Some(RejectReason::Bounced),
                Some(BounceClass::Hard),
            ),
            (Some("Transient"), _) => (
                Bounced,
                Some(RejectReason::Bounced),
                Some(BounceClass::Soft),
            ),
            _ => (
                Bounced,
                Some(RejectReason::Other),
                Some(BounceClass::Undetermined),
            ),
        },
        "Complaint" if detail.str_of("complaintSubType") == Some("OnAccountSuppressionList") => {
            (Rejected, Some(RejectReason::Spam), None)
        }
        "Complaint" => (Complained, None, None),
        "Delivery" => (Delivered, None, None),
        "DeliveryDelay" => (Deferred, None, Some(BounceClass::Soft)),
        "Open" => (Opened, None, None),
        "Click" => (Clicked, None, None),
        "Rendering Failure" => (Failed, None, None),
        "Subscription" => {
            let prefs = detail.object_of("newTopicPreferences");
            let all = prefs.and_then(|p| p.bool_of("unsubscribeAll")) == Some(true);
            let any_topic = prefs
                .and_then(|p| p.array_of("topicSubscriptionStatus"))
                .is_some_and(|topics| {
                    topics.iter().any(|t| {
                        t.get("subscriptionStatus").and_then(Json::as_str) == Some("OptOut")
                    })
                });
            if all || any_topic {
                (Unsubscribed, None, None)
            } else {
                (Subscribed, None, None)
            }
        }
        _ => (Unknown, None, None),
    }
}

/// The recipients an event is about, each with its own SMTP diagnostic where SES gives
/// one. Never empty: an event naming nobody still becomes one event (recipient `None`).
fn recipients(name: &str, detail: &Object, mail: &Object) -> Vec<(Option<String>, Option<String>)> {
    let list_key = match name {
        "Bounce" => "bouncedRecipients",
        "Complaint" => "complainedRecipients",
        "Delivery" => "recipients",
        "DeliveryDelay" => "delayedRecipients",
        _ => "",
    };
    let from_list: Vec<_> = detail
        .array_of(list_key)
        .into_iter()
        .flatten()
        .filter_map(|r| match r {
            Json::String(address) => Some((Some(address.to_string()), None)),
            Json::Object(r) => Some((
                r.str_of("emailAddress").map(str::to_string),
                r.str_of("diagnosticCode").map(str::to_string),
            )),
            _ => None,
        })
        .collect();
    if !from_list.is_empty() {
        return from_list;
    }
    let destination: Vec<_> = json::string_list(mail.get("destination"))
        .into_iter()
        .map(|d| (Some(d), None))
        .collect();
    if destination.is_empty() {
        vec![(None, None)]
    } else {
        destination
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::test_support::{events, failure};
    use crate::ParseFailure;

    fn notification(message: &Value) -> String {
        serde_json::json!({"Type": "Notification", "MessageId": "sns-1", "Timestamp": "2018-03-26T17:58:59.675Z",
            "Message": message.to_string()})
        .to_string()
    }

    #[test]
    fn one_event_per_recipient_with_distinct_stable_ids() {
        let bounce = serde_json::json!({"notificationType": "Bounce",
            "bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull", "timestamp": "2016-01-27T14:59:44.101Z",
                "bouncedRecipients": [{"emailAddress": "A@x.example", "diagnosticCode": "552 full"}, {"emailAddress": "b@x.example"}]},
            "mail": {"messageId": "m1", "destination": ["a@x.example", "b@x.example", "c@x.example"]}});
        let e = events(Provider::Ses, &notification(&bounce));
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].event_type, e[0].bounce_class),
            (EventType::Bounced, Some(BounceClass::Soft))
        );
        assert_eq!(e[0].recipient.as_deref(), Some("a@x.example"));
        assert_eq!(e[0].mta_response.as_deref(), Some("552 full"));
        assert_eq!(e[0].description.as_deref(), Some("Transient: MailboxFull"));
        assert_eq!(e[0].occurred_at, 1_453_906_784_101);
        assert_ne!(e[0].event_id, e[1].event_id);
        assert_eq!(e, events(Provider::Ses, &notification(&bounce)));
        let open = serde_json::json!({"eventType": "Open", "open": {"ipAddress": "192.0.2.1", "userAgent": "UA"},
            "mail": {"messageId": "m1", "destination": ["a@x.example", "b@x.example"]}});
        let opens = events(Provider::Ses, &notification(&open));
        assert_eq!(opens.len(), 2, "SES cannot say who opened");
        assert_eq!(
            opens[0].occurred_at, 1_522_087_139_675,
            "SNS Timestamp when the event has none"
        );
    }

    #[test]
    fn control_messages_and_raw_delivery() {
        let confirm = r#"{"Type":"SubscriptionConfirmation","MessageId":"x","Message":"You have chosen to subscribe","Token":"t"}"#;
        assert!(events(Provider::Ses, confirm).is_empty());
        let validation = serde_json::json!({"Type": "Notification", "MessageId": "v", "Message": VALIDATION_MESSAGE}).to_string();
        assert!(events(Provider::Ses, &validation).is_empty());
        let raw = r#"{"eventType":"Send","send":{},"mail":{"messageId":"m2","timestamp":"2017-08-05T00:40:02.012Z","destination":["d@x.example"],
            "tags":{"ses:configuration-set":["cs"],"campaign_id":["spring"]}}}"#;
        let e = events(Provider::Ses, raw);
        assert_eq!(
            (e[0].event_type, e[0].occurred_at),
            (EventType::Sent, 1_501_893_602_012)
        );
        assert_eq!(e[0].campaign_id.as_deref(), Some("spring"));
        assert_eq!(e[0].metadata.len(), 1);
    }

    #[test]
    fn shape_errors() {
        let prose =
            serde_json::json!({"Type": "Notification", "MessageId": "v", "Message": "hello"})
                .to_string();
        assert_eq!(failure(Provider::Ses, &prose), ParseFailure::NotJson);
        assert_eq!(
            failure(Provider::Ses, r#"{"Type":"Notification","MessageId":"v"}"#),
            ParseFailure::MissingField
        );
        assert_eq!(
            failure(Provider::Ses, r#"{"Type":"Surprise"}"#),
            ParseFailure::InvalidField
        );
        assert_eq!(
            failure(
                Provider::Ses,
                r#"{"Type":"Notification","MessageId":"v","Message":"{\"mail\":{}}"}"#
            ),
            ParseFailure::MissingField
        );
    }
}
