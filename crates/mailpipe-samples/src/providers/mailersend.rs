//! MailerSend: one JSON object `{"type": "activity.<x>", …, "data": {…}}` per event, with
//! every `/` escaped as `\/` as MailerSend writes it; `Signature` is the hex HMAC-SHA256 of
//! those raw bytes.

use mailpipe_model::EventType;
use mailpipe_verify_core::sign;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{
    forged_key, json_headers, no_request_id, truncated, Render, Sampler, SINGLE,
};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "activity.sent", event_type: EventType::Sent },
    Kind { name: "activity.delivered", event_type: EventType::Delivered },
    Kind { name: "activity.opened", event_type: EventType::Opened },
    // Sent besides `activity.opened` for a recipient's first open; unknown (as anymail) so
    // opens are not counted twice.
    Kind { name: "activity.opened_unique", event_type: EventType::Unknown },
    Kind { name: "activity.clicked", event_type: EventType::Clicked },
    Kind { name: "activity.soft_bounced", event_type: EventType::Bounced },
    Kind { name: "activity.hard_bounced", event_type: EventType::Bounced },
    Kind { name: "activity.spam_complaint", event_type: EventType::Complained },
    Kind { name: "activity.unsubscribed", event_type: EventType::Unsubscribed },
];

/// (`data.id`, `data.email.message.id`): 24-hex ObjectIds.
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    (rng.hex(24), rng.hex(24))
}

pub(crate) const SAMPLER: Sampler =
    Sampler::new(KINDS, SINGLE, ids, no_request_id, Render::Hmac(render));

pub(crate) fn render(batch: &Batch, key: &str, signing: &Signing) -> Rendered {
    let body = batch.events.first().map(event).unwrap_or_default();
    let body = serde_json::to_string(&body)
        .expect("JSON values serialize")
        .replace('/', "\\/")
        .into_bytes();
    let body = if signing.malformed {
        truncated(&body)
    } else {
        body
    };
    let key = if signing.forged {
        forged_key(key)
    } else {
        key.to_string()
    };
    let mut headers = json_headers();
    headers.push((
        "signature".into(),
        hex::encode(sign::hmac_sha256(key.as_bytes(), &[&body])),
    ));
    Rendered { headers, body }
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let activity = e.kind.name.trim_start_matches("activity.");
    let at = fake::rfc3339_micros(e.occurred_at_ms, rng.below(1000));
    let sent = fake::rfc3339_micros(
        e.occurred_at_ms - rng.between(1_000, 60_000) as i64,
        rng.below(1000),
    );
    let morph = match activity {
        "opened" | "opened_unique" => json!({"object": "open", "id": rng.hex(24),
            "created_at": at, "ip": fake::ip(&mut rng)}),
        "clicked" => json!({"object": "click", "id": rng.hex(24), "created_at": at,
            "ip": fake::ip(&mut rng), "url": fake::link(&mut rng)}),
        "soft_bounced" => json!({"object": "recipient_bounce", "reason": fake::SMTP_MAILBOX_FULL,
            "readable_reason": "Mailbox full"}),
        "hard_bounced" => json!({"object": "recipient_bounce", "reason": fake::SMTP_UNKNOWN_USER,
            "readable_reason": "Recipient does not exist"}),
        "unsubscribed" => json!({"object": "recipient_unsubscribe", "reason": "NO_LONGER_WANT",
            "readable_reason": "I no longer want to receive these emails"}),
        "spam_complaint" => {
            json!({"object": "spam_complaint", "id": rng.hex(24), "created_at": at})
        }
        _ => serde_json::Value::Null,
    };
    let status = match activity {
        "soft_bounced" | "hard_bounced" => "rejected",
        "sent" => "sent",
        _ => "delivered",
    };
    json!({
        "type": e.kind.name,
        "domain_id": rng.base62(15).to_lowercase(),
        "created_at": at,
        "webhook_id": rng.base62(15).to_lowercase(),
        "url": "https://hooks.example.com/webhooks/mailersend",
        "data": {
            "object": "activity",
            "id": e.id,
            "type": activity,
            "created_at": at,
            "email": {
                "object": "email",
                "id": rng.hex(24),
                "created_at": sent,
                "from": format!("shop@{}", fake::sender_domain()),
                "subject": fake::subject(&mut rng),
                "status": status,
                "tags": [fake::tag(&mut rng)],
                "message": {"object": "message", "id": e.message_id, "created_at": sent},
                "recipient": {"object": "recipient", "id": rng.hex(24), "email": e.recipient,
                    "created_at": sent},
            },
            "morph": morph,
            "template_id": "",
        },
    })
}
