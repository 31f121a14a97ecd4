//! Kill test of the rules stage (issue 18): the real `mailpipe-rules` binary, with the
//! default rules (`config/rules.toml`), works through 30,000 events on 4 partitions keyed
//! by recipient — 6,000 complaints, 4,000 recipients with three soft bounces each an hour
//! apart, and deliveries that match no rule — and is SIGKILLed at seeded random points
//! (`RULES_KILL_COUNT` kills, default 6), restarted each time with the same instance id,
//! until its group has committed the whole input. Then `mail.actions` and
//! `mail.suppressions`, read `read_committed`, must hold exactly one action and one
//! suppression per complaint and per third soft bounce (0 missing, 0 extra): the counters
//! in Redis survive the kills and count each event once, so no bounce is counted twice and
//! no suppression made twice or lost. The harness: `mailpipe_test_support::kill`.
//!
//! Ignored in `make test`; `make chaos` runs it, or by hand against a running stack:
//! `cargo test -p mailpipe-tests --test it -- rules_kill:: --ignored --nocapture`
//! (the binary must be built: `cargo build --workspace --bins`).

use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_kafka::Topic;
use mailpipe_model::{BounceClass, EmailEvent, EventType};
use mailpipe_stage::Stage;
use mailpipe_telemetry::names;
use mailpipe_test_support::kill::{compare, partition_of, Expected, Input, KillTest, Observed};
use mailpipe_test_support::{delivered_event, unique_name};
use serde::Deserialize;

const PARTITIONS: i32 = 4;
const COMPLAINTS: usize = 6_000;
const SOFT_BOUNCED: usize = 4_000;
const DELIVERIES: usize = 12_000;
const HOUR: i64 = 3_600_000;
const T0: i64 = 1_717_000_000_000;

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    decision: String,
}

#[derive(Debug, Deserialize)]
struct Suppression {
    event_id: Option<String>,
}

fn event(seq: usize, recipient: String, event_type: EventType, at: i64) -> EmailEvent {
    let mut e = delivered_event(seq, 0, 1);
    e.event_type = event_type;
    e.recipient_domain = recipient.rsplit_once('@').map(|(_, d)| d.to_string());
    e.recipient = Some(recipient);
    e.occurred_at = at;
    e
}

/// The input in order, and the id of every event that must suppress its recipient.
fn input_stream() -> (Vec<EmailEvent>, Vec<(String, &'static str)>) {
    let mut events = Vec::new();
    let mut deciding = Vec::new();
    let mut seq = 0;
    let mut next = |events: &mut Vec<EmailEvent>, recipient: String, t: EventType, at: i64| {
        seq += 1;
        let mut e = event(seq, recipient, t, at);
        if t == EventType::Bounced {
            e.bounce_class = Some(BounceClass::Soft);
        }
        events.push(e);
        events.last().unwrap().event_id.clone()
    };
    // Interleaved: round r of each soft-bounced recipient, complaints and deliveries between.
    for round in 0..3 {
        for i in 0..SOFT_BOUNCED {
            let at = T0 + round as i64 * HOUR + i as i64;
            let id = next(
                &mut events,
                format!("soft{i}@x.example"),
                EventType::Bounced,
                at,
            );
            if round == 2 {
                deciding.push((id, "suppress-repeated-soft-bounces"));
            }
            if i % 2 == 0 {
                let c = round * SOFT_BOUNCED / 2 + i / 2;
                if c < COMPLAINTS {
                    let id = next(
                        &mut events,
                        format!("angry{c}@x.example"),
                        EventType::Complained,
                        at,
                    );
                    deciding.push((id, "suppress-complaint"));
                }
            }
            let d = round * SOFT_BOUNCED + i;
            if d < DELIVERIES {
                next(
                    &mut events,
                    format!("fine{d}@x.example"),
                    EventType::Delivered,
                    at,
                );
            }
        }
    }
    (events, deciding)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos: minutes of broker load; run by `make chaos` (scripts/chaos.sh)"]
async fn sigkilled_rules_stage_acts_once_per_deciding_event() {
    let mut test = KillTest::new(Stage::Rules, 0x7275_6c65_735f_6b31, PARTITIONS);
    test.create_topics(&[
        (Topic::Actions, 2),
        (Topic::Suppressions, 1),
        (Topic::Dlq, 1),
    ])
    .await;
    let rules_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rules.toml");
    test.env = vec![
        (
            "MAILPIPE_RULES__FILE".into(),
            rules_file.display().to_string(),
        ),
        (
            "MAILPIPE_RULES__REDIS_PREFIX".into(),
            format!("{}:", unique_name("ruleskill")),
        ),
    ];
    test.metrics = vec![names::RULES_EVENTS, names::RULES_ACTIONS];

    let (events, deciding) = input_stream();
    assert_eq!(deciding.len(), COMPLAINTS + SOFT_BOUNCED);
    let codec = AvroCodec::new(&test.settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&test.input_topic, EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap();
    let partition =
        |e: &EmailEvent| partition_of(e.recipient.as_deref().unwrap().as_bytes(), PARTITIONS);
    let inputs: Vec<Input> = events
        .iter()
        .map(|e| Input {
            key: e.recipient.clone().unwrap().into_bytes(),
            payload: schema.encode(e, 512).unwrap(),
            partition: partition(e),
        })
        .collect();
    let by_id: std::collections::HashMap<&str, &EmailEvent> =
        events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    // Per deciding event: its action and its suppression.
    let mut expected = Vec::new();
    for (id, rule) in &deciding {
        let input_partition = partition(by_id[id.as_str()]);
        expected.push(Expected {
            id: format!("{rule}/{id}/0"),
            input_partition,
        });
        expected.push(Expected {
            id: format!("suppression of {id}"),
            input_partition,
        });
    }

    let run = test.run(inputs).await;

    let actions_topic = test.topic(Topic::Actions);
    let suppressions_topic = test.topic(Topic::Suppressions);
    let mut observed = Vec::new();
    for output in &run.outputs {
        let id = if output.topic == actions_topic {
            let action: Action = codec.decode(&output.payload).await.unwrap();
            assert_eq!(action.decision, "executed", "{}", action.action_id);
            action.action_id
        } else if output.topic == suppressions_topic {
            let s: Suppression = codec.decode(&output.payload).await.unwrap();
            format!("suppression of {}", s.event_id.unwrap_or_default())
        } else {
            format!("dead letter at {}", output.partition)
        };
        observed.push(Observed {
            topic: output.topic.clone(),
            key: output.key.clone(),
            id,
        });
    }
    test.check(&run, &compare(&expected, &observed), "events");
}
