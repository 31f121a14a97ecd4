//! Where raw records go: [`RawSink`], and its production implementation [`KafkaSink`]
//! (Avro, Confluent framing, key = request id, `acks=all` + idempotence).
//!
//! Invariant: `publish` returns `Ok` only after the broker acknowledged the record; every
//! other outcome (error, timeout) is an `Err`, so the handler can never answer 2xx for a
//! record that is not durable. The trait is the seam the handler tests use instead of a
//! broker; nothing above the handler knows which sink it talks to.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema};
use mailpipe_kafka::{KafkaError, Topic};
use mailpipe_settings::{KafkaSettings, Settings};
use mailpipe_telemetry::names;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::util::Timeout;

use crate::record::RawRequest;

pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the receiver's raw records go.
pub trait RawSink: Send + Sync + 'static {
    /// Resolves `Ok` only once the record is durable (acknowledged).
    fn publish(&self, record: RawRequest) -> SinkFuture<'_, Result<Ack, SinkError>>;
    /// Whether records can be published right now (for `/readyz`).
    fn probe(&self) -> SinkFuture<'_, bool>;
    /// Waits (at most `timeout`) for records still queued to be delivered.
    fn flush(&self, timeout: Duration) -> SinkFuture<'_, ()>;
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("kafka refused or failed the record: {0}")]
    Kafka(String),
    #[error("encoding the raw record: {0}")]
    Encode(String),
}

impl SinkError {
    /// The rejection reason label: a closed set.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::Timeout(_) => "produce_timeout",
            SinkError::Kafka(_) => "produce_failed",
            SinkError::Encode(_) => "encode_failed",
        }
    }
}

/// Produces raw records to the raw topic and waits for each acknowledgement.
///
/// Self-healing: librdkafka reconnects by itself, but an idempotent producer can be left
/// unable to deliver for ever — after a fatal error, or when a broker lost its producer
/// state (a broker restarted on wiped storage answering `UNKNOWN_PRODUCER_ID` to every
/// batch). So the producer is replaced when it is fatally failed, or when it has
/// acknowledged nothing for twice `receiver.produce_timeout_ms` (at least 10 s) although
/// it failed records meanwhile and the broker answers metadata requests (it is the
/// producer, not the broker).
pub struct KafkaSink {
    kafka: KafkaSettings,
    topic: String,
    schema: RegisteredSchema,
    timeout: Duration,
    /// (generation, producer); the generation makes sure concurrent requests replace a
    /// given producer only once.
    producer: RwLock<(u64, FutureProducer)>,
    health: Mutex<Health>,
    /// The last probe got metadata for the topic from the broker.
    reachable: AtomicBool,
    stuck_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Health {
    last_ok: Instant,
    last_failure: Option<Instant>,
    last_replaced: Instant,
}

impl KafkaSink {
    /// Registers the raw schema (once, here: no registry call per request) and creates the
    /// producer. Does not wait for the broker: `/readyz` reports when it answers.
    pub async fn start(settings: &Settings, topic: String) -> anyhow::Result<KafkaSink> {
        let registry = &settings.schema_registry.url;
        let codec = AvroCodec::new(registry)?;
        let raw_schema = Topic::Raw
            .value_schema()
            .context("mail.raw has no schema")?;
        let schema = codec
            .register(&TopicSchema::new(&topic, raw_schema)?)
            .await
            .with_context(|| format!("registering the schema of {topic} at {registry}"))?;
        let kafka = producer_settings(settings);
        let producer = mailpipe_kafka::create_producer(&kafka)
            .with_context(|| format!("creating a producer for {}", kafka.brokers))?;
        tracing::info!(topic, schema_id = schema.id(), "raw schema registered");
        let now = Instant::now();
        Ok(KafkaSink {
            stuck_after: Duration::from_millis(settings.receiver.produce_timeout_ms * 2)
                .max(Duration::from_secs(10)),
            kafka,
            topic,
            schema,
            timeout: Duration::from_millis(settings.receiver.produce_timeout_ms),
            producer: RwLock::new((0, producer)),
            health: Mutex::new(Health {
                last_ok: now,
                last_failure: None,
                last_replaced: now,
            }),
            reachable: AtomicBool::new(false),
        })
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the producer of `generation` when it can no longer deliver (see the type).
    fn heal(&self, generation: u64, producer: &FutureProducer) {
        let why = if let Some((code, reason)) = producer.client().fatal_error() {
            format!("fatal error {code}: {reason}")
        } else {
            let health = *self.health();
            let now = Instant::now();
            let stuck = self.reachable.load(Ordering::Relaxed)
                && health
                    .last_failure
                    .is_some_and(|failed| failed > health.last_ok)
                && now.duration_since(health.last_ok) >= self.stuck_after
                && now.duration_since(health.last_replaced) >= self.stuck_after;
            if !stuck {
                return;
            }
            format!(
                "no acknowledgement for {:?} while the broker answers",
                now.duration_since(health.last_ok)
            )
        };
        self.replace(generation, &why);
    }

    fn current(&self) -> (u64, FutureProducer) {
        let guard = self.producer.read().unwrap_or_else(|p| p.into_inner());
        (guard.0, guard.1.clone())
    }

    fn replace(&self, generation: u64, why: &str) {
        let mut guard = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if guard.0 != generation {
            return; // another request already replaced it
        }
        match mailpipe_kafka::create_producer(&self.kafka) {
            Ok(fresh) => {
                tracing::error!(why, "kafka producer cannot deliver; replaced it");
                metrics::counter!(names::RECEIVER_PRODUCER_RESTARTS).increment(1);
                let (_, old) = std::mem::replace(&mut *guard, (generation + 1, fresh));
                self.health().last_replaced = Instant::now();
                // Fail its queued records now (their requests answer 503 instead of
                // waiting), then destroy it off the runtime: destroying a client blocks.
                old.purge(PurgeConfig::default().queue().inflight());
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => {
                tracing::error!(why, error = %e, "kafka producer cannot deliver; replacing it failed")
            }
        }
    }
}

impl RawSink for KafkaSink {
    fn publish(&self, record: RawRequest) -> SinkFuture<'_, Result<Ack, SinkError>> {
        Box::pin(async move {
            let key = record.request_id.hyphenated().to_string();
            let hint = record.encoded_size_hint();
            let payload = self
                .schema
                .encode_value(&record.into_avro_value(), hint)
                .map_err(|e| SinkError::Encode(e.to_string()))?;
            let (generation, producer) = self.current();
            let started = Instant::now();
            let sent = FutureRecord::to(&self.topic)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            let outcome = mailpipe_kafka::send_and_wait(&producer, sent, self.timeout).await;
            let label = if outcome.is_ok() { "ok" } else { "error" };
            metrics::histogram!(names::RECEIVER_PRODUCE_SECONDS, "outcome" => label)
                .record(started.elapsed().as_secs_f64());
            match outcome {
                Ok((partition, offset)) => {
                    self.health().last_ok = Instant::now();
                    Ok(Ack { partition, offset })
                }
                Err(e) => {
                    self.health().last_failure = Some(Instant::now());
                    self.heal(generation, &producer);
                    Err(match e {
                        KafkaError::ProduceTimeout(d) => SinkError::Timeout(d),
                        other => SinkError::Kafka(other.to_string()),
                    })
                }
            }
        })
    }

    fn probe(&self) -> SinkFuture<'_, bool> {
        Box::pin(async move {
            let (generation, producer) = self.current();
            let topic = self.topic.clone();
            let probe = producer.clone();
            // Metadata requests block: off the runtime workers.
            let answered = tokio::task::spawn_blocking(move || {
                probe
                    .client()
                    .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(2)))
                    .map(|m| {
                        m.topics()
                            .iter()
                            .any(|t| t.error().is_none() && !t.partitions().is_empty())
                    })
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            self.reachable.store(answered, Ordering::Relaxed);
            self.heal(generation, &producer);
            answered && producer.client().fatal_error().is_none()
        })
    }

