//! Kill test of the dedupe stage (issues 6 and 16): the real `mailpipe-dedupe` binary works
//! through 50,000 events — 40,000 distinct ids plus 10,000 ESP retries of them (same
//! event_id, new raw request, up to 5,000 inputs later) on 4 partitions keyed by recipient —
//! and is SIGKILLed at seeded random points spread over the input (`DEDUPE_KILL_COUNT`
//! kills, default 6, at least 5), restarted each time with the same instance id, until its
//! consumer group has committed the whole input. Then `mail.events.unique` (and `mail.dlq`),
//! read `read_committed`, must hold every distinct id exactly once — the first copy of it,
//! never a retry — each recipient's events in input order (0 missing, 0 extra). With
//! `MAILPIPE_KAFKA__EXACTLY_ONCE=false` (the at-least-once path) extra copies are printed,
//! not asserted. The harness: `mailpipe_test_support::kill`.
//!
//! Ignored in `make test`: a long run that loads the local broker heavily. `make chaos`
//! (scripts/chaos.sh) runs it, or by hand against a running stack:
//! `cargo test -p mailpipe-tests --test it -- dedupe_kill:: --ignored --nocapture`.
//! The binary must be built (`cargo build -p mailpipe-stage-4-dedupe`); its log is kept in a
//! temporary file when the test fails. `DEDUPE_KILL_SEED` replays one schedule.

use std::collections::HashSet;

use mailpipe_avro::records::DeadLetterRecord;
use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_kafka::Topic;
use mailpipe_model::EmailEvent;
use mailpipe_stage::Stage;
use mailpipe_telemetry::names;
use mailpipe_test_support::kill::{compare, partition_of, Expected, Input, KillTest, Observed};
use mailpipe_test_support::{delivered_event, Rng};

const DISTINCT: usize = 40_000;
/// Every fourth id is sent twice: 10,000 retries, 50,000 inputs.
const RETRY_EVERY: usize = 4;
const RECIPIENTS: usize = 400;
const PARTITIONS: i32 = 4;
/// A retry lands 0..RETRY_SPREAD inputs after its original: in the same batch, a later one,
/// or after a kill and restart.
const RETRY_SPREAD: u64 = 5_000;

/// Event `seq`; `copy` 1 is an ESP retry of it (same id, another raw request).
fn event(seq: usize, copy: usize) -> EmailEvent {
    delivered_event(seq, copy, RECIPIENTS)
}

/// The input: originals in id order, each retry somewhere up to RETRY_SPREAD places after
/// its original.
fn input_stream(rng: &mut Rng) -> Vec<EmailEvent> {
    let mut slots: Vec<(u64, EmailEvent)> = Vec::with_capacity(DISTINCT + DISTINCT / 4);
    for seq in 0..DISTINCT {
        slots.push((2 * seq as u64, event(seq, 0)));
        if seq % RETRY_EVERY == 0 {
            let at = seq as u64 + rng.in_range(0..RETRY_SPREAD);
            slots.push((2 * at + 1, event(seq, 1)));
        }
    }
    slots.sort_by_key(|(at, _)| *at);
    slots.into_iter().map(|(_, e)| e).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos: minutes of broker load; run by `make chaos` (scripts/chaos.sh)"]
async fn sigkilled_dedupe_stage_emits_each_event_once() {
    let mut test = KillTest::new(Stage::Dedupe, 0x6d61_696c_7069_7065, PARTITIONS);
    test.create_topics(&[(Topic::EventsUnique, PARTITIONS), (Topic::Dlq, 1)])
        .await;
    test.metrics = vec![names::DEDUPE_REDELIVERED, names::DEDUPE_DUPLICATES];

    let events = input_stream(&mut Rng::new(test.seed));
    let codec = AvroCodec::new(&test.settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&test.input_topic, EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap();
    // Keyed by recipient, as the normalize stage writes them: an id's retries are on its
    // original's partition.
    let inputs: Vec<Input> = events
        .iter()
        .map(|e| {
            let key = e.recipient.clone().unwrap().into_bytes();
            Input {
                partition: partition_of(&key, PARTITIONS),
                payload: schema.encode(e, 512).unwrap(),
                key,
            }
        })
        .collect();
    // Each distinct id once: its first copy, where it first appears.
    let mut seen = HashSet::new();
    let expected: Vec<Expected> = events
        .iter()
        .zip(&inputs)
        .filter(|(e, _)| seen.insert(e.event_id.clone()))
        .map(|(e, input)| Expected {
            id: e.event_id.clone(),
            input_partition: input.partition,
        })
        .collect();

    let run = test.run(inputs).await;

    let (unique_topic, mut observed, mut retries_passed) =
        (test.topic(Topic::EventsUnique), Vec::new(), 0);
    for output in &run.outputs {
        let id = if output.topic == unique_topic {
            let e: EmailEvent = codec.decode(&output.payload).await.unwrap();
            assert_eq!(
                output.key.as_deref(),
                e.recipient.as_deref().map(str::as_bytes),
                "key = recipient"
            );
            // A retry arrives after its original has claimed the id (same partition,
            // later offset), so it can never pass.
            if !e.raw_request_id.ends_with("-0") {
                retries_passed += 1;
            }
            e.event_id
        } else {
            let letter: DeadLetterRecord = codec.decode(&output.payload).await.unwrap();
            format!("dead letter {}: {}", letter.reason, letter.detail)
        };
        observed.push(Observed {
            topic: output.topic.clone(),
            key: output.key.clone(),
            id,
        });
    }
    test.check(&run, &compare(&expected, &observed), "events");
    assert_eq!(retries_passed, 0, "ESP retries passed the dedupe stage");
}
