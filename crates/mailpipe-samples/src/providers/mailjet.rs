//! Mailjet Event API: one JSON object per event (version 1) or an array of the last
//! second's events (version 2, grouped); authenticated by the Basic credentials of the
//! callback URL (see `providers::render`).

use mailpipe_model::EventType;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{json_body, no_extra_headers, no_request_id, Render, Sampler, Shape};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "sent", event_type: EventType::Delivered },
    Kind { name: "open", event_type: EventType::Opened },
    Kind { name: "click", event_type: EventType::Clicked },
    Kind { name: "bounce/hard", event_type: EventType::Bounced },
    Kind { name: "bounce/soft", event_type: EventType::Bounced },
    Kind { name: "bounce/greylisted", event_type: EventType::Deferred },
    Kind { name: "blocked", event_type: EventType::Rejected },
    Kind { name: "spam", event_type: EventType::Complained },
    Kind { name: "unsub", event_type: EventType::Unsubscribed },
];

/// Half the requests are grouped (version 2).
pub(crate) const SHAPE: Shape = Shape {
    max_batch: 8,
    array_chance: 0.5,
    fan_out: &[],
};

/// (`MessageID`, `MessageID`): a 64-bit integer beyond 2^53, Mailjet's only per-message id.
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    let id = rng
        .between(100_000_000_000_000_000, 999_999_999_999_999_999)
        .to_string();
    (id.clone(), id)
}

pub(crate) const SAMPLER: Sampler = Sampler::new(
    KINDS,
    SHAPE,
    ids,
    no_request_id,
    Render::Credentials(body, no_extra_headers),
);

pub(crate) fn body(batch: &Batch) -> Vec<u8> {
    json_body(batch, batch.events.iter().map(event).collect())
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let (name, detail) = e.kind.name.split_once('/').unwrap_or((e.kind.name, ""));
    let message_id: u64 = e.message_id.parse().unwrap_or_default();
    let mut o = json!({
        "event": name,
        "time": e.occurred_at_ms / 1000,
        "MessageID": message_id,
        "Message_GUID": rng.uuid(),
        "email": e.recipient,
        "mj_campaign_id": rng.between(1000, 9999),
        "mj_contact_id": rng.between(100_000, 999_999),
        "customcampaign": e.campaign.unwrap_or(""),
        "CustomID": format!("order-{}", rng.between(10_000, 99_999)),
        "Payload": json!({"customer_id": format!("C-{}", rng.between(1000, 9999))}).to_string(),
    });
    match (name, detail) {
        ("sent", _) => {
            o["mj_message_id"] = e.message_id.clone().into();
            o["smtp_reply"] = fake::SMTP_OK.into();
        }
        ("bounce", kind) => {
            let (hard, error) = match kind {
                "hard" => (true, "user unknown"),
                "soft" => (false, "quota exceeded"),
                _ => (false, "greylisted"),
            };
            o["blocked"] = false.into();
            o["hard_bounce"] = hard.into();
            o["error_related_to"] = "recipient".into();
            o["error"] = error.into();
        }
        ("blocked", _) => {
            o["error_related_to"] = "recipient".into();
            o["error"] = "preblocked".into();
        }
        ("open" | "click" | "unsub", _) => {
            let (country, _, _) = rng.pick(fake::COUNTRIES);
            o["ip"] = fake::ip(&mut rng).into();
            o["geo"] = country.into();
            o["agent"] = fake::user_agent(&mut rng).into();
            if name == "click" {
                o["url"] = fake::link(&mut rng).into();
            }
            if name == "unsub" {
                o["mj_list_id"] = rng.between(1, 99).into();
            }
        }
        ("spam", _) => o["source"] = "JMRPP".into(),
        _ => {}
    }
    o
}
