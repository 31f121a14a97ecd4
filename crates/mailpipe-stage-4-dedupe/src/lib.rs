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
//! Once a batch's outputs are acknowledged, their ids are confirmed in one more pipelined
//! round trip (the key's value becomes `partition:offset:c`), after their inputs' acks are
//! completed; a failed confirmation is logged and counted, never retried or waited for.
//!
//! Exactly-once mode (the default): the outputs and input offsets commit in one Kafka
//! transaction (`mailpipe_kafka::transaction`), and the confirmation is written after the
//! commit. A redelivered message's output was then never committed, so re-emitting it on
//! its own unconfirmed claim is right and no extra copy exists; the confirmation only
//! spares a replay (offsets reset) of a committed message. The argument is in
//! ARCHITECTURE.md ("Dedupe's claims under transactions"). The rest of this paragraph is
//! the at-least-once mode.
//!
//! Guarantee: every distinct id reaches the output at least once. A message processed again
//! (after a crash or a rebalance before its offset's commit) finds its own coordinates in
//! Redis: unconfirmed, it is emitted again, since its output may never have been written;
//! confirmed, its output is known acknowledged and it is completed without output. So a
//! second copy is written only when the stage dies (or loses the partition) after Kafka
//! acknowledged an output and before its batch's confirmation reached Redis, or when that
//! confirmation failed. ClickHouse's ReplacingMergeTree absorbs those copies.
//!
//! Schemas: each writer schema id met in the input is registered once under
//! `mail.events.unique-value` too (topic name strategy: a consumer that looks a topic's
//! schema up by subject finds it), and the records are forwarded under the id the registry
//! gives it there; on Confluent-compatible registries that is the same id, so the bytes
//! are forwarded as they are. A registry that refuses the schema there stops the stage
//! with the registry's reason, before anything of the batch is written or completed.

pub mod emit;
pub mod seen;

use std::collections::HashMap;
use std::time::Duration;

use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic};
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use mailpipe_stage::{
    registry_retrying, DeadLetterReason, InputRef, Origin, OutRecord, Stage, StageError,
    StageHandler, StageKit,
};
use mailpipe_telemetry::names;
use rdkafka::message::{Message, OwnedMessage};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::emit::Item;
use crate::seen::{Confirmations, SeenIds, Verdict};

/// Runs the stage until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    mailpipe_stage::kit::run::<DedupeHandler>(Stage::Dedupe, &settings, shutdown).await
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

/// Forwards each event id once. It uses the kit's decoding, dead letters and emitter but
/// not the per-message frame: its Redis claims are one round trip per batch.
pub struct DedupeHandler {
    kit: StageKit,
    seen: SeenIds,
    confirmations: Confirmations,
    key_prefix: String,
    unique_topic: String,
    /// Input writer schema id -> its id under the output topic's subject.
    unique_schema_ids: HashMap<u32, u32>,
}

impl StageHandler for DedupeHandler {
    /// Redis connects lazily.
    async fn build(kit: StageKit) -> anyhow::Result<DedupeHandler> {
        let settings = kit.settings();
        let dedupe = &settings.dedupe;
        let seen = SeenIds::new(
            &settings.redis.url,
            dedupe.ttl_seconds,
            Duration::from_millis(dedupe.redis_timeout_ms),
        )?;
        Ok(DedupeHandler {
            confirmations: seen.confirmations(),
            seen,
            key_prefix: settings.redis.key_prefix.clone(),
            unique_topic: kit.topic(Topic::EventsUnique),
            unique_schema_ids: HashMap::new(),
            kit,
        })
    }
}

impl DedupeHandler {
    /// The stage's handler on a kit of its own (benches build it outside [`run`]).
    pub async fn new(settings: &Settings) -> anyhow::Result<DedupeHandler> {
        DedupeHandler::build(StageKit::new(Stage::Dedupe, settings).await?).await
    }

