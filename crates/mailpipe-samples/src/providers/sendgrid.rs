//! SendGrid Event Webhook: a JSON array of events (batched), signed with ECDSA P-256 over
//! timestamp ‖ body in `X-Twilio-Email-Event-Webhook-Signature` / `-Timestamp`.

use mailpipe_model::EventType;
use mailpipe_verify_core::sign;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{json_headers, no_request_id, truncated, Render, Sampler, Shape};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "processed", event_type: EventType::Queued },
    Kind { name: "delivered", event_type: EventType::Delivered },
    Kind { name: "open", event_type: EventType::Opened },
    Kind { name: "click", event_type: EventType::Clicked },
    Kind { name: "deferred", event_type: EventType::Deferred },
    Kind { name: "bounce", event_type: EventType::Bounced },
    Kind { name: "bounce/blocked", event_type: EventType::Bounced },
    Kind { name: "dropped", event_type: EventType::Rejected },
    Kind { name: "spamreport", event_type: EventType::Complained },
    Kind { name: "unsubscribe", event_type: EventType::Unsubscribed },
    Kind { name: "group_unsubscribe", event_type: EventType::Unsubscribed },
    Kind { name: "group_resubscribe", event_type: EventType::Subscribed },
];

pub(crate) const SHAPE: Shape = Shape {
    max_batch: 12,
    array_chance: 1.0,
    fan_out: &[],
};

/// (`sg_event_id`: base64url of a UUID, the message id `sg_message_id` starts with).
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    (rng.base64url(22), rng.base62(22))
}

pub(crate) const SAMPLER: Sampler =
    Sampler::new(KINDS, SHAPE, ids, no_request_id, Render::Ecdsa(render));

pub(crate) fn render(batch: &Batch, key: &p256::ecdsa::SigningKey, signing: &Signing) -> Rendered {
    let body = serde_json::to_vec(&batch.events.iter().map(event).collect::<Vec<_>>())
        .expect("JSON values serialize");
    let body = if signing.malformed {
        truncated(&body)
    } else {
        body
    };
    let timestamp = signing.signed_at.to_string();
    let signature = if signing.forged {
        // A valid signature by a key that is not the source's.
        let other = p256::ecdsa::SigningKey::from_slice(&[0x5a; 32]).expect("valid scalar");
        sign::sendgrid_signature(&other, &timestamp, &body)
    } else {
        sign::sendgrid_signature(key, &timestamp, &body)
    };
    let mut headers = json_headers();
    headers.push(("x-twilio-email-event-webhook-signature".into(), signature));
    headers.push(("x-twilio-email-event-webhook-timestamp".into(), timestamp));
    Rendered { headers, body }
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let (name, detail) = e.kind.name.split_once('/').unwrap_or((e.kind.name, ""));
    let mut o = json!({
        "email": e.recipient,
        "timestamp": e.occurred_at_ms / 1000,
        "smtp-id": format!("<{}@ismtpd0042p1mdw1.sendgrid.net>", e.message_id),
        "event": name,
        "category": [fake::tag(&mut rng)],
        "sg_event_id": e.id,
        "sg_message_id": format!("{}.recvd-{}-1-{}-8.0", e.message_id, rng.hex(10), rng.hex(8)),
        // A custom arg: SendGrid merges them into the event as top-level keys.
        "customer_id": format!("C-{}", rng.between(1000, 9999)),
    });
    if let Some(campaign) = e.campaign {
        o["marketing_campaign_id"] = campaign.into();
    }
    match name {
        "processed" => o["send_at"] = 0.into(),
        "delivered" => {
            o["response"] = fake::SMTP_OK.into();
            o["ip"] = fake::ip(&mut rng).into();
            o["tls"] = 1.into();
        }
        "deferred" => {
            o["response"] = fake::SMTP_TRY_LATER.into();
            o["attempt"] = "2".into();
        }
        "bounce" => {
            let blocked = detail == "blocked";
            o["type"] = if blocked { "blocked" } else { "bounce" }.into();
            o["reason"] = if blocked {
                fake::SMTP_BLOCKED
            } else {
                fake::SMTP_UNKNOWN_USER
            }
            .into();
            o["status"] = if blocked { "5.7.1" } else { "5.1.1" }.into();
        }
        "dropped" => {
            o["reason"] = "Bounced Address".into();
            o["status"] = "5.0.0".into();
        }
        "open" => {
            o["useragent"] = fake::user_agent(&mut rng).into();
            o["ip"] = fake::ip(&mut rng).into();
            o["sg_machine_open"] = rng.chance(0.3).into();
        }
        "click" => {
            o["useragent"] = fake::user_agent(&mut rng).into();
            o["ip"] = fake::ip(&mut rng).into();
            o["url"] = fake::link(&mut rng).into();
        }
        "group_unsubscribe" | "group_resubscribe" => {
            o["asm_group_id"] = 42.into();
            o["useragent"] = fake::user_agent(&mut rng).into();
            o["ip"] = fake::ip(&mut rng).into();
        }
        _ => {}
    }
    o
}
