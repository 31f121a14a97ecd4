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
use std::time::Duration;

use mailpipe_avro::AvroCodec;
use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic, TopicNames};
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use mailpipe_stage::{decode_retrying, DeadLetters, Origin, OutRecord, Stage};
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
    dead_letters: DeadLetters,
}

impl DedupeHandler {
    /// Registers the dead-letter schema and creates the producer; Redis connects lazily.
    pub async fn new(settings: &Settings) -> anyhow::Result<DedupeHandler> {
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let codec = AvroCodec::new(&settings.schema_registry.url)?;
        let dead_letters = DeadLetters::new(Stage::Dedupe, settings, &codec).await?;
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
            dead_letters,
        })
    }

    /// The id key of one input, or its dead letter when it has no usable identity.
    async fn plan(&self, message: &OwnedMessage) -> Result<Plan, HandlerError> {
        let identity =
            match decode_retrying::<Identity>(&self.codec, message.payload().unwrap_or_default())
                .await
            {
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

    fn dead_letter(
        &self,
        message: &OwnedMessage,
        identity: Option<&Identity>,
        reason: &str,
        detail: String,
    ) -> Result<Plan, HandlerError> {
        let origin = Origin {
            raw_request_id: None,
            provider: identity.map(|i| i.provider.as_str()),
            source: identity.map(|i| i.source.as_str()),
        };
        Ok(Plan::DeadLetter(
            self.dead_letters.record(message, reason, detail, origin)?,
        ))
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