    /// The id key of one input, or its dead letter when it has no usable identity.
    async fn plan(&self, message: &OwnedMessage) -> Result<Plan, StageError> {
        let identity = match self.kit.decode::<Identity>(message).await {
            Ok(identity) => identity,
            Err(StageError::Permanent { reason, detail }) => {
                return self.dead_letter(message, None, reason, detail)
            }
            Err(e) => return Err(e),
        };
        if identity.event_id.is_empty() {
            let detail = "an event without event_id cannot be deduplicated".to_string();
            let reason = DeadLetterReason::NoEventId;
            return self.dead_letter(message, Some(&identity), reason, detail);
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

    /// The output value of a forwarded input: its bytes, under the schema id its writer
    /// schema has in the output topic's subject (registered there on first sight, retried
    /// while the registry is unreachable).
    async fn unique_payload(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandlerError> {
        // The input decoded, so it is Confluent-framed.
        let id = mailpipe_avro::schema_id(payload).ok_or("a decoded record without schema id")?;
        let unique_id = match self.unique_schema_ids.get(&id) {
            Some(unique_id) => *unique_id,
            None => {
                let unique_id = self.register_under_unique(id).await?;
                self.unique_schema_ids.insert(id, unique_id);
                unique_id
            }
        };
        let mut out = payload.to_vec();
        if unique_id != id {
            out[1..5].copy_from_slice(&unique_id.to_be_bytes());
        }
        Ok(out)
    }

    async fn register_under_unique(&self, id: u32) -> Result<u32, HandlerError> {
        let unique_id = registry_retrying(|| {
            self.kit
                .codec()
                .register_under_topic(&self.unique_topic, id)
        })
        .await?;
        tracing::info!(schema_id = id, unique_id, topic = %self.unique_topic,
            "writer schema registered under the output topic's subject");
        Ok(unique_id)
    }

    fn dead_letter(
        &self,
        message: &OwnedMessage,
        identity: Option<&Identity>,
        reason: DeadLetterReason,
        detail: String,
    ) -> Result<Plan, StageError> {
        let origin = Origin {
            raw_request_id: None,
            provider: identity.map(|i| i.provider.as_str()),
            source: identity.map(|i| i.source.as_str()),
        };
        Ok(Plan::DeadLetter(
            self.kit
                .dead_letters()
                .record(message, reason, detail, origin)?,
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
            let mut plan = self.plan(&delivery.message).await?;
            if let Plan::Claim { key, .. } = &mut plan {
                // The key moves to the claim; the plan keeps its place in the batch.
                let m = &delivery.message;
                claims.push((
                    std::mem::take(key),
                    seen::coordinates(m.partition(), m.offset()),
                ));
            }
            plans.push(plan);
        }
        let verdicts = self.seen.claim(&claims).await;
        let mut claimed = claims.into_iter().zip(verdicts);
        let mut items = Vec::with_capacity(batch.len());
        for (delivery, plan) in batch.into_iter().zip(plans) {
            let (record, claim) = match plan {
                Plan::DeadLetter(record) => (Some(record), None),
                Plan::Claim { provider, .. } => {
                    let (claim, verdict) = claimed.next().ok_or("fewer verdicts than claims")?;
                    match verdict {
                        Verdict::Duplicate => {
                            metrics::counter!(names::DEDUPE_DUPLICATES, "provider" => provider)
                                .increment(1);
                            (None, None)
                        }
                        Verdict::Confirmed => {
                            metrics::counter!(names::DEDUPE_REDELIVERED_CONFIRMED).increment(1);
                            (None, None)
                        }
                        Verdict::New | Verdict::Redelivered => {
                            if verdict == Verdict::Redelivered {
                                metrics::counter!(names::DEDUPE_REDELIVERED).increment(1);
                            }
                            let m = &delivery.message;
                            let payload =
                                self.unique_payload(m.payload().unwrap_or_default()).await?;
                            let record = OutRecord {
                                topic: self.unique_topic.clone(),
                                key: m.key().map(<[u8]>::to_vec),
                                payload,
                            };
                            (Some(record), Some(claim))
                        }
                    }
                }
            };
            items.push(Item {
                records: record.into_iter().collect(),
                input: InputRef::new(&delivery.message, Origin::default()),
                ack: delivery.ack,
                tag: claim,
            });
        }
        emit::emit_in_order(self.kit.emitter(), items, Some(&self.confirmations)).await;
        Ok(())
    }
}
