//! The dedupe stage: each `mail.events` record whose `(provider, source, event_id)` was not
//! seen before is forwarded to `mail.events.unique` with the same bytes and key; copies
//! (ESP retries, replays, redeliveries of earlier stages) are completed without output.
//!
//! Per polled batch: decode only the identity of each event, claim every id in one
//! pipelined Redis round trip ([`seen`]), then produce the survivors in input order
//! ([`emit`]). An input is completed only once its output is acknowledged, or at once when
//! it is a duplicate. Redis being down holds the batch (retried with backoff) and, through
//! the in-flight limit, pauses consumption; nothing passes unchecked and nothing is dropped.
//!
//! Guarantee: every distinct id reaches the output at least once. A second copy is written
//! only when a message whose id it claimed is processed again — after a crash or a
//! rebalance between its output's acknowledgement and its offset's commit — because the
//! redelivery finds its own coordinates in Redis. ClickHouse's ReplacingMergeTree absorbs
//! those copies.

pub mod emit;
pub mod seen;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use mailpipe_avro::records::DeadLetterRecord;
use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema};
use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic, TopicNames};
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use mailpipe_stage::{OutRecord, Stage};
use mailpipe_telemetry::names;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::seen::{SeenIds, Verdict};

/// Runs the stage until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handler = DedupeHandler::new(&settings).await?;
    mailpipe_stage::run_consumer(Stage::Dedupe, &settings, handler, shutdown).await
}

/// The fields of an `EmailEvent` that identify it; the rest is never decoded.
#[derive(Debug, Deserialize)]
struct Identity {
    event_id: String,
    provider: String,
    source: String,
}

/// What one input becomes.
enum Plan {
    Claim {
        key: Vec<u8>,
        provider: &'static str,
    },
    DeadLetter(OutRecord),
}

/// Forwards each event id once.
pub struct DedupeHandler {
    codec: Arc<AvroCodec>,
    producer: FutureProducer,
    seen: SeenIds,
    key_prefix: String,
    unique_topic: String,
    dlq_topic: String,
    dlq_schema: RegisteredSchema,
}

impl DedupeHandler {
    /// Registers the dead-letter schema and creates the producer; Redis connects lazily.
    pub async fn new(settings: &Settings) -> anyhow::Result<DedupeHandler> {
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let codec = AvroCodec::new(&settings.schema_registry.url)?;
        let dlq_topic = names.name(Topic::Dlq);
        let dlq_schema = codec
            .register(&TopicSchema::new(
                &dlq_topic,
                mailpipe_avro::DEAD_LETTER_SCHEMA,
            )?)
            .await
            .context("registering the dead letter schema")?;
        let dedupe = &settings.dedupe;
        let seen = SeenIds::new(
            &settings.redis.url,
            dedupe.ttl_seconds,
            Duration::from_millis(dedupe.redis_timeout_ms),
        )?;
        Ok(DedupeHandler {
            codec: Arc::new(codec),
            producer: mailpipe_kafka::create_producer(&settings.kafka)?,
            seen,
            key_prefix: settings.redis.key_prefix.clone(),
            unique_topic: names.name(Topic::EventsUnique),
            dlq_topic,
            dlq_schema,
        })
    }

    /// The id key of one input, or its dead letter when it has no usable identity.
    async fn plan(&self, message: &OwnedMessage) -> Result<Plan, HandlerError> {
        let identity = match self.decode(message.payload().unwrap_or_default()).await {
            Ok(identity) => identity,
            Err(detail) => return self.dead_letter(message, None, "undecodable", detail),
        };
        if identity.event_id.is_empty() {
            let detail = "an event without event_id cannot be deduplicated".to_string();
            return self.dead_letter(message, Some(&identity), "no_event_id", detail);
        }
        let provider = identity
            .provider
            .parse::<Provider>()
            .map_or("unknown", Provider::as_str);
        metrics::counter!(names::DEDUPE_EVENTS, "provider" => provider).increment(1);
        let key = seen::dedupe_key(
            &self.key_prefix,
            &identity.provider,
            &identity.source,
            &identity.event_id,
        );
        Ok(Plan::Claim { key, provider })
    }

    /// Decodes, retrying while the registry is unreachable (a valid event must not be
    /// dead-lettered because of an outage); anything else is permanent.
    async fn decode(&self, payload: &[u8]) -> Result<Identity, String> {
        let mut attempt = 0u32;
        loop {
            match self.codec.decode::<Identity>(payload).await {
                Ok(identity) => return Ok(identity),
                Err(e) if e.is_retriable() => {
                    tracing::warn!(error = %e, attempt, "schema registry unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn dead_letter(
        &self,
        message: &OwnedMessage,
        identity: Option<&Identity>,
        reason: &str,
        detail: String,
    ) -> Result<Plan, HandlerError> {
        metrics::counter!(names::DEAD_LETTERS, "stage" => "dedupe", "reason" => reason.to_string())
            .increment(1);
        tracing::warn!(reason, detail = %detail, partition = message.partition(),
            offset = message.offset(), "dead-lettering an event");
        let payload = message.payload().unwrap_or_default();
        let dead = DeadLetterRecord {
            stage: "dedupe".into(),
            reason: reason.into(),
            detail,
            failed_at: now_ms(),
            topic: message.topic().into(),
            partition: message.partition(),
            offset: message.offset(),
            raw_request_id: None,
            provider: identity.map(|i| i.provider.clone()),
            source: identity.map(|i| i.source.clone()),
            payload: payload.to_vec(),
        };
        let bytes = self
            .dlq_schema
            .encode(&dead, payload.len() + 256)
            .map_err(|e| format!("encoding a dead letter: {e}"))?;
        Ok(Plan::DeadLetter(OutRecord {
            topic: self.dlq_topic.clone(),
            key: message.key().map(<[u8]>::to_vec),
            payload: bytes,
        }))
    }
}

impl Handler for DedupeHandler {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        metrics::counter!(names::DEDUPE_BATCHES).increment(1);
        metrics::gauge!(names::DEDUPE_BATCH_SIZE).set(batch.len() as f64);
        let mut plans = Vec::with_capacity(batch.len());
        let mut claims = Vec::with_capacity(batch.len());
        for delivery in &batch {
            let plan = self.plan(&delivery.message).await?;
            if let Plan::Claim { key, .. } = &plan {
                let m = &delivery.message;
                claims.push((key.clone(), seen::coordinates(m.partition(), m.offset())));
            }
            plans.push(plan);
        }
        let mut verdicts = self.seen.claim(&claims).await.into_iter();
        let mut items = Vec::with_capacity(batch.len());
        for (delivery, plan) in batch.into_iter().zip(plans) {
            let record = match plan {
                Plan::DeadLetter(record) => Some(record),
                Plan::Claim { provider, .. } => {
                    match verdicts.next().ok_or("fewer verdicts than claims")? {
                        Verdict::Duplicate => {
                            metrics::counter!(names::DEDUPE_DUPLICATES, "provider" => provider)
                                .increment(1);
                            None
                        }
                        verdict => {
                            if verdict == Verdict::Redelivered {
                                metrics::counter!(names::DEDUPE_REDELIVERED).increment(1);
                            }
                            let m = &delivery.message;
                            Some(OutRecord {
                                topic: self.unique_topic.clone(),
                                key: m.key().map(<[u8]>::to_vec),
                                payload: m.payload().unwrap_or_default().to_vec(),
                            })
                        }
                    }
                }
            };
            items.push((record, delivery.ack));
        }
        emit::emit_in_order(&self.producer, items).await;
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
