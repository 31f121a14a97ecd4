//! Amazon SES event publishing through SNS: an SNS `Notification` whose `Message` is the SES
//! event as JSON text, signed with RSA over the SNS canonical string (SignatureVersion 1 or
//! 2) by the key of the certificate at `SigningCertURL`. One message per SES event; a
//! delivery may name several recipients, each one canonical event.

use mailpipe_model::EventType;
use mailpipe_verify_core::sign;
use serde_json::json;

use crate::fake;
use crate::plan::{Batch, Kind, PlannedEvent};
use crate::providers::{first_half, rsa_signature, Render, Sampler, Shape};
use crate::render::{Rendered, Signing};
use crate::rng::Rng;

#[rustfmt::skip]
pub(crate) const KINDS: &[Kind] = &[
    Kind { name: "Send", event_type: EventType::Sent },
    Kind { name: "Delivery", event_type: EventType::Delivered },
    Kind { name: "Open", event_type: EventType::Opened },
    Kind { name: "Click", event_type: EventType::Clicked },
    Kind { name: "Bounce/Permanent", event_type: EventType::Bounced },
    Kind { name: "Bounce/Transient", event_type: EventType::Bounced },
    Kind { name: "DeliveryDelay", event_type: EventType::Deferred },
    Kind { name: "Reject", event_type: EventType::Rejected },
    Kind { name: "Complaint", event_type: EventType::Complained },
    Kind { name: "Rendering Failure", event_type: EventType::Failed },
    Kind { name: "Subscription", event_type: EventType::Unsubscribed },
];

pub(crate) const SHAPE: Shape = Shape {
    max_batch: 1,
    array_chance: 0.0,
    fan_out: &["Delivery"],
};

/// (replaced by `MessageId:recipient` once the message is planned, SES message id).
pub(crate) fn ids(rng: &mut Rng) -> (String, String) {
    let message_id = format!("0100019{}-{}-000000", rng.hex(9), rng.uuid());
    (String::new(), message_id)
}

pub(crate) const SAMPLER: Sampler =
    Sampler::new(KINDS, SHAPE, ids, |rng| rng.uuid(), Render::Sns(render));

pub(crate) fn render(
    batch: &Batch,
    key: &rsa::RsaPrivateKey,
    topic_arn: &str,
    certificate_url: &str,
    signing: &Signing,
) -> Rendered {
    let mut rng = Rng::new(batch.seed);
    let message = serde_json::to_string(&ses_event(&batch.events)).expect("JSON");
    let message = if signing.malformed {
        // Correctly signed; the SES event inside is not JSON.
        format!("SES event: {}", first_half(&message))
    } else {
        message
    };
    let timestamp = fake::rfc3339_millis(signing.signed_at * 1000 + rng.below(1000) as i64);
    let version: u8 = if rng.chance(0.5) { 1 } else { 2 };
    let fields = [
        ("Type", "Notification"),
        ("MessageId", batch.request_id.as_str()),
        ("TopicArn", topic_arn),
        ("Subject", "Amazon SES Email Event Notification"),
        ("Message", message.as_str()),
        ("Timestamp", timestamp.as_str()),
    ];
    let canonical = sign::sns_canonical_string(&fields);
    let signature = rsa_signature(
        key,
        canonical.as_bytes(),
        version == 2,
        signing.forged,
        &mut rng,
    );
    let subscription_arn = format!("{topic_arn}:{}", rng.uuid());
    let region = topic_arn.split(':').nth(3).unwrap_or("us-east-1");
    let mut envelope = serde_json::Map::new();
    for (name, value) in fields {
        envelope.insert(name.into(), value.into());
    }
    envelope.insert("SignatureVersion".into(), version.to_string().into());
    envelope.insert("Signature".into(), signature.into());
    envelope.insert("SigningCertURL".into(), certificate_url.into());
    envelope.insert(
        "UnsubscribeURL".into(),
        format!("https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription_arn}").into(),
    );
    let headers = vec![
        ("content-type".into(), "text/plain; charset=UTF-8".into()),
        ("x-amz-sns-message-type".into(), "Notification".into()),
        ("x-amz-sns-message-id".into(), batch.request_id.clone()),
        ("x-amz-sns-topic-arn".into(), topic_arn.to_string()),
        ("x-amz-sns-subscription-arn".into(), subscription_arn),
        (
            "user-agent".into(),
            "Amazon Simple Notification Service Agent".into(),
        ),
    ];
    Rendered {
        headers,
        body: serde_json::to_vec(&envelope).expect("JSON"),
    }
}

