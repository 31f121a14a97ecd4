//! The shared consumer loop against the real broker: only the contiguous completed prefix
//! is committed, a restart resumes exactly there, and a dropped ack stops the loop.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailpipe_kafka::{consumer, Ack, Delivery, Handler, HandlerError, LoopConfig};
use mailpipe_test_support::{create_topic, dev_settings, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const MESSAGES: i64 = 50;

/// Completes every message except `hold` (kept, never completed), in reverse order within
/// each batch, so completions arrive out of order.
struct OutOfOrder {
    hold: Option<i64>,
    held: Arc<Mutex<Vec<Ack>>>,
    seen: Arc<Mutex<Vec<i64>>>,
}

impl Handler for OutOfOrder {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        for delivery in batch.into_iter().rev() {
            let offset = delivery.message.offset();
            self.seen.lock().unwrap().push(offset);
            if Some(offset) == self.hold {
                self.held.lock().unwrap().push(delivery.ack);
            } else {
                delivery.ack.complete();
            }
        }
        Ok(())
    }
}

fn loop_config() -> LoopConfig {
    LoopConfig {
        max_in_flight_per_partition: 1000,
        max_batch: 7,
        batch_wait: Duration::from_millis(5),
        commit_interval: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        health: Default::default(),
    }
}

async fn produce(topic: &str, count: i64) {
    let settings = dev_settings();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();
    for i in 0..count {
        let payload = i.to_string();
        let record = FutureRecord::to(topic)
            .payload(payload.as_bytes())
            .key(b"k".as_slice());
        mailpipe_kafka::send_and_wait(&producer, record, Duration::from_secs(10))
            .await
            .unwrap();
    }
}

fn committed(group: &str, topic: &str) -> Option<i64> {
    let settings = dev_settings();
    let consumer: BaseConsumer = mailpipe_kafka::consumer_config(&settings.kafka, group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let offsets = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    match offsets.find_partition(topic, 0).unwrap().offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn start(
    topic: &str,
    group: &str,
    handler: OutOfOrder,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), mailpipe_kafka::KafkaError>>,
) {
    let settings = dev_settings();
    let client = mailpipe_kafka::consumer_config(&settings.kafka, group);
    let shutdown = CancellationToken::new();
    let topics = vec![topic.to_string()];
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        consumer::run(client, &topics, loop_config(), handler, None, token).await
    });
    (shutdown, task)
}

