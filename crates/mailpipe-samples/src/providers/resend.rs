//! Resend: one JSON object `{"type", "created_at", "data"}` per event, delivered by Svix
//! with Standard Webhooks headers (`svix-id` = the event id, `svix-timestamp`,
//! `svix-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`).

use mailpipe_model::EventType;
use mailpipe_verify_core::sign;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{json_headers, no_request_id, truncated, Render, Sampler, SINGLE};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "email.scheduled", event_type: EventType::Queued },
    Kind { name: "email.sent", event_type: EventType::Sent },
    Kind { name: "email.delivered", event_type: EventType::Delivered },
    Kind { name: "email.opened", event_type: EventType::Opened },
    Kind { name: "email.clicked", event_type: EventType::Clicked },
    Kind { name: "email.delivery_delayed", event_type: EventType::Deferred },
    Kind { name: "email.bounced", event_type: EventType::Bounced },
    Kind { name: "email.suppressed", event_type: EventType::Rejected },
    Kind { name: "email.failed", event_type: EventType::Failed },
    Kind { name: "email.complained", event_type: EventType::Complained },
];

/// (`svix-id`, `data.email_id`).
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    (format!("msg_{}", rng.base62(27)), rng.uuid())
}

pub(crate) const SAMPLER: Sampler = Sampler::new(
    KINDS,
    SINGLE,
    ids,
    no_request_id,
    Render::StandardWebhooks(render),
);

pub(crate) fn render(batch: &Batch, key: &[u8], signing: &Signing) -> Rendered {
    let Some(e) = batch.events.first() else {
        return Rendered {
            headers: json_headers(),
            body: Vec::new(),
        };
    };
    let body = serde_json::to_vec(&event(e)).expect("JSON values serialize");
    let body = if signing.malformed {
        truncated(&body)
    } else {
        body
    };
    let timestamp = signing.signed_at.to_string();
    let key = if signing.forged {
        key.iter().map(|b| b ^ 0x55).collect()
    } else {
        key.to_vec()
    };
    let signature = sign::standard_webhooks_signature(&key, &e.id, &timestamp, &body);
    let mut headers = json_headers();
    headers.push(("svix-id".into(), e.id.clone()));
    headers.push(("svix-timestamp".into(), timestamp));
    headers.push(("svix-signature".into(), signature));
    Rendered { headers, body }
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let name = e.kind.name;
    let mut data = json!({
        "created_at": fake::rfc3339_millis(e.occurred_at_ms - rng.between(500, 60_000) as i64),
        "email_id": e.message_id,
        "from": format!("Shop <shop@{}>", fake::sender_domain()),
        "to": [e.recipient],
        "subject": fake::subject(&mut rng),
        "tags": {"category": fake::tag(&mut rng)},
    });
    if let Some(campaign) = e.campaign {
        data["broadcast_id"] = campaign.into();
    }
    match name {
        "email.bounced" => {
            data["bounce"] = json!({"type": "Permanent", "subType": "General",
                "message": "The recipient's email provider sent a hard bounce message."});
        }
        "email.suppressed" => {
            data["suppressed"] = json!({"type": "bounce",
                "message": "The recipient is on the suppression list because of a previous bounce."});
        }
        "email.failed" => {
            data["failed"] = json!({"reason": "reached_daily_quota"});
        }
        "email.clicked" => {
            data["click"] = json!({"ipAddress": fake::ip(&mut rng), "link": fake::link(&mut rng),
                "timestamp": fake::rfc3339_millis(e.occurred_at_ms),
                "userAgent": fake::user_agent(&mut rng)});
        }
        _ => {}
    }
    json!({"type": name, "created_at": fake::rfc3339_millis(e.occurred_at_ms), "data": data})
}
