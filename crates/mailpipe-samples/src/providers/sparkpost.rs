//! SparkPost (Bird): a JSON array of `{"msys": {"<class>": {…event…}}}` wrappers, batched,
//! with `X-MessageSystems-Batch-ID`; authenticated by Basic credentials (see
//! `providers::render`).

use mailpipe_model::EventType;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{Render, Sampler, Shape};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "injection", event_type: EventType::Queued },
    Kind { name: "delivery", event_type: EventType::Delivered },
    Kind { name: "open", event_type: EventType::Opened },
    // Sent besides `open` for the first open; mailpipe keeps it as unknown (as anymail) so
    // opens are not counted twice.
    Kind { name: "initial_open", event_type: EventType::Unknown },
    Kind { name: "click", event_type: EventType::Clicked },
    Kind { name: "delay", event_type: EventType::Deferred },
    Kind { name: "bounce", event_type: EventType::Bounced },
    Kind { name: "out_of_band", event_type: EventType::Bounced },
    Kind { name: "policy_rejection", event_type: EventType::Rejected },
    Kind { name: "generation_failure", event_type: EventType::Failed },
    Kind { name: "spam_complaint", event_type: EventType::Complained },
    Kind { name: "list_unsubscribe", event_type: EventType::Unsubscribed },
    Kind { name: "link_unsubscribe", event_type: EventType::Unsubscribed },
];

pub(crate) const SHAPE: Shape = Shape {
    max_batch: 12,
    array_chance: 1.0,
    fan_out: &[],
};

/// (`event_id`, `transmission_id`): decimal strings.
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    (rng.digits(18), rng.digits(17))
}

pub(crate) const SAMPLER: Sampler = Sampler::new(
    KINDS,
    SHAPE,
    ids,
    |rng| rng.uuid(),
    Render::Credentials(body, batch_id_header),
);

/// SparkPost names each batch.
fn batch_id_header(batch: &Batch) -> Vec<(String, String)> {
    vec![("x-messagesystems-batch-id".into(), batch.request_id.clone())]
}

pub(crate) fn body(batch: &Batch) -> Vec<u8> {
    serde_json::to_vec(&batch.events.iter().map(event).collect::<Vec<_>>())
        .expect("JSON values serialize")
}

fn event(e: &PlannedEvent) -> serde_json::Value {
    let mut rng = Rng::new(e.seed);
    let name = e.kind.name;
    let class = match name {
        "open" | "initial_open" | "click" => "track_event",
        "generation_failure" => "gen_event",
        "list_unsubscribe" | "link_unsubscribe" => "unsubscribe_event",
        _ => "message_event",
    };
    let mut o = json!({
        "type": name,
        "event_id": e.id,
        "timestamp": (e.occurred_at_ms / 1000).to_string(),
        "transmission_id": e.message_id,
        "message_id": rng.hex(20),
        "customer_id": "1",
        "rcpt_to": e.recipient,
        "raw_rcpt_to": e.recipient,
        "rcpt_tags": [fake::tag(&mut rng)],
        "rcpt_meta": {"customer_id": format!("C-{}", rng.between(1000, 9999))},
        "friendly_from": format!("shop@{}", fake::sender_domain()),
        "subject": fake::subject(&mut rng),
        "template_id": "template_1",
        "ip_pool": "default",
        "routing_domain": e.recipient.rsplit_once('@').map_or("", |(_, d)| d),
    });
    if let Some(campaign) = e.campaign {
        o["campaign_id"] = campaign.into();
    }
    match name {
        "injection" => {
            o["msg_size"] = rng.between(2_000, 40_000).to_string().into();
        }
        "delivery" => {
            o["sending_ip"] = fake::ip(&mut rng).into();
            o["queue_time"] = rng.between(100, 3_000).to_string().into();
            o["num_retries"] = "0".into();
        }
        "delay" => {
            o["bounce_class"] = "21".into();
            o["error_code"] = "421".into();
            o["raw_reason"] = fake::SMTP_TRY_LATER.into();
            o["reason"] = fake::SMTP_TRY_LATER.into();
            o["num_retries"] = "1".into();
        }
        "bounce" | "out_of_band" => {
            o["bounce_class"] = "10".into();
            o["error_code"] = "550".into();
            o["raw_reason"] = fake::SMTP_UNKNOWN_USER.into();
            o["reason"] = fake::SMTP_UNKNOWN_USER.into();
        }
        "policy_rejection" => {
            o["bounce_class"] = "25".into();
            o["error_code"] = "554".into();
            o["raw_reason"] =
                "554 5.7.1 recipient address was suppressed due to customer policy".into();
        }
        "generation_failure" => {
            o["error_code"] = "1902".into();
            o["raw_reason"] = "1902 Generation failure: substitution data missing".into();
        }
        "spam_complaint" => {
            o["fbtype"] = "abuse".into();
            o["report_by"] = "fbl@isp.example.net".into();
        }
        "open" | "initial_open" | "click" => {
            let (country, region, city) = rng.pick(fake::COUNTRIES);
            o["ip_address"] = fake::ip(&mut rng).into();
            o["user_agent"] = fake::user_agent(&mut rng).into();
            o["geo_ip"] = json!({"country": country, "region": region, "city": city,
                "latitude": 0.0, "longitude": 0.0});
            if name == "click" {
                o["target_link_url"] = fake::link(&mut rng).into();
                o["target_link_name"] = "Call to action".into();
            }
        }
        "link_unsubscribe" => {
            o["user_agent"] = fake::user_agent(&mut rng).into();
            o["target_link_url"] = "https://www.example.com/unsubscribe".into();
            o["mailfrom"] = format!("bounces@{}", fake::sender_domain()).into();
        }
        "list_unsubscribe" => {
            o["mailfrom"] = format!("bounces@{}", fake::sender_domain()).into();
        }
        _ => {}
    }
    json!({"msys": {class: o}})
}
