//! Aborted transactions (exactly-once mode): the broker is SIGKILLed while the dedupe stage
//! works through a stream, and restarted on its own data a few seconds later. The
//! transactions under way fail and are aborted (or the producer is fenced and the stage
//! ends, and is restarted here as a supervisor would); their inputs are committed again
//! afterwards. A `read_committed` reader of the output sees every event exactly once.
//! The broker is a process of this test's own (`scripts/stack.sh kafka-exec`, free ports);
//! the registry and Redis are the stack's.
//!
//! Ignored in `make test`: about one run in four stalls after the broker is back (the
//! restarted stage is assigned its partitions, then no output reaches the reader, no
//! error logged; no copy and no loss seen in any run). Not understood yet; by hand:
//! `cargo test -p mailpipe-tests --test it -- transaction_abort:: --ignored --nocapture`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mailpipe_avro::AvroCodec;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_settings::Settings;
use mailpipe_test_support::broker::KafkaBroker;
use mailpipe_test_support::{
    create_topic_on, delivered_event, dev_settings, produce_events, unique_name,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 4_000;
const PARTITIONS: i32 = 2;

fn event(seq: usize) -> EmailEvent {
    delivered_event(seq, 0, 29)
}

/// The stage in-process; its task yields how it ended.
fn start_stage(settings: &Settings) -> (CancellationToken, JoinHandle<Result<(), String>>) {
    let stop = CancellationToken::new();
    let run = mailpipe_stage_4_dedupe::run(settings.clone(), stop.clone());
    let stage = tokio::spawn(async move { run.await.map_err(|e| format!("{e:#}")) });
    (stop, stage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stalls in about one run of four after the broker's restart; run by hand"]
async fn a_broker_crash_aborts_transactions_and_every_event_comes_out_once() {
    let dir: PathBuf = std::env::temp_dir().join(unique_name("txn-abort"));
    let mut broker = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || KafkaBroker::start_new(&dir)
    })
    .await
    .unwrap();
    let mut settings = dev_settings();
    // The stage's log (warnings and up by default) shows what the transactions went through.
    let _ = mailpipe_telemetry::init_logging(&settings.telemetry);
    settings.kafka.brokers = broker.bootstrap();
    settings.kafka.exactly_once = true;
    settings.kafka.instance_id = "abort-test".into();
    settings.kafka.topic_prefix = format!("{}.", unique_name("txnabort"));
    settings.redis.key_prefix = format!("{}:", unique_name("txnabort"));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let (events, unique) = (names.name(Topic::Events), names.name(Topic::EventsUnique));
    for (topic, partitions) in [(&events, PARTITIONS), (&unique, PARTITIONS)] {
        create_topic_on(&settings.kafka.brokers, topic, partitions).await;
    }
    create_topic_on(&settings.kafka.brokers, &names.name(Topic::Dlq), 1).await;

    // The input is produced in the background, riding out the outage (long delivery
    // timeout), while the stage forwards it.
    let producing = tokio::spawn(produce_events(
        settings.clone(),
        events.clone(),
        (0..EVENTS).map(event).collect(),
    ));
    let (mut stop, mut stage) = start_stage(&settings);

    let reader: StreamConsumer =
        mailpipe_kafka::consumer_config(&settings.kafka, &unique_name("reader"))
            .create()
            .unwrap();
    reader.subscribe(&[unique.as_str()]).unwrap();
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    // Records by their coordinates: the broker's restart may make the reader fetch records
    // it already had again (a re-read, not a second copy on the topic).
    let mut records: HashMap<(i32, i64), String> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut rereads = 0;
    let mut killed = false;
    let mut restarts = 0;
    let started = Instant::now();
    while counts.len() < EVENTS {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "only {} of {EVENTS} events after 240 s",
            counts.len()
        );
        if stage.is_finished() {
            // Fenced by the broker's recovery, or failed: restart, as a supervisor would.
            let ended = stage.await.unwrap();
            println!("the stage ended ({ended:?}); restarting it");
            restarts += 1;
            assert!(restarts <= 3, "the stage keeps ending");
            (stop, stage) = start_stage(&settings);
        }
        let Ok(m) = tokio::time::timeout(Duration::from_millis(500), reader.recv()).await else {
            continue;
        };
        let Ok(m) = m else { continue };
        let event: EmailEvent = codec.decode(m.payload().unwrap()).await.unwrap();
        if records
            .insert((m.partition(), m.offset()), event.event_id.clone())
            .is_some()
        {
            rereads += 1;
            continue;
        }
        *counts.entry(event.event_id).or_default() += 1;
        if !killed && counts.len() >= EVENTS / 10 {
            killed = true;
            println!("killing the broker after {} events", counts.len());
            broker.kill();
            tokio::time::sleep(Duration::from_secs(4)).await;
            broker = tokio::task::spawn_blocking(move || {
                broker.start();
                broker
            })
            .await
            .unwrap();
            println!("broker back after {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    // Anything more would be a second copy.
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await {
        let event: EmailEvent = codec.decode(m.payload().unwrap()).await.unwrap();
        if records
            .insert((m.partition(), m.offset()), event.event_id.clone())
            .is_none()
        {
            *counts.entry(event.event_id).or_default() += 1;
        }
    }
    producing.await.unwrap();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    println!(
        "{} events out, {} more than once, {rereads} records read again by the reader, \
         {restarts} stage restarts, {:.1} s",
        counts.len(),
        counts.values().filter(|n| **n > 1).count(),
        started.elapsed().as_secs_f64()
    );
    assert!(killed, "the broker was killed mid-stream");
    assert!(twice.is_empty(), "events seen more than once: {twice:?}");
    assert_eq!(counts.len(), EVENTS);
    stop.cancel();
    let _ = stage.await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
