//! Generic: mailpipe's own canonical JSON shape (one object or an array), HMAC-SHA256 of the
//! body in the source's `signature_header`, hex or base64 as configured.

use mailpipe_model::EventType;
use mailpipe_settings::SignatureEncoding;
use mailpipe_verify_core::sign;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{
    forged_key, json_body, json_headers, no_request_id, truncated, Render, Sampler, Shape,
};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

/// Every canonical type but `unknown`: the sender chooses the type.
#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "queued", event_type: EventType::Queued },
    Kind { name: "sent", event_type: EventType::Sent },
    Kind { name: "delivered", event_type: EventType::Delivered },
    Kind { name: "opened", event_type: EventType::Opened },
    Kind { name: "clicked", event_type: EventType::Clicked },
    Kind { name: "deferred", event_type: EventType::Deferred },
    Kind { name: "bounced", event_type: EventType::Bounced },
    Kind { name: "rejected", event_type: EventType::Rejected },
    Kind { name: "failed", event_type: EventType::Failed },
    Kind { name: "autoresponded", event_type: EventType::Autoresponded },
    Kind { name: "complained", event_type: EventType::Complained },
    Kind { name: "unsubscribed", event_type: EventType::Unsubscribed },
    Kind { name: "subscribed", event_type: EventType::Subscribed },
];

pub(crate) const SHAPE: Shape = Shape {
    max_batch: 8,
    array_chance: 0.5,
    fan_out: &[],
};

/// (`event_id`, a sender's message id).
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    (
        format!("evt_{}", rng.base32(26)),
        format!("crm-msg-{}", rng.digits(9)),
    )
}

pub(crate) const SAMPLER: Sampler = Sampler::new(
    KINDS,
    SHAPE,
    ids,
    no_request_id,
    Render::HmacInHeader(render),
);

pub(crate) fn render(
    batch: &Batch,
    key: &str,
    header: &str,
    encoding: SignatureEncoding,
    signing: &Signing,
) -> Rendered {
    let body = json_body(batch, batch.events.iter().map(event).collect());
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
    let mac = sign::hmac_sha256(key.as_bytes(), &[&body]);
    let signature = match encoding {
        SignatureEncoding::Hex => hex::encode(mac),
        SignatureEncoding::Base64 => sign::base64(&mac),
    };
    let mut headers = json_headers();
    headers.push((header.to_string(), signature));
    Rendered { headers, body }
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let mut o = json!({
        "event_id": e.id,
        "event_type": e.kind.name,
        "recipient": e.recipient,
        "occurred_at": fake::rfc3339_millis(e.occurred_at_ms),
        "message_id": e.message_id,
        "tags": [fake::tag(&mut rng)],
        "metadata": {"customer_id": format!("C-{}", rng.between(1000, 9999))},
    });
    if let Some(campaign) = e.campaign {
        o["campaign_id"] = campaign.into();
    }
    match e.kind.name {
        "bounced" => {
            o["reject_reason"] = "bounced".into();
            o["bounce_class"] = "hard".into();
            o["mta_response"] = fake::SMTP_UNKNOWN_USER.into();
        }
        "deferred" => {
            o["bounce_class"] = "soft".into();
            o["mta_response"] = fake::SMTP_TRY_LATER.into();
        }
        "rejected" => {
            o["reject_reason"] = "blocked".into();
            o["description"] = "Recipient is on the suppression list".into();
        }
        "delivered" => o["mta_response"] = fake::SMTP_OK.into(),
        "opened" | "clicked" => {
            let (country, region, city) = rng.pick(fake::COUNTRIES);
            o["ip"] = fake::ip(&mut rng).into();
            o["user_agent"] = fake::user_agent(&mut rng).into();
            o["geo"] = json!({"country": country, "region": region, "city": city});
            if e.kind.name == "clicked" {
                o["url"] = fake::link(&mut rng).into();
            }
        }
        _ => {}
    }
    o
}
