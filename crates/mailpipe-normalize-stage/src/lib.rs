//! The normalize stage: decode each verified request, run the pure parser
//! (`mailpipe_normalize::parse`), and forward one `mail.events` record per ESP event, keyed
//! by recipient so one recipient's events stay ordered on one partition. A request that
//! cannot be parsed becomes one `mail.dlq` record with the reason and its coordinates.
//!
//! Invariant: every input message yields its events or a dead letter (never nothing,
//! except a control record, which carries no events), and is completed only after those
//! records are acknowledged.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use mailpipe_avro::records::{DeadLetterRecord, VerifiedKind, VerifiedRecord};
use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema};
use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic, TopicNames};
use mailpipe_model::Provider;
use mailpipe_normalize::{parse, ParseInput};
use mailpipe_settings::Settings;
use mailpipe_stage::{forward, OutRecord, Stage};
use mailpipe_telemetry::names;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

/// Runs the stage until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handler = NormalizeHandler::new(&settings).await?;
    mailpipe_stage::run_consumer(Stage::Normalize, &settings, handler, shutdown).await
}

/// Turns verified requests into canonical events.
pub struct NormalizeHandler {
    codec: Arc<AvroCodec>,
    producer: FutureProducer,
    events_topic: String,
    events_schema: RegisteredSchema,
    dlq_topic: String,
    dlq_schema: RegisteredSchema,
}

impl NormalizeHandler {
    /// Registers the output schemas (once, at start-up) and creates the producer.
    pub async fn new(settings: &Settings) -> anyhow::Result<NormalizeHandler> {
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let codec = AvroCodec::new(&settings.schema_registry.url)?;
        let events_topic = names.name(Topic::Events);
        let dlq_topic = names.name(Topic::Dlq);
        let events_schema = codec
            .register(&TopicSchema::new(
                &events_topic,
                mailpipe_avro::EMAIL_EVENT_SCHEMA,
            )?)
            .await
            .context("registering the email event schema")?;
        let dlq_schema = codec
            .register(&TopicSchema::new(
                &dlq_topic,
                mailpipe_avro::DEAD_LETTER_SCHEMA,
            )?)
            .await
            .context("registering the dead letter schema")?;
        Ok(NormalizeHandler {
            codec: Arc::new(codec),
            producer: mailpipe_kafka::create_producer(&settings.kafka)?,
            events_topic,
            events_schema,
            dlq_topic,
            dlq_schema,
        })
    }

    /// The records one input message becomes.
    async fn outputs(&self, message: &OwnedMessage) -> Result<Vec<OutRecord>, HandlerError> {
        let payload = message.payload().unwrap_or_default();
        let record: VerifiedRecord = match self.decode(payload).await {
            Ok(record) => record,
            Err(detail) => return self.dead_letter(message, None, "undecodable", detail),
        };
        if record.kind == VerifiedKind::Control {
            return Ok(Vec::new());
        }
        let Ok(provider) = record.provider.parse::<Provider>() else {
            let detail = format!("unknown provider {:?}", record.provider);
            return self.dead_letter(message, Some(&record), "unknown_provider", detail);
        };
        let headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let input = ParseInput {
            source: &record.source,
            raw_request_id: &record.request_id,
            received_at_ms: record.received_at,
            headers: &headers,
            query: &record.query,
            body: &record.body,
        };
        let events = match parse(provider, &input) {
            Ok(events) => events,
            Err(e) => {
                let reason = e.failure.as_str();
                return self.dead_letter(message, Some(&record), reason, e.to_string());
            }
        };
        let mut out = Vec::with_capacity(events.len());
        for event in &events {
            let payload = self
                .events_schema
                .encode(event, event.raw_event.len() + 256)
                .map_err(|e| format!("encoding an event of {provider}: {e}"))?;
            metrics::counter!(names::NORMALIZE_EVENTS, "provider" => provider.as_str(),
                "event_type" => event.event_type.as_str())
            .increment(1);
            out.push(OutRecord {
                topic: self.events_topic.clone(),
                key: event.recipient.as_ref().map(|r| r.as_bytes().to_vec()),
                payload,
            });
        }
        Ok(out)
    }

    /// Decodes, retrying while the registry is unreachable (a valid record must not be
    /// dead-lettered because of an outage); anything else is permanent.
    async fn decode(&self, payload: &[u8]) -> Result<VerifiedRecord, String> {
        let mut attempt = 0u32;
        loop {
            match self.codec.decode::<VerifiedRecord>(payload).await {
                Ok(record) => return Ok(record),
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
        record: Option<&VerifiedRecord>,
        reason: &str,
        detail: String,
    ) -> Result<Vec<OutRecord>, HandlerError> {
        metrics::counter!(names::DEAD_LETTERS, "stage" => "normalize", "reason" => reason.to_string())
            .increment(1);
        tracing::warn!(reason, detail = %detail, topic = message.topic(), partition = message.partition(),
            offset = message.offset(), "dead-lettering a request");
        let payload = message.payload().unwrap_or_default();
        let dead = DeadLetterRecord {
            stage: "normalize".into(),
            reason: reason.into(),
            detail,
            failed_at: now_ms(),
            topic: message.topic().into(),
            partition: message.partition(),
            offset: message.offset(),
            raw_request_id: record.map(|r| r.request_id.clone()),
            provider: record.map(|r| r.provider.clone()),
            source: record.map(|r| r.source.clone()),
            payload: payload.to_vec(),
        };
        let bytes = self
            .dlq_schema
            .encode(&dead, payload.len() + 256)
            .map_err(|e| format!("encoding a dead letter: {e}"))?;
        Ok(vec![OutRecord {
            topic: self.dlq_topic.clone(),
            key: record.map(|r| r.request_id.as_bytes().to_vec()),
            payload: bytes,
        }])
    }
}

impl Handler for NormalizeHandler {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        for delivery in batch {
            let outputs = self.outputs(&delivery.message).await?;
            forward(&self.producer, outputs, delivery.ack);
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
