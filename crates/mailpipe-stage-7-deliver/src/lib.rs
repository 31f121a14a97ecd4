//! The deliver stage (issue 19): `webhook` actions of `mail.actions` become HTTP requests
//! signed per Standard Webhooks, delivered once even when the target is down for hours.
//!
//! - [`Intake`] reads `mail.actions` (its own consumer group, at least once) and puts each
//!   executed, pending `webhook` action on the durable schedule in Redis ([`store`]); an
//!   action already pending or ended is not added again, so a redelivered record is
//!   harmless. Its offset is committed once Redis has it.
//! - [`worker`] claims due deliveries and attempts them ([`http`]: the SSRF guard, the
//!   signature, timeouts), per target limited and behind a circuit breaker; the retry
//!   schedule, `Retry-After`, 410 and the verdicts are `mailpipe-delivery-core`'s.
//! - The outbox flusher writes each ended delivery's record to `mail.actions` (outcome
//!   `delivered` or `failed`) and, for a failure, a dead letter.
//!
//! A separate binary rather than a part of the rules stage: the rules stage commits in
//! Kafka transactions and must never wait on a slow target; delivery scales by targets and
//! retries, not by partitions of events.

pub mod http;
pub mod job;
pub mod outcome;
pub mod store;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic};
use mailpipe_settings::Settings;
use mailpipe_stage::{decode_retrying, DeadLetterReason, Output, Stage, StageError, StageKit};
use mailpipe_telemetry::names;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::job::{ActionView, Job};
use crate::outcome::OutboxEntry;
use crate::store::{Store, StoreError};

/// Connects the delivery store.
pub fn connect_store(settings: &Settings) -> anyhow::Result<Store> {
    let d = &settings.delivery;
    let timeout = Duration::from_millis(d.redis_timeout_ms);
    let connection = mailpipe_runtime::redis::connect(&settings.redis.url, timeout)?;
    Ok(Store::new(connection, d.redis_prefix.clone(), timeout))
}

/// Runs the stage until `shutdown`: intake, worker and outbox flusher; if one of them
/// ends early, the others are stopped too.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = connect_store(&settings)?;
    let worker = Arc::new(worker::Worker::new(&settings.delivery, store.clone())?);
    let kit = StageKit::new(Stage::Deliver, &settings).await?;
    let outputs = Outputs {
        actions: kit.output(Topic::Actions).await?,
        deliveries: kit.output(Topic::Deliveries).await?,
    };
    let flusher = tokio::spawn(flush_outbox(
        kit.clone(),
        outputs,
        mailpipe_stage::create_producer(&settings)?,
        store.clone(),
        shutdown.clone(),
    ));
    let scheduled = worker.scheduled.clone();
    let mut delivering = tokio::spawn(worker.run(shutdown.clone()));
    let intake = Intake {
        kit,
        store,
        scheduled,
    };
    let consumer =
        mailpipe_stage::run_consumer(Stage::Deliver, &settings, intake, shutdown.clone());
    tokio::pin!(consumer);
    // The stage is all three tasks: if the worker ends before shutdown (it panicked), the
    // stage stops too rather than take deliveries in that nothing attempts.
    let (consumed, delivered) = tokio::select! {
        consumed = &mut consumer => {
            shutdown.cancel();
            (consumed, delivering.await)
        }
        delivered = &mut delivering => {
            shutdown.cancel();
            (consumer.await, delivered)
        }
    };
    let flushed = flusher.await;
    consumed?;
    delivered.map_err(|e| anyhow::anyhow!("the delivery worker panicked: {e}"))??;
    flushed.map_err(|e| anyhow::anyhow!("the outbox flusher panicked: {e}"))?;
    Ok(())
}

/// Takes `webhook` actions in from `mail.actions`.
pub struct Intake {
    kit: StageKit,
    store: Store,
    /// Wakes the worker when a delivery was scheduled.
    scheduled: Arc<tokio::sync::Notify>,
}

