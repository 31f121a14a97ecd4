//! Mandrill (Mailchimp Transactional): a form post whose one field `mandrill_events` is a
//! JSON array of up to 1000 events; `X-Mandrill-Signature` is the base64 HMAC-SHA1 of the
//! configured webhook URL followed by each form field's name and value.

use mailpipe_model::EventType;
use mailpipe_verify_core::sign;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{first_half, forged_key, no_request_id, Render, Sampler, Shape};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "send", event_type: EventType::Sent },
    Kind { name: "delivered", event_type: EventType::Delivered },
    Kind { name: "open", event_type: EventType::Opened },
    Kind { name: "click", event_type: EventType::Clicked },
    Kind { name: "deferral", event_type: EventType::Deferred },
    Kind { name: "hard_bounce", event_type: EventType::Bounced },
    Kind { name: "soft_bounce", event_type: EventType::Bounced },
    Kind { name: "reject", event_type: EventType::Rejected },
    Kind { name: "spam", event_type: EventType::Complained },
    Kind { name: "unsub", event_type: EventType::Unsubscribed },
];

pub(crate) const SHAPE: Shape = Shape {
    max_batch: 12,
    array_chance: 1.0,
    fan_out: &[],
};

/// (`_id`, `_id`): Mandrill's only id is the message's.
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    let id = rng.hex(32);
    (id.clone(), id)
}

pub(crate) const SAMPLER: Sampler = Sampler::new(
    KINDS,
    SHAPE,
    ids,
    no_request_id,
    Render::HmacWithUrl(render),
);

pub(crate) fn render(batch: &Batch, key: &str, webhook_url: &str, signing: &Signing) -> Rendered {
    let events = serde_json::to_string(&batch.events.iter().map(event).collect::<Vec<_>>())
        .expect("JSON values serialize");
    let events = if signing.malformed {
        first_half(&events).to_string()
    } else {
        events
    };
    let key = if signing.forged {
        forged_key(key)
    } else {
        key.to_string()
    };
    let signature = sign::mandrill_signature(&key, webhook_url, &[("mandrill_events", &events)]);
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("mandrill_events", &events)
        .finish();
    Rendered {
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("x-mandrill-signature".into(), signature),
        ],
        body: body.into_bytes(),
    }
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let name = e.kind.name;
    let ts = e.occurred_at_ms / 1000;
    let sent = ts - rng.between(1, 300) as i64;
    let mut metadata = json!({"customer_id": format!("C-{}", rng.between(1000, 9999))});
    if let Some(campaign) = e.campaign {
        metadata["campaign_id"] = campaign.into();
    }
    let state = match name {
        "hard_bounce" | "soft_bounce" => "bounced",
        "reject" => "rejected",
        "deferral" => "deferred",
        "spam" => "spam",
        _ => "sent",
    };
    let mut msg = json!({
        "ts": sent, "_id": e.message_id, "state": state, "subject": fake::subject(&mut rng),
        "email": e.recipient, "sender": format!("shop@{}", fake::sender_domain()),
        "tags": [fake::tag(&mut rng)], "metadata": metadata, "opens": [], "clicks": [],
        "smtp_events": [], "resends": [], "template": null, "subaccount": null,
        "diag": null, "bounce_description": null, "_version": rng.base62(22),
    });
    match name {
        "hard_bounce" => {
            msg["diag"] = format!("smtp;{}", fake::SMTP_UNKNOWN_USER).into();
            msg["bounce_description"] = "bad_mailbox".into();
            msg["bgtools_code"] = 10.into();
        }
        "soft_bounce" => {
            msg["diag"] = format!("smtp;{}", fake::SMTP_MAILBOX_FULL).into();
            msg["bounce_description"] = "mailbox_full".into();
            msg["bgtools_code"] = 22.into();
        }
        "deferral" => {
            msg["smtp_events"] =
                json!([{"ts": ts, "type": "deferred", "diag": fake::SMTP_TRY_LATER}]);
        }
        _ => {}
    }
    let mut o = json!({"event": name, "_id": e.message_id, "ts": ts, "msg": msg});
    if matches!(name, "open" | "click") {
        let (country, region, city) = rng.pick(fake::COUNTRIES);
        o["ip"] = fake::ip(&mut rng).into();
        o["user_agent"] = fake::user_agent(&mut rng).into();
        o["location"] = json!({"country_short": country, "country": country, "region": region,
            "city": city, "postal_code": "-", "timezone": "+00:00", "latitude": 0.0, "longitude": 0.0});
        if name == "click" {
            o["url"] = fake::link(&mut rng).into();
        }
    }
    o
}
