//! The dedupe stage against the real broker, registry and Redis: a stream with 30 %
//! duplicates comes out with each event id exactly once, in each recipient's order, with the
//! same bytes; an id already claimed by the same message (a redelivery) is emitted unless
//! that claim was confirmed (its output known acknowledged), one claimed by another message
//! is not; every emitted id ends up confirmed; and a Redis outage holds the stream — nothing
//! passes unchecked, nothing is lost — until Redis is back. Records come out under schema
//! ids registered under the output topic's own subject.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use mailpipe_avro::{
    parse_schema, schema_id, value_subject, AvroCodec, RegisteredSchema, TopicSchema,
    EMAIL_EVENT_SCHEMA,
};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_settings::Settings;
use mailpipe_stage_4_dedupe::seen::{confirmed, coordinates, dedupe_key};
use mailpipe_test_support::other_client::subject_schema_ids;
use mailpipe_test_support::redis::PrivateRedis;
use mailpipe_test_support::{
    consume_exactly, create_topic, dev_settings, free_port, schema_registry_url, unique_name,
    wait_for_committed_total, EventBuilder,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

/// Event `seq` of the stream; `copy` > 0 is an ESP retry of it (same id, new request).
fn event(seq: usize, copy: usize) -> EmailEvent {
    EventBuilder::delivered(format!("ev-{seq}"))
        .at(1_717_000_000_000 + seq as i64)
        .recipient(format!("user{}@example.com", seq % 17))
        .message_id(format!("msg-{seq}"))
        .metadata("seq", seq.to_string())
        .mta_response("250 ok")
        .raw_request_id(format!("req-{seq}-{copy}"))
        .raw_event(format!("{{\"sg_event_id\":\"ev-{seq}\",\"copy\":{copy}}}"))
        .build()
}

/// `n` distinct events, 30 % of them sent twice: the copy right behind (same batch) for
/// some, 150 places later (another batch) for others.
fn stream_with_duplicates(first: usize, n: usize) -> Vec<EmailEvent> {
    let mut out: Vec<EmailEvent> = Vec::new();
    let mut late: Vec<(usize, EmailEvent)> = Vec::new();
    for seq in first..first + n {
        out.push(event(seq, 0));
        match seq % 10 {
            0 | 1 => out.push(event(seq, 1)),
            2 => late.push((out.len() + 150, event(seq, 1))),
            _ => {}
        }
        while late.first().is_some_and(|(at, _)| *at <= out.len()) {
            out.push(late.remove(0).1);
        }
    }
    out.extend(late.into_iter().map(|(_, e)| e));
    out
}

struct Setup {
    settings: Settings,
    codec: AvroCodec,
    events_topic: String,
    unique_topic: String,
}

async fn setup(name: &str) -> Setup {
    setup_in(name, true).await
}

/// Exactly-once mode or not: the confirmations follow the transaction's commit, or the
/// outputs' acknowledgements.
async fn setup_in(name: &str, exactly_once: bool) -> Setup {
    let mut settings = dev_settings();
    settings.kafka.exactly_once = exactly_once;
    settings.kafka.topic_prefix = format!("{}.", unique_name(name));
    settings.redis.key_prefix = format!("{}:", unique_name(name));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let events_topic = names.name(Topic::Events);
    let unique_topic = names.name(Topic::EventsUnique);
    create_topic(&events_topic, 2).await;
    create_topic(&unique_topic, 2).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    Setup {
        settings,
        codec,
        events_topic,
        unique_topic,
    }
}

impl Setup {
    /// Produces in order (key = recipient) and returns each record's (partition, offset).
    async fn produce(&self, events: &[EmailEvent]) -> Vec<(i32, i64)> {
        let schema = self
            .codec
            .register(&TopicSchema::new(&self.events_topic, EMAIL_EVENT_SCHEMA).unwrap())
            .await
            .unwrap();
        let producer = mailpipe_kafka::create_producer(&self.settings.kafka).unwrap();
        let mut deliveries = Vec::new();
        for e in events {
            let payload = schema.encode(e, 512).unwrap();
            let key = e.recipient.clone().unwrap();
            let record = FutureRecord::to(&self.events_topic)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        let mut coords = Vec::new();
        for d in deliveries {
            let delivered = d.await.unwrap().unwrap();
            coords.push((delivered.partition, delivered.offset));
        }
        coords
    }

    fn reader(&self) -> StreamConsumer {
        let consumer: StreamConsumer =
            mailpipe_kafka::consumer_config(&self.settings.kafka, &unique_name("reader"))
                .create()
                .unwrap();
        consumer.subscribe(&[self.unique_topic.as_str()]).unwrap();
        consumer
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.settings.redis.url.as_str()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }
}

/// Reads until `n` records arrived (panics after `limit`), decoded, with their keys.
async fn read_n(
    codec: &AvroCodec,
    reader: &StreamConsumer,
    n: usize,
    limit: Duration,
) -> Vec<(Vec<u8>, EmailEvent)> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, reader.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records on the output", out.len()))
            .unwrap();
        let event: EmailEvent = codec.decode(m.payload().unwrap()).await.unwrap();
        out.push((m.key().unwrap().to_vec(), event));
    }
    out
}

