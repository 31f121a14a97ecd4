//! Postal: one JSON object `{"event", "timestamp", "payload", "uuid"}` per event, signed
//! with the server's RSA key over the raw body: `X-Postal-Signature-256` (SHA-256) and the
//! legacy `X-Postal-Signature` (SHA-1), both base64.

use mailpipe_model::EventType;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{
    json_headers, no_request_id, rsa_signature, truncated, Render, Sampler, SINGLE,
};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "MessageHeld", event_type: EventType::Queued },
    Kind { name: "MessageSent", event_type: EventType::Delivered },
    Kind { name: "MessageLoaded", event_type: EventType::Opened },
    Kind { name: "MessageLinkClicked", event_type: EventType::Clicked },
    Kind { name: "MessageDelayed", event_type: EventType::Deferred },
    Kind { name: "MessageDeliveryFailed", event_type: EventType::Bounced },
    Kind { name: "MessageBounced", event_type: EventType::Bounced },
];

/// (`uuid`, Postal's integer message id).
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    (
        rng.uuid(),
        rng.between(1_000_000, 9_999_999_999).to_string(),
    )
}

pub(crate) const SAMPLER: Sampler =
    Sampler::new(KINDS, SINGLE, ids, no_request_id, Render::Rsa(render));

pub(crate) fn render(batch: &Batch, key: &rsa::RsaPrivateKey, signing: &Signing) -> Rendered {
    let body = batch.events.first().map(event).unwrap_or_default();
    let body = serde_json::to_vec(&body).expect("JSON values serialize");
    let body = if signing.malformed {
        truncated(&body)
    } else {
        body
    };
    let mut rng = Rng::new(batch.seed);
    let mut headers = json_headers();
    headers.push(("user-agent".into(), "Postal".into()));
    headers.push((
        "x-postal-signature-256".into(),
        rsa_signature(key, &body, true, signing.forged, &mut rng),
    ));
    headers.push((
        "x-postal-signature".into(),
        rsa_signature(key, &body, false, signing.forged, &mut rng),
    ));
    Rendered { headers, body }
}

fn message(e: &PlannedEvent, rng: &mut Rng) -> serde_json::Value {
    json!({
        "id": e.message_id.parse::<u64>().unwrap_or_default(),
        "token": rng.base62(12),
        "direction": "outgoing",
        "message_id": format!("{}@rp.postal.example.com", rng.uuid()),
        "to": e.recipient,
        "from": format!("shop@{}", fake::sender_domain()),
        "subject": fake::subject(rng),
        "timestamp": fake::float_seconds(e.occurred_at_ms - rng.between(1_000, 60_000) as i64, rng.below(1000)),
        "spam_status": "NotChecked",
        "tag": fake::tag(rng),
    })
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let name = e.kind.name;
    let at = fake::float_seconds(e.occurred_at_ms, rng.below(1000));
    let msg = message(e, &mut rng);
    let delivery = |status: &str, details: String, output: &str, rng: &mut Rng| {
        json!({"message": msg, "status": status, "details": details, "output": format!("{output}\n"),
               "sent_with_ssl": true, "timestamp": at, "time": rng.between(10, 2000) as f64 / 1000.0})
    };
    let domain = e.recipient.rsplit_once('@').map_or("", |(_, d)| d);
    let payload = match name {
        "MessageSent" => delivery(
            "Sent",
            format!("Message for {} accepted by mx.{domain}", e.recipient),
            fake::SMTP_OK,
            &mut rng,
        ),
        "MessageDelayed" => delivery(
            "SoftFail",
            format!("Temporary failure delivering to mx.{domain}; will retry"),
            fake::SMTP_TRY_LATER,
            &mut rng,
        ),
        "MessageDeliveryFailed" => delivery(
            "HardFail",
            format!("Permanent failure delivering to mx.{domain}"),
            fake::SMTP_UNKNOWN_USER,
            &mut rng,
        ),
        "MessageHeld" => json!({"message": msg, "status": "Held",
            "details": "Credential is configured to hold all messages", "output": null,
            "sent_with_ssl": false, "timestamp": at, "time": null}),
        "MessageBounced" => {
            let bounce = json!({
                "id": rng.between(1_000_000, 9_999_999_999), "token": rng.base62(12),
                "direction": "incoming", "message_id": format!("{}@mx.{domain}", rng.uuid()),
                "to": format!("bounces@{}", fake::sender_domain()),
                "from": format!("MAILER-DAEMON@mx.{domain}"),
                "subject": "Undelivered Mail Returned to Sender", "timestamp": at,
                "spam_status": "NotSpam", "tag": null,
            });
            json!({"original_message": msg, "bounce": bounce})
        }
        "MessageLinkClicked" => json!({"url": fake::link(&mut rng), "token": rng.base62(8),
            "ip_address": fake::ip(&mut rng), "user_agent": fake::user_agent(&mut rng),
            "message": msg}),
        _ => json!({"ip_address": fake::ip(&mut rng), "user_agent": fake::user_agent(&mut rng),
            "message": msg}),
    };
    json!({"event": name, "timestamp": at, "payload": payload, "uuid": e.id})
}
