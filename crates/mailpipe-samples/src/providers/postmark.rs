//! Postmark: one JSON object per event, discriminated by `RecordType`; authenticated by
//! the Basic credentials of the webhook URL (see `providers::render`).

use mailpipe_model::EventType;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{no_extra_headers, no_request_id, Render, Sampler, SINGLE};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "Delivery", event_type: EventType::Delivered },
    Kind { name: "Open", event_type: EventType::Opened },
    Kind { name: "Click", event_type: EventType::Clicked },
    Kind { name: "Bounce/HardBounce", event_type: EventType::Bounced },
    Kind { name: "Bounce/SoftBounce", event_type: EventType::Bounced },
    Kind { name: "Bounce/Transient", event_type: EventType::Deferred },
    Kind { name: "Bounce/BadEmailAddress", event_type: EventType::Rejected },
    Kind { name: "Bounce/AutoResponder", event_type: EventType::Autoresponded },
    Kind { name: "SpamComplaint", event_type: EventType::Complained },
    Kind { name: "SubscriptionChange/unsubscribe", event_type: EventType::Unsubscribed },
    Kind { name: "SubscriptionChange/resubscribe", event_type: EventType::Subscribed },
];

/// (MessageID, MessageID): Postmark has no event id of its own but a message id per send.
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    let id = rng.uuid();
    (id.clone(), id)
}

pub(crate) const SAMPLER: Sampler = Sampler::new(
    KINDS,
    SINGLE,
    ids,
    no_request_id,
    Render::Credentials(body, no_extra_headers),
);

pub(crate) fn body(batch: &Batch) -> Vec<u8> {
    let record = batch.events.first().map(record).unwrap_or_default();
    serde_json::to_vec(&record).expect("JSON values serialize")
}

/// Bounce `Type`, `TypeCode`, `Name`, `Description`.
fn bounce_type(detail: &str) -> (u64, &'static str, &'static str) {
    match detail {
        "HardBounce" => (1, "Hard bounce", "The server was unable to deliver your message (ex: unknown user, mailbox not found)."),
        "SoftBounce" => (4096, "Soft bounce", "Unable to temporarily deliver this message."),
        "Transient" => (2, "Message delayed", "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles)."),
        "BadEmailAddress" => (100000, "Invalid email address", "The address is not a valid email address."),
        "AutoResponder" => (64, "Auto responder", "Automatic email responder (ex: \"Out of Office\" or \"On Vacation\")."),
        _ => (100001, "Spam complaint", "The subscriber explicitly marked this message as spam."),
    }
}

fn record(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let (name, detail) = e.kind.name.split_once('/').unwrap_or((e.kind.name, ""));
    let at = fake::postmark_time(e.occurred_at_ms, rng.below(10_000));
    let mut metadata = json!({"customer_id": format!("C-{}", rng.between(1000, 9999))});
    if let Some(campaign) = e.campaign {
        metadata["campaign_id"] = campaign.into();
    }
    let tag = fake::tag(&mut rng);
    match name {
        "Delivery" => json!({
            "RecordType": "Delivery", "ServerId": 23, "MessageStream": "outbound",
            "MessageID": e.message_id, "Recipient": e.recipient, "Tag": tag,
            "DeliveredAt": at, "Details": format!("smtp;{}", fake::SMTP_OK),
            "Metadata": metadata,
        }),
        "Bounce" | "SpamComplaint" => {
            let (code, title, description) = bounce_type(detail);
            let kind = if name == "SpamComplaint" {
                "SpamComplaint"
            } else {
                detail
            };
            json!({
                "RecordType": name, "ID": rng.between(1_000_000, 9_999_999_999),
                "Type": kind, "TypeCode": code, "Name": title, "Tag": tag,
                "MessageID": e.message_id, "ServerID": 23, "MessageStream": "outbound",
                "Description": description, "Details": fake::SMTP_UNKNOWN_USER,
                "Email": e.recipient, "From": format!("shop@{}", fake::sender_domain()),
                "BouncedAt": at, "DumpAvailable": false, "Inactive": code == 1 || code == 100001,
                "CanActivate": true, "Subject": fake::subject(&mut rng), "Metadata": metadata,
            })
        }
        "Open" | "Click" => {
            let (country, region, city) = rng.pick(fake::COUNTRIES);
            let mut o = json!({
                "RecordType": name, "MessageStream": "outbound", "FirstOpen": true,
                "Client": {"Name": "Chrome 124.0", "Company": "Google", "Family": "Chrome"},
                "OS": {"Name": "Windows 10", "Company": "Microsoft Corporation", "Family": "Windows"},
                "Platform": "Desktop", "UserAgent": fake::user_agent(&mut rng),
                "Geo": {"CountryISOCode": country, "Country": country, "RegionISOCode": region,
                        "Region": region, "City": city, "IP": fake::ip(&mut rng)},
                "MessageID": e.message_id, "Metadata": metadata, "ReceivedAt": at,
                "Tag": tag, "Recipient": e.recipient,
            });
            if name == "Click" {
                o["ClickLocation"] = "HTML".into();
                o["OriginalLink"] = fake::link(&mut rng).into();
            }
            o
        }
        _ => {
            let unsubscribe = detail == "unsubscribe";
            json!({
                "RecordType": "SubscriptionChange", "MessageID": e.message_id, "ServerID": 23,
                "MessageStream": "outbound", "ChangedAt": at, "Recipient": e.recipient,
                "Origin": if unsubscribe { "Recipient" } else { "Customer" },
                "SuppressSending": unsubscribe,
                "SuppressionReason": if unsubscribe { json!("ManualSuppression") } else { json!(null) },
                "Tag": tag, "Metadata": metadata,
            })
        }
    }
}