/// Records arriving within `wait` (used to prove that nothing more comes).
async fn read_for(reader: &StreamConsumer, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while let Ok(m) = tokio::time::timeout_at(deadline.into(), reader.recv()).await {
        m.unwrap();
        n += 1;
    }
    n
}

/// Each id once, the first copy (its raw_request_id), the key = recipient, and per recipient
/// the input order of first sightings.
fn check_unique_in_order(input: &[EmailEvent], output: &[(Vec<u8>, EmailEvent)]) {
    let mut seen = HashSet::new();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in input {
        if seen.insert(e.event_id.clone()) {
            let recipient = e.recipient.clone().unwrap();
            expected
                .entry(recipient)
                .or_default()
                .push(e.raw_request_id.clone());
        }
    }
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, e) in output {
        let recipient = e.recipient.clone().unwrap();
        assert_eq!(key, recipient.as_bytes(), "key = recipient");
        got.entry(recipient)
            .or_default()
            .push(e.raw_request_id.clone());
    }
    assert_eq!(
        got, expected,
        "each id once, first copy, in each recipient's order"
    );
}

#[tokio::test]
async fn duplicates_are_dropped_and_order_is_kept() {
    duplicates_dropped_order_kept(true).await;
}

#[tokio::test]
async fn at_least_once_duplicates_are_dropped_and_order_is_kept() {
    duplicates_dropped_order_kept(false).await;
}

async fn duplicates_dropped_order_kept(exactly_once: bool) {
    let s = setup_in("dedupe", exactly_once).await;
    let mut input = stream_with_duplicates(0, 2000);
    // Three ids claimed before the stage starts: one by the very message that carries it (a
    // redelivery after a crash, output not confirmed: emitted), one by the very message with
    // its output confirmed (a redelivery after the confirmation: not emitted), one by another
    // message (a duplicate: not emitted).
    input.push(event(90_001, 0));
    input.push(event(90_003, 0));
    input.push(event(90_002, 0));
    let coords = s.produce(&input).await;
    let mut redis = s.redis().await;
    let key_of = |e: &EmailEvent| {
        dedupe_key(
            &s.settings.redis.key_prefix,
            "sendgrid",
            "main",
            &e.event_id,
        )
    };
    let n = input.len();
    let own = |i: usize| coordinates(coords[i].0, coords[i].1);
    let (p, o) = coords[n - 1];
    for (i, value) in [
        (n - 3, own(n - 3)),
        (n - 2, confirmed(&own(n - 2))),
        (n - 1, coordinates(p, o + 100_000)),
    ] {
        let _: () = redis::cmd("SET")
            .arg(key_of(&input[i]))
            .arg(value)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let taken = input.pop().unwrap();
    let written = input.pop().unwrap();

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_4_dedupe::run(
        s.settings.clone(),
        shutdown.clone(),
    ));
    let reader = s.reader();
    let distinct: HashSet<&str> = input.iter().map(|e| e.event_id.as_str()).collect();
    let output = read_n(&s.codec, &reader, distinct.len(), Duration::from_secs(90)).await;
    assert_eq!(
        read_for(&reader, Duration::from_secs(3)).await,
        0,
        "nothing more"
    );
    check_unique_in_order(&input, &output);
    assert!(output.iter().all(|(_, e)| e.event_id != taken.event_id));
    assert!(output.iter().all(|(_, e)| e.event_id != written.event_id));
    // Same bytes, not a re-encoding: the raw event of the first copy is there verbatim.
    let first = output.iter().find(|(_, e)| e.event_id == "ev-0").unwrap();
    assert_eq!(first.1, event(0, 0));
    // Duplicates are completed too: the whole input ends up committed.
    let group = format!("{}mailpipe-dedupe", s.settings.kafka.topic_prefix);
    let committed = wait_for_committed_total(&group, &s.events_topic, 2, coords.len() as i64).await;
    assert_eq!(committed, coords.len() as i64);
    // Every emitted id ends up confirmed with the coordinates of the message that claimed it
    // (its first copy); the confirmation follows the acks, so it may trail the commit.
    let mut expected = BTreeMap::new();
    for (e, &(p, o)) in input.iter().zip(&coords) {
        expected
            .entry(key_of(e))
            .or_insert_with(|| confirmed(&coordinates(p, o)));
    }
    let keys: Vec<&Vec<u8>> = expected.keys().collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .unwrap();
        let unconfirmed = expected
            .values()
            .zip(&values)
            .filter(|(want, got)| got.as_ref() != Some(*want))
            .count();
        if unconfirmed == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unconfirmed} of {} emitted ids not confirmed",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    stage.await.unwrap().unwrap();
    println!(
        "{} inputs ({} + 2 pre-claimed, not emitted) -> {} unique on the output, all confirmed",
        input.len() + 2,
        input.len(),
        output.len()
    );
}

