//! Kill test of the normalize stage (issue 16): the real `mailpipe-normalize` binary works
//! through 50,000 verified requests on 4 partitions — SendGrid batches of one to four events
//! for 400 recipients, one request in fifty an unparseable body — and is SIGKILLed at seeded
//! random points spread over the input (`NORMALIZE_KILL_COUNT` kills, default 6, at least
//! 5), restarted each time with the same instance id, until its consumer group has committed
//! the whole input. Then `mail.events` and `mail.dlq`, read `read_committed`, must hold every
//! event the requests declare exactly once and one dead letter per unparseable request (0
//! missing, 0 extra), each event keyed by its recipient, and each recipient's events from one
//! input partition in input order. With `MAILPIPE_KAFKA__EXACTLY_ONCE=false` (the
//! at-least-once path) extra copies are printed, not asserted. The harness:
//! `mailpipe_test_support::kill`.
//!
//! Ignored in `make test`; `make chaos` (scripts/chaos.sh) runs it, or by hand against a
//! running stack:
//! `cargo test -p mailpipe-tests --test it -- normalize_kill:: --ignored --nocapture`.
//! The binary must be built (`cargo build -p mailpipe-stage-3-normalize`).
//! `NORMALIZE_KILL_SEED` replays one schedule.

use mailpipe_avro::records::{DeadLetterRecord, Header, VerifiedKind, VerifiedRecord};
use mailpipe_avro::{AvroCodec, TopicSchema, VERIFIED_REQUEST_SCHEMA};
use mailpipe_kafka::Topic;
use mailpipe_model::{EmailEvent, Provider};
use mailpipe_normalize_core::{parse, ParseInput};
use mailpipe_stage::Stage;
use mailpipe_telemetry::names;
use mailpipe_test_support::kill::{compare, partition_of, Expected, Input, KillTest, Observed};
use mailpipe_test_support::Rng;

const REQUESTS: usize = 50_000;
/// Every GARBAGE_EVERY-th request's body is not JSON: a dead letter.
const GARBAGE_EVERY: usize = 50;
const RECIPIENTS: u64 = 400;
const PARTITIONS: i32 = 4;
const RECEIVED_AT: i64 = 1_717_000_000_000;

/// Verified request `i`: a SendGrid batch of one to four events, or garbage.
fn request(i: usize, rng: &mut Rng) -> VerifiedRecord {
    let body = if i % GARBAGE_EVERY == GARBAGE_EVERY - 1 {
        b"{not json".to_vec()
    } else {
        let events: Vec<serde_json::Value> = (0..rng.between(1, 4))
            .map(|j| {
                serde_json::json!({
                    "email": format!("user{}@example.com", rng.below(RECIPIENTS)),
                    "timestamp": RECEIVED_AT / 1000 - 60 + i as i64 % 60,
                    "event": rng.pick(&["processed", "delivered", "open"]),
                    "sg_event_id": format!("ev-{i}-{j}"),
                    "sg_message_id": format!("msg-{i}.filter0001"),
                })
            })
            .collect();
        serde_json::to_vec(&events).unwrap()
    };
    VerifiedRecord {
        request_id: format!("req-{i}"),
        received_at: RECEIVED_AT + i as i64,
        provider: Provider::Sendgrid.as_str().into(),
        source: "sendgrid".into(),
        method: "POST".into(),
        path: "/webhooks/sendgrid".into(),
        query: String::new(),
        headers: vec![Header {
            name: "content-type".into(),
            value: b"application/json".to_vec(),
        }],
        remote_addr: None,
        body,
        verified_at: RECEIVED_AT + i as i64 + 1,
        kind: VerifiedKind::Events,
        control_action: None,
        key_index: Some(0),
    }
}

/// What the stage makes of `record`: its events (the normalizer's own parse), or None
/// when it does not parse (a dead letter).
fn events_of(record: &VerifiedRecord) -> Option<Vec<EmailEvent>> {
    let headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let input = ParseInput {
        source: &record.source,
        raw_request_id: &record.request_id,
        received_at_ms: record.received_at,
        headers: &headers,
        query: "",
        body: &record.body,
    };
    parse(Provider::Sendgrid, &input).ok()
}

fn dead_letter_id(request_id: &str) -> String {
    format!("dead letter of {request_id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos: minutes of broker load; run by `make chaos` (scripts/chaos.sh)"]
async fn sigkilled_normalize_stage_emits_each_event_once() {
    let mut test = KillTest::new(Stage::Normalize, 0x6e6f_726d, PARTITIONS);
    test.create_topics(&[(Topic::Events, PARTITIONS), (Topic::Dlq, 1)])
        .await;
    test.metrics = vec![names::NORMALIZE_EVENTS, names::DEAD_LETTERS];

    let codec = AvroCodec::new(&test.settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&test.input_topic, VERIFIED_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    let mut rng = Rng::new(test.seed);
    let mut inputs = Vec::with_capacity(REQUESTS);
    let mut expected = Vec::new();
    let (mut events, mut garbage) = (0, 0);
    for i in 0..REQUESTS {
        let record = request(i, &mut rng);
        let partition = partition_of(record.request_id.as_bytes(), PARTITIONS);
        match events_of(&record) {
            Some(parsed) => {
                events += parsed.len();
                expected.extend(parsed.into_iter().map(|e| Expected {
                    id: e.event_id,
                    input_partition: partition,
                }));
            }
            None => {
                garbage += 1;
                expected.push(Expected {
                    id: dead_letter_id(&record.request_id),
                    input_partition: partition,
                });
            }
        }
        inputs.push(Input {
            key: record.request_id.clone().into_bytes(),
            payload: schema.encode(&record, record.body.len() + 512).unwrap(),
            partition,
        });
    }
    eprintln!(
        "normalize kill test: {REQUESTS} requests declare {events} events, {garbage} do not parse"
    );

    let run = test.run(inputs).await;

    let events_topic = test.topic(Topic::Events);
    let mut observed = Vec::with_capacity(run.outputs.len());
    for output in &run.outputs {
        let id = if output.topic == events_topic {
            let e: EmailEvent = codec.decode(&output.payload).await.unwrap();
            assert_eq!(
                output.key.as_deref(),
                e.recipient.as_deref().map(str::as_bytes),
                "key = recipient"
            );
            e.event_id
        } else {
            let letter: DeadLetterRecord = codec.decode(&output.payload).await.unwrap();
            dead_letter_id(&letter.raw_request_id.unwrap_or_default())
        };
        observed.push(Observed {
            topic: output.topic.clone(),
            key: output.key.clone(),
            id,
        });
    }
    test.check(&run, &compare(&expected, &observed), "verified requests");
}
