//! Producing with a bounded wait for the broker's acknowledgement.

use std::time::{Duration, Instant};

use mailpipe_settings::KafkaSettings;
use mailpipe_telemetry::names;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::KafkaError;

/// A producer with our defaults ([`crate::producer_config`]).
pub fn create_producer(settings: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    Ok(crate::producer_config(settings).create()?)
}

/// Sends one record and waits for its acknowledgement, at most `timeout`. Returns the
/// record's (partition, offset). `Ok` means the broker acknowledged it (`acks=all`); any
/// error means the caller must not report success (the record may or may not arrive).
pub async fn send_and_wait(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
    timeout: Duration,
) -> Result<(i32, i64), KafkaError> {
    let topic = record.topic.to_string();
    let started = Instant::now();
    let sent = tokio::time::timeout(timeout, producer.send(record, Timeout::After(timeout))).await;
    let outcome = match sent {
        Err(_) => Err(KafkaError::ProduceTimeout(timeout)),
        Ok(Err((e, _record))) => Err(KafkaError::Client(e)),
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
    };
    let label = if outcome.is_ok() { "ok" } else { "error" };
    metrics::counter!(names::KAFKA_PRODUCED, "topic" => topic, "outcome" => label).increment(1);
    metrics::histogram!(names::KAFKA_PRODUCE_SECONDS).record(started.elapsed().as_secs_f64());
    outcome
}
