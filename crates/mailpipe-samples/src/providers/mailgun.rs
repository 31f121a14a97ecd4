//! Mailgun (current webhooks): one JSON object `{"signature": {timestamp, token,
//! signature}, "event-data": {…}}` per event; the signature is a hex HMAC-SHA256 of
//! timestamp ‖ token, carried in the body.

use mailpipe_model::EventType;
use mailpipe_verify_core::sign;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{forged_key, json_headers, Render, Sampler, SINGLE};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "accepted", event_type: EventType::Queued },
    Kind { name: "delivered", event_type: EventType::Delivered },
    Kind { name: "opened", event_type: EventType::Opened },
    Kind { name: "clicked", event_type: EventType::Clicked },
    Kind { name: "failed/permanent", event_type: EventType::Bounced },
    Kind { name: "failed/temporary", event_type: EventType::Deferred },
    Kind { name: "failed/suppress-bounce", event_type: EventType::Rejected },
    Kind { name: "rejected", event_type: EventType::Rejected },
    Kind { name: "complained", event_type: EventType::Complained },
    Kind { name: "unsubscribed", event_type: EventType::Unsubscribed },
];

/// (`event-data.id`, the Message-ID's unique part).
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    (rng.base62(22), rng.hex_upper(16))
}

pub(crate) const SAMPLER: Sampler =
    Sampler::new(KINDS, SINGLE, ids, |rng| rng.hex(50), Render::Hmac(render));

pub(crate) fn render(batch: &Batch, key: &str, signing: &Signing) -> Rendered {
    let timestamp = signing.signed_at.to_string();
    let token = &batch.request_id;
    let signature = if signing.forged {
        sign::mailgun_signature(&forged_key(key), &timestamp, token)
    } else {
        sign::mailgun_signature(key, &timestamp, token)
    };
    // Malformed: correctly signed, but event-data is not an object.
    let event_data = match batch.events.first() {
        Some(_) if signing.malformed => json!("delivered"),
        Some(e) => event(e),
        None => serde_json::Value::Null,
    };
    let body = json!({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    });
    Rendered {
        headers: json_headers(),
        body: serde_json::to_vec(&body).expect("JSON values serialize"),
    }
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let (name, detail) = e.kind.name.split_once('/').unwrap_or((e.kind.name, ""));
    let domain = e.recipient.rsplit_once('@').map_or("", |(_, d)| d);
    let sent = chrono::DateTime::from_timestamp_millis(e.occurred_at_ms)
        .unwrap_or_default()
        .format("%Y%m%d%H%M%S");
    let mut o = json!({
        "event": name,
        "id": e.id,
        "timestamp": fake::float_seconds(e.occurred_at_ms, rng.below(1000)),
        "log-level": "info",
        "recipient": e.recipient,
        "recipient-domain": domain,
        "message": {
            "headers": {
                "to": e.recipient,
                "message-id": format!("{sent}.1.{}@{}", e.message_id, fake::sender_domain()),
                "from": format!("Shop <shop@{}>", fake::sender_domain()),
                "subject": fake::subject(&mut rng),
            },
            "attachments": [],
            "size": rng.between(2_000, 40_000),
        },
        "tags": [fake::tag(&mut rng)],
        "campaigns": e.campaign.map_or(json!([]), |c| json!([{"id": c, "name": c}])),
        "user-variables": {"customer_id": format!("C-{}", rng.between(1000, 9999))},
        "flags": {"is-routed": false, "is-authenticated": true, "is-system-test": false, "is-test-mode": false},
    });
    let envelope = json!({
        "transport": "smtp",
        "sender": format!("bounces@{}", fake::sender_domain()),
        "sending-ip": fake::ip(&mut rng),
        "targets": e.recipient,
    });
    match (name, detail) {
        ("accepted", _) => {
            o["method"] = "HTTP".into();
            o["envelope"] = envelope;
        }
        ("delivered", _) => {
            o["envelope"] = envelope;
            o["delivery-status"] = json!({"tls": true, "mx-host": format!("mx.{domain}"),
                "code": 250, "description": "", "attempt-no": 1, "message": "OK",
                "certificate-verified": true, "session-seconds": 0.43});
        }
        ("failed", "permanent") => {
            o["severity"] = "permanent".into();
            o["reason"] = "bounce".into();
            o["log-level"] = "error".into();
            o["envelope"] = envelope;
            o["delivery-status"] = json!({"code": 550, "attempt-no": 1, "enhanced-code": "5.1.1",
                "message": fake::SMTP_UNKNOWN_USER, "description": ""});
        }
        ("failed", "temporary") => {
            o["severity"] = "temporary".into();
            o["reason"] = "generic".into();
            o["log-level"] = "warn".into();
            o["envelope"] = envelope;
            o["delivery-status"] = json!({"code": 421, "attempt-no": 2, "retry-seconds": 600,
                "enhanced-code": "4.7.0", "message": fake::SMTP_TRY_LATER, "description": ""});
        }
        ("failed", reason) => {
            o["severity"] = "permanent".into();
            o["reason"] = reason.into();
            o["log-level"] = "error".into();
            o["delivery-status"] = json!({"code": 605, "attempt-no": 1,
                "message": "", "description": "Not delivering to previously bounced address"});
        }
        ("rejected", _) => {
            o["log-level"] = "warn".into();
            o["reject"] = json!({"reason": "Sandbox subdomains are for test purposes only",
                "description": ""});
        }
        ("opened" | "clicked", _) => {
            let (country, region, city) = rng.pick(fake::COUNTRIES);
            o["ip"] = fake::ip(&mut rng).into();
            o["geolocation"] = json!({"country": country, "region": region, "city": city});
            o["client-info"] = json!({"client-type": "browser", "client-os": "Windows",
                "device-type": "desktop", "client-name": "Chrome",
                "user-agent": fake::user_agent(&mut rng)});
            if name == "clicked" {
                o["url"] = fake::link(&mut rng).into();
            }
        }
        _ => {}
    }
    o
}