/// The SES event-publishing record of one message (all `events` share kind and message).
fn ses_event(events: &[PlannedEvent]) -> serde_json::Value {
    let Some(first) = events.first() else {
        return json!({});
    };
    let mut rng = Rng::new(first.seed);
    let (name, detail) = first
        .kind
        .name
        .split_once('/')
        .unwrap_or((first.kind.name, ""));
    let recipients: Vec<&str> = events.iter().map(|e| e.recipient.as_str()).collect();
    let at = fake::rfc3339_millis(first.occurred_at_ms);
    let sent = fake::rfc3339_millis(first.occurred_at_ms - rng.between(500, 5_000) as i64);
    let subject = fake::subject(&mut rng);
    let from = format!("Shop <shop@{}>", fake::sender_domain());
    let mut tags = json!({
        "ses:configuration-set": ["mailpipe-dev"],
        "ses:source-ip": [fake::ip(&mut rng)],
        "ses:from-domain": [fake::sender_domain()],
        "ses:caller-identity": ["mailpipe-dev"],
    });
    if let Some(campaign) = first.campaign {
        tags["campaign_id"] = json!([campaign]);
    }
    let mail = json!({
        "timestamp": sent,
        "source": from,
        "sourceArn": format!("arn:aws:ses:us-east-1:000000000000:identity/{}", fake::sender_domain()),
        "sendingAccountId": "000000000000",
        "messageId": first.message_id,
        "destination": recipients,
        "headersTruncated": false,
        "headers": [
            {"name": "From", "value": from},
            {"name": "To", "value": recipients.join(", ")},
            {"name": "Subject", "value": subject},
        ],
        "commonHeaders": {"from": [from], "to": recipients, "messageId": first.message_id, "subject": subject},
        "tags": tags,
    });
    let mta = "a8-30.smtp-out.amazonses.com";
    let feedback_id = format!("0100019{}-{}-000000", rng.hex(9), rng.uuid());
    let (key, object) = match name {
        "Send" => ("send", json!({})),
        "Delivery" => (
            "delivery",
            json!({"timestamp": at, "processingTimeMillis": rng.between(300, 3000),
                   "recipients": recipients, "smtpResponse": fake::SMTP_OK, "reportingMTA": mta}),
        ),
        "Bounce" => {
            let permanent = detail == "Permanent";
            let (sub_type, status, diagnostic) = if permanent {
                ("General", "5.1.1", fake::SMTP_UNKNOWN_USER)
            } else {
                ("MailboxFull", "4.2.2", fake::SMTP_MAILBOX_FULL)
            };
            let bounced: Vec<_> = recipients
                .iter()
                .map(|r| {
                    json!({"emailAddress": r, "action": "failed", "status": status,
                                "diagnosticCode": format!("smtp; {diagnostic}")})
                })
                .collect();
            (
                "bounce",
                json!({"bounceType": detail, "bounceSubType": sub_type, "bouncedRecipients": bounced,
                       "timestamp": at, "feedbackId": feedback_id, "reportingMTA": format!("dsn; {mta}")}),
            )
        }
        "DeliveryDelay" => {
            let delayed: Vec<_> = recipients
                .iter()
                .map(|r| {
                    json!({"emailAddress": r, "status": "4.4.1",
                                "diagnosticCode": format!("smtp; {}", fake::SMTP_TRY_LATER)})
                })
                .collect();
            (
                "deliveryDelay",
                json!({"timestamp": at, "delayType": "TransientCommunicationFailure",
                       "expirationTime": fake::rfc3339_millis(first.occurred_at_ms + 86_400_000),
                       "delayedRecipients": delayed, "reportingMTA": mta}),
            )
        }
        "Reject" => ("reject", json!({"reason": "Bad content"})),
        "Complaint" => {
            let complained: Vec<_> = recipients
                .iter()
                .map(|r| json!({"emailAddress": r}))
                .collect();
            (
                "complaint",
                json!({"complainedRecipients": complained, "timestamp": at, "feedbackId": feedback_id,
                       "complaintSubType": null, "userAgent": "ExampleCorp Feedback Loop (V0.01)",
                       "complaintFeedbackType": "abuse", "arrivalDate": at}),
            )
        }
        "Open" => (
            "open",
            json!({"ipAddress": fake::ip(&mut rng), "timestamp": at,
                   "userAgent": fake::user_agent(&mut rng)}),
        ),
        "Click" => (
            "click",
            json!({"ipAddress": fake::ip(&mut rng), "timestamp": at,
                   "userAgent": fake::user_agent(&mut rng), "link": fake::link(&mut rng),
                   "linkTags": {"placement": ["footer"]}}),
        ),
        "Rendering Failure" => (
            "failure",
            json!({"templateName": "welcome",
                   "errorMessage": "Attribute 'first_name' is not present in the rendering data."}),
        ),
        _ => (
            "subscription",
            json!({"contactList": "newsletter", "timestamp": at, "source": "UnsubscribeHeader",
                   "newTopicPreferences": {"unsubscribeAll": true,
                       "topicSubscriptionStatus": [{"topicName": "offers", "subscriptionStatus": "OptOut"}]},
                   "oldTopicPreferences": {"unsubscribeAll": false,
                       "topicSubscriptionStatus": [{"topicName": "offers", "subscriptionStatus": "OptIn"}]}}),
        ),
    };
    let mut event = json!({"eventType": name, "mail": mail});
    event[key] = object;
    event
}