#[tokio::test]
async fn out_of_order_completion_commits_only_the_contiguous_prefix_and_restart_resumes_there() {
    let topic = unique_name("loop");
    let group = unique_name("group");
    create_topic(&topic, 1).await;
    produce(&topic, MESSAGES).await;

    // First run: offset 20 is never completed; everything else is, out of order.
    let held = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (shutdown, task) = start(
        &topic,
        &group,
        OutOfOrder {
            hold: Some(20),
            held: held.clone(),
            seen: seen.clone(),
        },
    );
    wait_for("all messages delivered", || {
        seen.lock().unwrap().len() == MESSAGES as usize
    })
    .await;
    wait_for("prefix commit", || committed(&group, &topic) == Some(20)).await;
    // Several commit intervals later it still must not pass the held message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(committed(&group, &topic), Some(20));
    shutdown.cancel();
    task.await.unwrap().expect("clean shutdown");
    assert_eq!(committed(&group, &topic), Some(20), "final commit");
    drop(held);

    // Second run, same group: starts exactly at the first uncompleted offset.
    let seen_again = Arc::new(Mutex::new(Vec::new()));
    let (shutdown, task) = start(
        &topic,
        &group,
        OutOfOrder {
            hold: None,
            held: Arc::new(Mutex::new(Vec::new())),
            seen: seen_again.clone(),
        },
    );
    wait_for("redelivery of the rest", || {
        seen_again.lock().unwrap().len() == (MESSAGES - 20) as usize
    })
    .await;
    wait_for("full commit", || {
        committed(&group, &topic) == Some(MESSAGES)
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().expect("clean shutdown");
    let redelivered: BTreeSet<i64> = seen_again.lock().unwrap().iter().copied().collect();
    let expected: BTreeSet<i64> = (20..MESSAGES).collect();
    assert_eq!(
        redelivered, expected,
        "nothing before the committed prefix again, nothing uncompleted skipped"
    );
}

/// Drops one ack without completing it: the loop must stop with an error rather than
/// commit past it.
struct DropsAnAck;

impl Handler for DropsAnAck {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        for delivery in batch {
            if delivery.message.offset() == 3 {
                drop(delivery.ack);
            } else {
                delivery.ack.complete();
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_abandoned_ack_stops_the_loop_without_committing_past_it() {
    let topic = unique_name("abandon");
    let group = unique_name("group");
    create_topic(&topic, 1).await;
    produce(&topic, 10).await;
    let settings = dev_settings();
    let client = mailpipe_kafka::consumer_config(&settings.kafka, &group);
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        consumer::run(
            client,
            std::slice::from_ref(&topic),
            loop_config(),
            DropsAnAck,
            None,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("loop stops by itself");
    match result {
        Err(mailpipe_kafka::KafkaError::Abandoned { offset, .. }) => assert_eq!(offset, 3),
        other => panic!("expected Abandoned, got {other:?}"),
    }
    let committed = committed(&group, &topic);
    assert!(
        committed.is_none_or(|o| o <= 3),
        "committed {committed:?} past the abandoned offset"
    );
}

/// Holds every ack until told to release them; counts deliveries.
struct Holds {
    held: Arc<Mutex<Vec<Ack>>>,
    seen: Arc<Mutex<Vec<i64>>>,
}

impl Handler for Holds {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        for delivery in batch {
            self.seen.lock().unwrap().push(delivery.message.offset());
            self.held.lock().unwrap().push(delivery.ack);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_partition_with_too_much_in_flight_is_paused_then_resumed() {
    let topic = unique_name("pause");
    let group = unique_name("group");
    create_topic(&topic, 1).await;
    produce(&topic, MESSAGES).await;
    let held = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let settings = dev_settings();
    let client = mailpipe_kafka::consumer_config(&settings.kafka, &group);
    let config = LoopConfig {
        max_in_flight_per_partition: 10,
        ..loop_config()
    };
    let shutdown = CancellationToken::new();
    let handler = Holds {
        held: held.clone(),
        seen: seen.clone(),
    };
    let token = shutdown.clone();
    let topics = vec![topic.clone()];
    let task =
        tokio::spawn(
            async move { consumer::run(client, &topics, config, handler, None, token).await },
        );

    wait_for("the first deliveries", || seen.lock().unwrap().len() >= 10).await;
    // Paused: nothing more arrives while the ten are outstanding.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let while_paused = seen.lock().unwrap().len();
    assert!(
        while_paused <= 10,
        "{while_paused} messages delivered despite an in-flight limit of 10"
    );
    // Completing work resumes the partition; release in rounds until everything arrived.
    wait_for("everything after resuming", || {
        for ack in held.lock().unwrap().drain(..) {
            ack.complete();
        }
        seen.lock().unwrap().len() == MESSAGES as usize
    })
    .await;
    for ack in held.lock().unwrap().drain(..) {
        ack.complete();
    }
    wait_for("full commit", || {
        committed(&group, &topic) == Some(MESSAGES)
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().expect("clean shutdown");
    println!("delivered while paused: {while_paused} (limit 10)");
}

/// Completes every ack a little later, from another task, like a stage waiting for
/// produce acknowledgements.
struct CompletesLater {
    seen: Arc<Mutex<Vec<i64>>>,
}

impl Handler for CompletesLater {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        let mut acks = Vec::with_capacity(batch.len());
        for delivery in batch {
            self.seen.lock().unwrap().push(delivery.message.offset());
            acks.push(delivery.ack);
        }
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            for ack in acks {
                ack.complete();
            }
        });
        Ok(())
    }
}

/// Dozens of pause/resume cycles: every offset is delivered and committed. The input is
/// produced with the client's normal batching (many records per batch), so a resume often
/// starts in the middle of a record batch.
#[tokio::test]
async fn many_pause_resume_cycles_deliver_every_offset() {
    const N: i64 = 5_000;
    let topic = unique_name("cycles");
    let group = unique_name("group");
    create_topic(&topic, 1).await;
    let settings = dev_settings();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();
    let mut pending = Vec::new();
    for i in 0..N {
        let payload = i.to_string();
        let record = FutureRecord::to(&topic)
            .payload(payload.as_bytes())
            .key(b"k".as_slice());
        pending.push(producer.send_result(record).unwrap());
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = mailpipe_kafka::consumer_config(&settings.kafka, &group);
    let config = LoopConfig {
        max_in_flight_per_partition: 100,
        max_batch: 50,
        ..loop_config()
    };
    let shutdown = CancellationToken::new();
    let handler = CompletesLater { seen: seen.clone() };
    let (token, topics) = (shutdown.clone(), vec![topic.clone()]);
    let task =
        tokio::spawn(
            async move { consumer::run(client, &topics, config, handler, None, token).await },
        );
    for _ in 0..300 {
        if committed(&group, &topic) == Some(N) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let progress = (committed(&group, &topic), seen.lock().unwrap().len());
    println!("committed, deliveries: {progress:?}");
    {
        let seen = seen.lock().unwrap();
        let jumps: Vec<(i64, i64)> = seen
            .windows(2)
            .filter(|w| w[1] != w[0] + 1)
            .map(|w| (w[0], w[1]))
            .take(10)
            .collect();
        println!("delivery jumps (from, to): {jumps:?}");
    }
    assert_eq!(progress.0, Some(N), "every offset committed");
    shutdown.cancel();
    task.await.unwrap().expect("clean shutdown");
    let delivered: BTreeSet<i64> = seen.lock().unwrap().iter().copied().collect();
    let missing: Vec<i64> = (0..N).filter(|o| !delivered.contains(o)).take(10).collect();
    assert!(missing.is_empty(), "offsets never delivered: {missing:?}");
    println!("{} deliveries for {N} offsets", seen.lock().unwrap().len());
}
