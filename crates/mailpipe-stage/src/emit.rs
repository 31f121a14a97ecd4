//! Producing the records derived from a batch of inputs, in input order, and completing
//! each input's ack once all its records are acknowledged. Every stage writes through
//! this ([`Emitter`]).
//!
//! Exactly-once mode ([`Emitter::staging`]): nothing is produced here; each input's ack is
//! completed at once with its records and the dead letter to use should one of them never
//! be producible, and the consumer loop commits them with the input offsets in one Kafka
//! transaction (`mailpipe_kafka::transaction`). The rest of this page is the at-least-once
//! mode ([`Emitter::producing`]).
//!
//! Order: every record of a batch is handed to the producer here, in input order, and a
//! full local queue makes [`Emitter::emit`] wait (that is the backpressure) instead of
//! letting a later record go first. librdkafka keeps the enqueue order per partition, and
//! the idempotent producer keeps it across its own retries; so the outputs of one key
//! reach their partition in input order. One task per batch then awaits the
//! acknowledgements in order.
//!
//! Failures: a record whose delivery failed after all (message timeout) is produced again
//! with backoff for as long as it takes, in a task of its own, its input uncompleted
//! meanwhile (the partition's commit waits; past the in-flight limit it pauses). Only such
//! a retry may land after later records, and it may write a record twice (a timeout after
//! the broker stored it); downstream dedupe by `event_id` absorbs the copy.
//!
//! A record that can never be produced (over the producer's or the topic's size limit,
//! or refused by the broker for good) is not a reason to stop a partition: its input is
//! dead-lettered instead ([`DeadLetters::unproducible`]: coordinates, the produce error,
//! a bounded head of the input's value) and completed once that dead letter is
//! acknowledged; the input's other records are still produced. Only a dead letter that
//! cannot be produced either (a broker or configuration problem) stops the stage: the ack
//! is dropped, the consumer loop reports it abandoned, and nothing is skipped.

use std::time::Duration;

use mailpipe_kafka::transaction::is_permanent;
use mailpipe_kafka::{Ack, OutRecord, Staged, Unproducible};
use mailpipe_telemetry::names;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::util::Timeout;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dead_letter::{DeadLetters, InputRef};

/// One input of a batch: what it is, the records derived from it (none: completed at
/// once), its ack, and a tag handed back once its records are acknowledged at the first
/// attempt, or committed in exactly-once mode (dedupe's id claims to confirm; `()`
/// elsewhere).
pub struct Emission<T = ()> {
    pub input: InputRef,
    pub records: Vec<OutRecord>,
    pub ack: Ack,
    pub tag: Option<T>,
}

/// A stage's way to its output topics and to `mail.dlq`.
#[derive(Clone)]
pub struct Emitter {
    /// None: exactly-once mode, the consumer loop produces in its transactions.
    producer: Option<FutureProducer>,
    dead_letters: DeadLetters,
}

/// A record handed to the producer, or why it could not be.
enum Attempt {
    Enqueued(DeliveryFuture),
    /// Delivery failed (None: the delivery report was lost, e.g. the producer closed).
    Failed(Option<KafkaError>),
}

impl Emitter {
    /// At-least-once mode: records are produced here, acks completed once acknowledged.
    pub fn producing(producer: FutureProducer, dead_letters: DeadLetters) -> Emitter {
        Emitter {
            producer: Some(producer),
            dead_letters,
        }
    }

    /// Exactly-once mode: records are handed to the consumer loop with the acks.
    pub fn staging(dead_letters: DeadLetters) -> Emitter {
        Emitter {
            producer: None,
            dead_letters,
        }
    }

