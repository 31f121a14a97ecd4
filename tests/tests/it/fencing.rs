//! Fencing (exactly-once mode): a second instance of a stage started under the same
//! `[kafka] instance_id` — hence the same transactional id — fences the first. The first
//! stops with a "fenced" error at its next transaction instead of committing anything
//! more, the second takes over its partitions, and the output holds every event exactly
//! once as a `read_committed` reader sees it.

use std::time::{Duration, Instant};

use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_test_support::{
    committed_total, create_topic, delivered_event, dev_settings, event_id_counts, produce_events,
    topic_record_count, unique_name,
};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 2;

fn event(seq: usize) -> EmailEvent {
    delivered_event(seq, 0, 13)
}

/// Polls `done` every 250 ms until it holds, at most `limit`.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_id_fences_the_first() {
    let mut settings = dev_settings();
    settings.kafka.exactly_once = true;
    settings.kafka.instance_id = "same".into();
    settings.kafka.topic_prefix = format!("{}.", unique_name("fence"));
    settings.redis.key_prefix = format!("{}:", unique_name("fence"));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let (events, unique) = (names.name(Topic::Events), names.name(Topic::EventsUnique));
    create_topic(&events, PARTITIONS).await;
    create_topic(&unique, PARTITIONS).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let group = format!("{}mailpipe-dedupe", settings.kafka.topic_prefix);

    let first_stop = CancellationToken::new();
    let first = tokio::spawn(mailpipe_stage_4_dedupe::run(
        settings.clone(),
        first_stop.clone(),
    ));
    produce_events(
        settings.clone(),
        events.clone(),
        (0..100).map(event).collect(),
    )
    .await;
    let count = unique.clone();
    wait_until(
        "the first instance forwards 100 events",
        Duration::from_secs(60),
        || topic_record_count(&count) >= 100,
    )
    .await;

    // Same instance id: its initialization fences the first instance's producer.
    let second_stop = CancellationToken::new();
    let second = tokio::spawn(mailpipe_stage_4_dedupe::run(
        settings.clone(),
        second_stop.clone(),
    ));
    // Give the second time to initialize and join, then feed both partitions.
    tokio::time::sleep(Duration::from_secs(5)).await;
    produce_events(
        settings.clone(),
        events.clone(),
        (100..300).map(event).collect(),
    )
    .await;

    let outcome = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the fenced instance stops by itself")
        .unwrap();
    let error = format!("{:#}", outcome.expect_err("the first instance must fail"));
    println!("first instance stopped: {error}");
    assert!(error.contains("fenced"), "{error}");
    assert!(!second.is_finished(), "the second instance runs on");

    let (g, t) = (group.clone(), events.clone());
    wait_until(
        "the second instance commits the whole input",
        Duration::from_secs(90),
        || committed_total(&g, &t, PARTITIONS) >= 300,
    )
    .await;
    let counts = event_id_counts(&unique).await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "events on the output more than once: {twice:?}"
    );
    assert_eq!(counts.len(), 300, "every event on the output");

    second_stop.cancel();
    second.await.unwrap().unwrap();
}
