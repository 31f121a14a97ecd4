//! Forwarding a batch's outputs in input order, and the no-op forwarder the bench compares
//! the stage with.
//!
//! `mailpipe_stage::forward` spawns one task per input; tasks spawned together do not
//! start in spawn order (tokio runs the most recently spawned first), so two events of one
//! recipient in one batch could reach the producer swapped. Here every record of a batch is
//! handed to the producer synchronously, in input order (librdkafka keeps that order per
//! partition, and the idempotent producer keeps it across its own retries); one task then
//! waits for the acknowledgements and completes each input's ack. A record whose delivery
//! failed after all (message timeout) is handed to `forward`, which retries it until it is
//! acknowledged; only then may it land after later records.
//!
//! Once the batch's records are acknowledged (their inputs' acks completed first, so the
//! commit never waits for Redis), the same task confirms their ids in one pipelined round
//! trip ([`Confirmations`]). A record that went through `forward` is not confirmed: at
//! worst it is emitted again on a redelivery.

use std::time::Duration;

use mailpipe_kafka::{Ack, Delivery, Handler, HandlerError};
use mailpipe_stage::{forward, OutRecord};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::seen::{Claim, Confirmations};

/// One input of a batch.
pub struct Item {
    /// Its output; None when there is none (a duplicate): the ack is completed at once.
    pub record: Option<OutRecord>,
    pub ack: Ack,
    /// The id claim to confirm once `record` is acknowledged.
    pub claim: Option<Claim>,
}

/// Produces the records in order and completes each ack once its record is acknowledged;
/// an input without a record (a duplicate) is completed at once. Then, with
/// `confirmations`, confirms the claims of the records acknowledged at the first attempt,
/// in one round trip. Returns once every record is enqueued; a full producer queue makes it
/// wait, which is the backpressure.
pub async fn emit_in_order(
    producer: &FutureProducer,
    items: Vec<Item>,
    confirmations: Option<&Confirmations>,
) {
    let mut waiting = Vec::with_capacity(items.len());
    for Item { record, ack, claim } in items {
        let Some(record) = record else {
            ack.complete();
            continue;
        };
        match enqueue(producer, &record).await {
            Some(delivery) => waiting.push((record, delivery, ack, claim)),
            // Never producible: the ack is dropped, which stops the stage loudly (the
            // consumer loop reports it abandoned) instead of skipping the message.
            None => drop(ack),
        }
    }
    if waiting.is_empty() {
        return;
    }
    let producer = producer.clone();
    let mut confirmations = confirmations.cloned();
    tokio::spawn(async move {
        let mut acknowledged = Vec::with_capacity(waiting.len());
        for (record, delivery, ack, claim) in waiting {
            match delivery.await {
                Ok(Ok(_)) => {
                    metrics::counter!(mailpipe_telemetry::names::KAFKA_PRODUCED,
                        "topic" => record.topic.clone(), "outcome" => "ok")
                    .increment(1);
                    ack.complete();
                    acknowledged.extend(claim);
                }
                Ok(Err((e, _))) => {
                    tracing::warn!(topic = %record.topic, error = %e, "delivery failed; retrying");
                    forward(&producer, vec![record], ack);
                }
                Err(_canceled) => forward(&producer, vec![record], ack),
            }
        }
        if let Some(confirmations) = &mut confirmations {
            confirmations.confirm(&acknowledged).await;
        }
    });
}

/// Hands one record to the producer, waiting while its queue is full.
async fn enqueue(producer: &FutureProducer, record: &OutRecord) -> Option<DeliveryFuture> {
    loop {
        let mut future_record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&record.topic).payload(record.payload.as_slice());
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        match producer.send_result(future_record) {
            Ok(delivery) => return Some(delivery),
            Err((e, _)) if is_permanent(&e) => {
                tracing::error!(topic = %record.topic, error = %e,
                    "record can never be produced; stopping the stage");
                return None;
            }
            Err((e, _)) => {
                if e.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                    tracing::warn!(topic = %record.topic, error = %e, "enqueue failed; retrying");
                }
                // The queue drains as the broker acknowledges; librdkafka polls on its own
                // thread, so waiting here is enough.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}

/// The bench's baseline: forwards every input unchanged to `topic` through the same
/// consumer loop and the same in-order producing, with no decoding and no Redis.
pub struct ForwardAll {
    pub producer: FutureProducer,
    pub topic: String,
}

impl Handler for ForwardAll {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        let items = batch
            .into_iter()
            .map(|d| {
                let record = OutRecord {
                    topic: self.topic.clone(),
                    key: d.message.key().map(<[u8]>::to_vec),
                    payload: d.message.payload().unwrap_or_default().to_vec(),
                };
                Item {
                    record: Some(record),
                    ack: d.ack,
                    claim: None,
                }
            })
            .collect();
        emit_in_order(&self.producer, items, None).await;
        Ok(())
    }
}