    fn flush(&self, timeout: Duration) -> SinkFuture<'_, ()> {
        Box::pin(async move {
            let (_, producer) = self.current();
            let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
            match flushed {
                Ok(Ok(())) => tracing::info!("producer flushed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "producer flush incomplete"),
                Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
            }
        })
    }
}

/// The Kafka settings of the receiver's producer: a record must fit the largest body
/// allowed plus its headers, so `message.max.bytes` is raised to that unless the operator
/// set it. (The broker's and topic's own limits must allow it too; see the README.)
fn producer_settings(settings: &Settings) -> KafkaSettings {
    let mut kafka = settings.kafka.clone();
    let value = settings.receiver.max_record_bytes();
    let key = "message.max.bytes";
    if !kafka.librdkafka.contains_key(key) {
        kafka
            .producer_librdkafka
            .entry(key.into())
            .or_insert_with(|| value.to_string());
    }
    kafka
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_fits_the_largest_allowed_body_unless_overridden() {
        let mut settings = Settings::load_from(None).unwrap();
        let max_bytes = |settings: &Settings| -> u64 {
            let config = mailpipe_kafka::producer_config(&producer_settings(settings));
            assert_eq!(config.get("acks"), Some("all"));
            config.get("message.max.bytes").unwrap().parse().unwrap()
        };
        let max = max_bytes(&settings);
        assert!(max > settings.receiver.max_body_bytes + 65536, "{max}");
        // The operator's value wins, in either section.
        settings
            .kafka
            .librdkafka
            .insert("message.max.bytes".into(), "2000000".into());
        assert_eq!(max_bytes(&settings), 2_000_000);
        settings.kafka.librdkafka.clear();
        settings
            .kafka
            .producer_librdkafka
            .insert("message.max.bytes".into(), "3000000".into());
        assert_eq!(max_bytes(&settings), 3_000_000);
    }
}