impl Handler for Intake {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        for Delivery { message, ack } in batch {
            let payload = message.payload().unwrap_or_default();
            let action: ActionView = match decode_retrying(self.kit.codec(), payload).await {
                Ok(a) => a,
                Err(StageError::Permanent { reason, detail }) => {
                    self.kit.dead_letter(&message, ack, reason, detail).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if job::is_pending_webhook(&action) {
                let now = worker::now_ms();
                let job = Job {
                    origin: job::Origin::new(
                        message.topic(),
                        message.partition(),
                        message.offset(),
                        payload,
                    ),
                    action,
                    attempts: 0,
                    created_ms: now,
                    last: None,
                    lease: String::new(),
                };
                let mut failures = 0;
                loop {
                    match self.store.enqueue(&job, now).await {
                        Ok(added) => {
                            if added {
                                metrics::counter!(names::DELIVERY_ENQUEUED).increment(1);
                                self.scheduled.notify_one();
                            }
                            break;
                        }
                        // The batch holds while Redis is away: nothing is skipped.
                        Err(e) => {
                            metrics::counter!(names::DELIVERY_STORE_ERRORS).increment(1);
                            tracing::warn!(error = %e, "delivery store unavailable; the batch waits");
                            failures += 1;
                            tokio::time::sleep(mailpipe_runtime::backoff(failures)).await;
                        }
                    }
                }
            }
            ack.complete();
        }
        Ok(())
    }
}

/// Outbox entries written per round.
const OUTBOX_PAGE: usize = 1000;

/// The topics the outbox is written to.
struct Outputs {
    actions: Output,
    deliveries: Output,
}

/// Writes the outbox's records — attempts to `mail.deliveries`, ended deliveries to
/// `mail.actions` (and their dead letters) — then forgets them; at least once (a record
/// written twice has the same action id and attempt or outcome).
async fn flush_outbox(
    kit: StageKit,
    outputs: Outputs,
    producer: FutureProducer,
    store: Store,
    shutdown: CancellationToken,
) {
    let mut failures = 0;
    loop {
        let flushed = flush_once(&kit, &outputs, &producer, &store).await;
        let pause = match flushed {
            Ok(n) if n > 0 => Duration::ZERO,
            Ok(_) => {
                failures = 0;
                Duration::from_millis(200)
            }
            Err(e) => {
                metrics::counter!(names::DELIVERY_STORE_ERRORS).increment(1);
                tracing::warn!(error = %e, "writing delivery outcomes failed; retrying");
                failures += 1;
                mailpipe_runtime::backoff(failures)
            }
        };
        if shutdown.is_cancelled() && pause > Duration::ZERO {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled(), if pause > Duration::from_millis(200) => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Produce(String),
}

async fn flush_once(
    kit: &StageKit,
    outputs: &Outputs,
    producer: &FutureProducer,
    store: &Store,
) -> Result<usize, FlushError> {
    let outbox = store.outbox(OUTBOX_PAGE).await?;
    // Each entry's records, sent together, then awaited: the producer batches them.
    let mut pending = Vec::with_capacity(outbox.len());
    for (key, json) in outbox {
        let records = match serde_json::from_str(&json)
            .map_err(|e| FlushError::Produce(e.to_string()))
            .and_then(|entry| entry_records(kit, outputs, entry))
        {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(outbox_key = %key, error = %e,
                    "an outbox entry cannot be made into records; set aside (unwritable)");
                store.set_aside(&key, &json).await?;
                continue;
            }
        };
        let mut sending = Vec::with_capacity(records.len());
        for record in records {
            let sent = producer
                .send_result(record.future_record())
                .map_err(|(e, _)| FlushError::Produce(format!("to {}: {e}", record.topic)))?;
            sending.push((sent, record.topic));
        }
        pending.push((key, json, sending));
    }
    let mut written = Vec::with_capacity(pending.len());
    let mut transient = None;
    for (key, json, sending) in pending {
        let mut refused = None;
        for (sent, topic) in sending {
            match sent.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if mailpipe_kafka::transaction::is_permanent(&e) => {
                    refused = Some(format!("to {topic}: {e}"));
                }
                Ok(Err((e, _))) => transient = Some(format!("to {topic}: {e}")),
                Err(_) => transient = Some(format!("to {topic}: canceled")),
            }
        }
        match refused {
            Some(e) => {
                tracing::error!(outbox_key = %key, error = %e,
                    "Kafka refuses an outbox record for good; set aside (unwritable)");
                store.set_aside(&key, &json).await?;
            }
            None => written.push((key, json)),
        }
    }
    let n = written.len();
    store.outbox_written(&written).await?;
    match transient {
        // The rest is written again in the next round.
        Some(e) => Err(FlushError::Produce(e)),
        None => Ok(n),
    }
}

/// The records of one outbox entry: an attempt's `mail.deliveries` record, or an ended
/// delivery's `mail.actions` record and, for a failure, its dead letter.
fn entry_records(
    kit: &StageKit,
    outputs: &Outputs,
    entry: OutboxEntry,
) -> Result<Vec<mailpipe_stage::OutRecord>, FlushError> {
    let produce = |e: StageError| FlushError::Produce(e.to_string());
    let ended = match entry {
        OutboxEntry::Attempt(attempt) => {
            let key = Some(attempt.action_id.clone().into_bytes());
            return Ok(vec![outputs
                .deliveries
                .record(key, &attempt, 256)
                .map_err(produce)?]);
        }
        OutboxEntry::Ended(ended) => ended,
    };
    let id = ended.record.action_id.clone();
    let mut records = vec![outputs
        .actions
        .record(Some(id.clone().into_bytes()), &ended.record, 512)
        .map_err(produce)?];
    if let Some(why) = &ended.dead_letter {
        let o = &ended.origin;
        let letter = kit
            .dead_letters()
            .kept(
                &o.topic,
                o.partition,
                o.offset,
                Some(id.as_bytes()),
                &o.payload_bytes(),
                DeadLetterReason::DeliveryFailed,
                why.clone(),
            )
            .map_err(produce)?;
        records.push(letter);
    }
    Ok(records)
}
