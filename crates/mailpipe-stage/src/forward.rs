//! Produce the records derived from one input message, then complete its ack.

use mailpipe_kafka::Ack;
use mailpipe_telemetry::names;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Produces `records` in order and completes `ack` once all are acknowledged. Runs in its
/// own task so the handler can go on with the batch; the consumer loop bounds how many are
/// outstanding (in-flight limit per partition).
///
/// A failed produce is retried with backoff for as long as it takes: the input message
/// stays uncompleted meanwhile, so its partition's commit waits and, past the in-flight
/// limit, the partition pauses. Retrying may write a record twice (a timeout after the
/// broker stored it); downstream dedupe by `event_id` absorbs that. Only an error that can
/// never succeed (a record over the broker's size limit) gives up: the ack is dropped,
/// which stops the stage loudly instead of skipping the message.
pub fn forward(producer: &FutureProducer, records: Vec<OutRecord>, ack: Ack) {
    let producer = producer.clone();
    tokio::spawn(async move {
        for record in &records {
            let mut attempt = 0;
            loop {
                let mut future_record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&record.topic).payload(record.payload.as_slice());
                if let Some(key) = &record.key {
                    future_record = future_record.key(key.as_slice());
                }
                match producer.send(future_record, Timeout::Never).await {
                    Ok(_) => {
                        metrics::counter!(names::KAFKA_PRODUCED, "topic" => record.topic.clone(), "outcome" => "ok")
                            .increment(1);
                        break;
                    }
                    Err((e, _)) if is_permanent(&e) => {
                        tracing::error!(topic = %record.topic, error = %e, "record can never be produced; stopping the stage");
                        return;
                    }
                    Err((e, _)) => {
                        metrics::counter!(names::KAFKA_PRODUCED, "topic" => record.topic.clone(), "outcome" => "retry")
                            .increment(1);
                        tracing::warn!(topic = %record.topic, error = %e, attempt, "produce failed; retrying");
                        tokio::time::sleep(crate::backoff(attempt)).await;
                        attempt += 1;
                    }
                }
            }
        }
        ack.complete();
    });
}

fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}