#[tokio::test]
async fn a_redis_outage_holds_the_stream_and_loses_nothing() {
    let mut s = setup("dedupe_outage").await;
    let port = free_port();
    let mut redis = PrivateRedis::start(port, tempfile::tempdir().unwrap());
    s.settings.redis.url = format!("redis://127.0.0.1:{port}");
    s.settings.dedupe.redis_timeout_ms = 500;
    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_4_dedupe::run(
        s.settings.clone(),
        shutdown.clone(),
    ));
    let reader = s.reader();

    // Before: 500 distinct ids go through.
    let before = stream_with_duplicates(0, 500);
    s.produce(&before).await;
    let mut output = read_n(&s.codec, &reader, 500, Duration::from_secs(90)).await;

    // Outage: Redis stops; the second part repeats 200 ids of the first and adds 500 new
    // ones. Nothing may come out while Redis is away: it could not be checked.
    redis.stop();
    let mut after: Vec<EmailEvent> = (300..500).map(|seq| event(seq, 2)).collect();
    after.extend(stream_with_duplicates(500, 500));
    s.produce(&after).await;
    let during = read_for(&reader, Duration::from_secs(10)).await;
    assert_eq!(during, 0, "records passed while Redis was down");

    // Back (same data): exactly the 500 new ids follow, without a restart of the stage.
    let redis = redis.restart();
    let started = Instant::now();
    output.extend(read_n(&s.codec, &reader, 500, Duration::from_secs(60)).await);
    let resumed_after = started.elapsed();
    assert_eq!(
        read_for(&reader, Duration::from_secs(3)).await,
        0,
        "nothing more"
    );
    let input: Vec<EmailEvent> = before.into_iter().chain(after).collect();
    check_unique_in_order(&input, &output);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
    drop(redis);
    println!("outage 10 s: 0 records during; all 500 new ids within {resumed_after:?} after Redis came back");
}

/// Input records whose writer schema was registered by another client, in a layout of its
/// own: the dedupe stage registers that schema under the output topic's subject too, and
/// its records come out under an id of that subject, with the same Avro datum.
#[tokio::test]
async fn output_records_carry_schema_ids_of_the_output_subject() {
    let s = setup("dedupe-ids").await;
    // Another client registers the schema text as written, whitespace and all.
    let registry = schema_registry_url();
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{registry}/subjects/{}/versions",
            value_subject(&s.events_topic)
        ))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": EMAIL_EVENT_SCHEMA }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let input_id = u32::try_from(response["id"].as_u64().unwrap()).unwrap();
    let writer =
        RegisteredSchema::new(input_id, parse_schema(EMAIL_EVENT_SCHEMA).unwrap()).unwrap();
    let input: Vec<EmailEvent> = (0..20).map(|seq| event(seq, 0)).collect();
    let producer = mailpipe_kafka::create_producer(&s.settings.kafka).unwrap();
    let mut datums = HashSet::new();
    for e in &input {
        let payload = writer.encode(e, 512).unwrap();
        datums.insert(payload[5..].to_vec());
        let key = e.recipient.clone().unwrap();
        let record = FutureRecord::to(&s.events_topic)
            .key(key.as_bytes())
            .payload(payload.as_slice());
        mailpipe_kafka::send_and_wait(&producer, record, Duration::from_secs(10))
            .await
            .unwrap();
    }

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_4_dedupe::run(
        s.settings.clone(),
        shutdown.clone(),
    ));
    let output = consume_exactly(&s.unique_topic, input.len()).await;
    let subject_ids = subject_schema_ids(&value_subject(&s.unique_topic)).await;
    assert_eq!(subject_ids.len(), 1, "one writer schema, one version");
    for (_, payload) in &output {
        assert_eq!(schema_id(payload), Some(subject_ids[0]));
        assert!(
            datums.contains(&payload[5..]),
            "the datum is forwarded as it is"
        );
        let event: EmailEvent = s.codec.decode(payload).await.unwrap();
        assert!(input.contains(&event), "{event:?}");
    }
    shutdown.cancel();
    stage.await.unwrap().unwrap();
    println!(
        "input schema id {input_id}, output schema id {} under {}",
        subject_ids[0],
        value_subject(&s.unique_topic)
    );
}
