//! Produce the records derived from one input message, then complete its ack.

use mailpipe_kafka::Ack;
use mailpipe_telemetry::names;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl OutRecord {
    fn future_record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let record = FutureRecord::to(&self.topic).payload(self.payload.as_slice());
        match &self.key {
            Some(key) => record.key(key.as_slice()),
            None => record,
        }
    }
}

/// Produces `records` and completes `ack` once all are acknowledged.
///
/// The records are handed to the producer right here, in the caller's order, so the
/// outputs of consecutive inputs keep their order on each partition (librdkafka keeps the
/// order of what was enqueued; idempotence keeps it across its own retries). Waiting for
/// the acknowledgements happens in a task of its own, so the handler goes on with its
/// batch; the consumer loop bounds how many inputs are outstanding.
///
/// A record that failed (or could not even be enqueued because the local queue was full)
/// is produced again with backoff for as long as it takes: the input stays uncompleted
/// meanwhile, so its partition's commit waits and, past the in-flight limit, the partition
/// pauses. Such a retry can land after later records, and can write a record twice (a
/// timeout after the broker stored it); downstream dedupe by `event_id` absorbs the copy.
/// Only an error that can never succeed (a record over the broker's size limit) gives up:
/// the ack is dropped, which stops the stage loudly instead of skipping the message.
pub fn forward(producer: &FutureProducer, records: Vec<OutRecord>, ack: Ack) {
    let enqueued: Vec<(OutRecord, Option<DeliveryFuture>)> = records
        .into_iter()
        .map(|record| {
            let delivery = producer.send_result(record.future_record()).ok();
            (record, delivery)
        })
        .collect();
    let producer = producer.clone();
    tokio::spawn(async move {
        for (record, delivery) in enqueued {
            let first_attempt = match delivery {
                Some(delivery) => matches!(delivery.await, Ok(Ok(_))),
                None => false,
            };
            if first_attempt {
                count(&record, "ok");
            } else if !produce_until_acknowledged(&producer, &record).await {
                return;
            }
        }
        ack.complete();
    });
}

/// Retries one record until it is acknowledged (true) or can never be (false).
async fn produce_until_acknowledged(producer: &FutureProducer, record: &OutRecord) -> bool {
    let mut attempt = 0;
    loop {
        count(record, "retry");
        tokio::time::sleep(crate::backoff(attempt)).await;
        attempt += 1;
        match producer.send(record.future_record(), Timeout::Never).await {
            Ok(_) => {
                count(record, "ok");
                return true;
            }
            Err((e, _)) if is_permanent(&e) => {
                tracing::error!(topic = %record.topic, error = %e, "record can never be produced; stopping the stage");
                return false;
            }
            Err((e, _)) => {
                tracing::warn!(topic = %record.topic, error = %e, attempt, "produce failed; retrying");
            }
        }
    }
}

fn count(record: &OutRecord, outcome: &'static str) {
    metrics::counter!(names::KAFKA_PRODUCED, "topic" => record.topic.clone(), "outcome" => outcome)
        .increment(1);
}

fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}
