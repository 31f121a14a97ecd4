//! Brevo (Sendinblue) transactional webhooks: one JSON object per event, or an array when
//! the webhook is `batched`; authenticated by Basic credentials or a bearer token (see
//! `providers::render`).

use mailpipe_model::EventType;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{json_body, no_extra_headers, no_request_id, Render, Sampler, Shape};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "request", event_type: EventType::Queued },
    Kind { name: "delivered", event_type: EventType::Delivered },
    Kind { name: "opened", event_type: EventType::Opened },
    Kind { name: "unique_opened", event_type: EventType::Opened },
    Kind { name: "click", event_type: EventType::Clicked },
    Kind { name: "deferred", event_type: EventType::Deferred },
    Kind { name: "soft_bounce", event_type: EventType::Bounced },
    Kind { name: "hard_bounce", event_type: EventType::Bounced },
    Kind { name: "invalid_email", event_type: EventType::Bounced },
    Kind { name: "blocked", event_type: EventType::Rejected },
    Kind { name: "error", event_type: EventType::Failed },
    Kind { name: "spam", event_type: EventType::Complained },
    Kind { name: "unsubscribed", event_type: EventType::Unsubscribed },
];

/// Half the requests are batches (a webhook created with `batched: true`).
pub(crate) const SHAPE: Shape = Shape {
    max_batch: 12,
    array_chance: 0.5,
    fan_out: &[],
};

/// (`message-id`, `message-id`): Brevo has no event id.
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    let id = format!(
        "<{}.{}@smtp-relay.mailin.fr>",
        rng.digits(12),
        rng.digits(11)
    );
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
    let name = e.kind.name;
    let secs = e.occurred_at_ms / 1000;
    let tag = fake::tag(&mut rng);
    let mut custom = json!({"customer_id": format!("C-{}", rng.between(1000, 9999))});
    if let Some(campaign) = e.campaign {
        custom["campaign_id"] = campaign.into();
    }
    let mut o = json!({
        "event": name,
        "email": e.recipient,
        "id": 123456,
        "date": fake::brevo_date(e.occurred_at_ms),
        "ts": secs,
        "message-id": e.message_id,
        "ts_event": secs,
        "ts_epoch": e.occurred_at_ms,
        "subject": fake::subject(&mut rng),
        "tag": format!("[\"{tag}\"]"),
        "tags": [tag],
        "sending_ip": fake::ip(&mut rng),
        "X-Mailin-custom": custom.to_string(),
    });
    match name {
        "hard_bounce" | "invalid_email" => {
            o["reason"] = format!(" RecipientError: {}", fake::SMTP_UNKNOWN_USER).into();
        }
        "soft_bounce" => o["reason"] = fake::SMTP_MAILBOX_FULL.into(),
        "deferred" => o["reason"] = fake::SMTP_TRY_LATER.into(),
        "blocked" => o["reason"] = "blocked : due to blacklist user".into(),
        "error" => o["reason"] = "The sender is not verified".into(),
        "opened" | "unique_opened" => {
            o["ip"] = fake::ip(&mut rng).into();
            o["user_agent"] = fake::user_agent(&mut rng).into();
        }
        "click" => {
            o["ip"] = fake::ip(&mut rng).into();
            o["user_agent"] = fake::user_agent(&mut rng).into();
            o["link"] = fake::link(&mut rng).into();
        }
        _ => {}
    }
    o
}