    /// Enqueues every record of `emissions` in order (waiting while the producer's queue is
    /// full) and returns once all are enqueued. The returned task completes each ack as its
    /// records are acknowledged and yields the tags of the inputs whose records were all
    /// acknowledged at the first attempt (inputs that needed a retry or a dead letter are
    /// completed later, by tasks of their own, and give no tag). In exactly-once mode the
    /// acks are completed at once with their records, and the task yields the tags of the
    /// inputs as their transaction commits.
    pub async fn emit<T: Send + 'static>(&self, emissions: Vec<Emission<T>>) -> JoinHandle<Vec<T>> {
        let Some(producer) = &self.producer else {
            return self.stage(emissions);
        };
        let mut enqueued = Vec::with_capacity(emissions.len());
        for emission in emissions {
            if emission.records.is_empty() {
                emission.ack.complete();
                continue;
            }
            let mut attempts = Vec::with_capacity(emission.records.len());
            for record in &emission.records {
                attempts.push(enqueue(producer, record).await);
            }
            enqueued.push((emission, attempts));
        }
        let producing = Producing {
            producer: producer.clone(),
            dead_letters: self.dead_letters.clone(),
        };
        tokio::spawn(async move {
            let mut acknowledged = Vec::with_capacity(enqueued.len());
            for (emission, attempts) in enqueued {
                let mut records = emission.records.into_iter().zip(attempts);
                let mut failed = None;
                for (record, attempt) in records.by_ref() {
                    match attempt {
                        Attempt::Enqueued(delivery) => match delivery.await {
                            Ok(Ok(_)) => count(&record, "ok"),
                            Ok(Err((e, _))) => failed = Some((record, Attempt::Failed(Some(e)))),
                            Err(_canceled) => failed = Some((record, Attempt::Failed(None))),
                        },
                        failure @ Attempt::Failed(_) => failed = Some((record, failure)),
                    }
                    if failed.is_some() {
                        break;
                    }
                }
                match failed {
                    None => {
                        emission.ack.complete();
                        acknowledged.extend(emission.tag);
                    }
                    Some(first) => {
                        let rest: Vec<_> = std::iter::once(first).chain(records).collect();
                        let producing = producing.clone();
                        let (input, ack) = (emission.input, emission.ack);
                        tokio::spawn(async move { producing.recover(input, rest, ack).await });
                    }
                }
            }
            acknowledged
        })
    }

    /// Exactly-once mode: completes each ack with its records and the dead letter that
    /// replaces them should one never be producible; the task yields the tags of the inputs
    /// whose transaction committed (an aborted one's inputs are committed by a later one).
    fn stage<T: Send + 'static>(&self, emissions: Vec<Emission<T>>) -> JoinHandle<Vec<T>> {
        let mut waiting = Vec::new();
        for emission in emissions {
            let committed = match emission.tag {
                Some(tag) => {
                    let (tx, rx) = oneshot::channel();
                    waiting.push((rx, tag));
                    Some(tx)
                }
                None => None,
            };
            let (dead_letters, input) = (self.dead_letters.clone(), emission.input);
            let on_unproducible: Unproducible = Box::new(move |record, error| {
                dead_letters
                    .unproducible(&input, record, error)
                    .inspect_err(|e| tracing::error!(error = %e, "cannot build a dead letter"))
                    .ok()
            });
            emission.ack.complete_with(Staged {
                records: emission.records,
                on_unproducible: Some(on_unproducible),
                committed,
            });
        }
        tokio::spawn(async move {
            let mut committed = Vec::with_capacity(waiting.len());
            for (rx, tag) in waiting {
                if rx.await.is_ok() {
                    committed.push(tag);
                }
            }
            committed
        })
    }
}

/// The at-least-once mode's producer, for the tasks that settle failed deliveries.
#[derive(Clone)]
struct Producing {
    producer: FutureProducer,
    dead_letters: DeadLetters,
}

impl Producing {
    /// Settles an input's remaining records one by one (retrying, or dead-lettering the
    /// input for a record that can never be produced), then completes its ack; drops it
    /// (stopping the stage) only when a dead letter cannot be produced either.
    async fn recover(&self, input: InputRef, records: Vec<(OutRecord, Attempt)>, ack: Ack) {
        for (record, attempt) in records {
            let Err(error) = self.deliver(&record, attempt).await else {
                continue;
            };
            count(&record, "unproducible");
            tracing::error!(topic = %record.topic, bytes = record.payload.len(), error = %error,
                "record can never be produced; dead-lettering its input");
            let letter = match self.dead_letters.unproducible(&input, &record, &error) {
                Ok(letter) => letter,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build a dead letter; stopping the stage");
                    return;
                }
            };
            let attempt = enqueue(&self.producer, &letter).await;
            if let Err(e) = self.deliver(&letter, attempt).await {
                tracing::error!(topic = %letter.topic, error = %e,
                    "dead letter can never be produced; stopping the stage");
                return;
            }
        }
        ack.complete();
    }

    /// Waits for a record's delivery, producing it again with backoff while that fails
    /// transiently. Err: it can never be produced.
    async fn deliver(&self, record: &OutRecord, attempt: Attempt) -> Result<(), KafkaError> {
        let error = match attempt {
            Attempt::Enqueued(delivery) => match delivery.await {
                Ok(Ok(_)) => {
                    count(record, "ok");
                    return Ok(());
                }
                Ok(Err((e, _))) => Some(e),
                Err(_canceled) => None,
            },
            Attempt::Failed(error) => error,
        };
        match error {
            Some(e) if is_permanent(&e) => return Err(e),
            Some(e) => {
                tracing::warn!(topic = %record.topic, error = %e, "delivery failed; retrying")
            }
            None => tracing::warn!(topic = %record.topic, "delivery report lost; retrying"),
        }
        let mut attempt = 0;
        loop {
            count(record, "retry");
            tokio::time::sleep(mailpipe_runtime::backoff(attempt)).await;
            attempt += 1;
            match self
                .producer
                .send(record.future_record(), Timeout::Never)
                .await
            {
                Ok(_) => {
                    count(record, "ok");
                    return Ok(());
                }
                Err((e, _)) if is_permanent(&e) => return Err(e),
                Err((e, _)) => {
                    tracing::warn!(topic = %record.topic, error = %e, attempt, "produce failed; retrying");
                }
            }
        }
    }
}

/// Hands one record to the producer, waiting while its queue is full.
async fn enqueue(producer: &FutureProducer, record: &OutRecord) -> Attempt {
    loop {
        match producer.send_result(record.future_record()) {
            Ok(delivery) => return Attempt::Enqueued(delivery),
            Err((e, _)) if is_permanent(&e) => return Attempt::Failed(Some(e)),
            Err((e, _)) => {
                if e.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                    tracing::warn!(topic = %record.topic, error = %e, "enqueue failed; retrying");
                }
                // The queue drains as the broker acknowledges; librdkafka polls on its
                // own thread, so waiting here is enough.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

fn count(record: &OutRecord, outcome: &'static str) {
    metrics::counter!(names::KAFKA_PRODUCED, "topic" => record.topic.clone(), "outcome" => outcome)
        .increment(1);
}
