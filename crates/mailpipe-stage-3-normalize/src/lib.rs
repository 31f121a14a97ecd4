//! The normalize stage: decode each verified request, run the pure parser
//! (`mailpipe_normalize_core::parse`), and forward one `mail.events` record per ESP event, keyed
//! by recipient so one recipient's events stay ordered on one partition. A request that
//! cannot be parsed becomes one `mail.dlq` record with the reason and its coordinates.
//!
//! Invariant: every input message yields its events or a dead letter (never nothing,
//! except a control record, which carries no events), and is completed only after those
//! records are acknowledged. An event that can never be produced (too large) adds an
//! `unproducible` dead letter of its input instead (`mailpipe_stage::emit`).

use std::sync::Arc;

use anyhow::Context;
use mailpipe_avro::event_datum::EventEncoder;
use mailpipe_avro::records::{VerifiedKind, VerifiedRecord};
use mailpipe_avro::{AvroCodec, TopicSchema};
use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic, TopicNames};
use mailpipe_model::Provider;
use mailpipe_normalize_core::{parse, ParseInput};
use mailpipe_settings::Settings;
use mailpipe_stage::{
    decode_retrying, DeadLetters, Emission, Emitter, InputRef, Origin, OutRecord, Stage,
};
use mailpipe_telemetry::names;
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

/// Runs the stage until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handler = NormalizeHandler::new(&settings).await?;
    mailpipe_stage::run_consumer(Stage::Normalize, &settings, handler, shutdown).await
}

/// Turns verified requests into canonical events.
pub struct NormalizeHandler {
    codec: Arc<AvroCodec>,
    emitter: Emitter,
    events_topic: String,
    events_encoder: EventEncoder,
    dead_letters: DeadLetters,
}

impl NormalizeHandler {
    /// Registers the output schemas (once, at start-up) and creates the producer.
    pub async fn new(settings: &Settings) -> anyhow::Result<NormalizeHandler> {
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let codec = AvroCodec::new(&settings.schema_registry.url)?;
        let events_topic = names.name(Topic::Events);
        let events_schema = codec
            .register(&TopicSchema::new(
                &events_topic,
                mailpipe_avro::EMAIL_EVENT_SCHEMA,
            )?)
            .await
            .context("registering the email event schema")?;
        let events_encoder = EventEncoder::new(events_schema)?;
        let dead_letters = DeadLetters::new(Stage::Normalize, settings, &codec).await?;
        Ok(NormalizeHandler {
            codec: Arc::new(codec),
            emitter: mailpipe_stage::emitter(Stage::Normalize, settings, dead_letters.clone())?,
            events_topic,
            events_encoder,
            dead_letters,
        })
    }

    /// The records one input message becomes, and what is kept of the input should one of
    /// them never be producible.
    async fn outputs(
        &self,
        message: &OwnedMessage,
    ) -> Result<(Vec<OutRecord>, InputRef), HandlerError> {
        let payload = message.payload().unwrap_or_default();
        let record: VerifiedRecord = match decode_retrying(&self.codec, payload).await {
            Ok(record) => record,
            Err(detail) => {
                let input = InputRef::new(message, Origin::default());
                return Ok((
                    self.dead_letter(message, None, "undecodable", detail)?,
                    input,
                ));
            }
        };
        let input = InputRef::new(message, origin(Some(&record)));
        Ok((self.outputs_of(message, &record).await?, input))
    }

    /// The events of a decoded verified request, or its dead letter.
    async fn outputs_of(
        &self,
        message: &OwnedMessage,
        record: &VerifiedRecord,
    ) -> Result<Vec<OutRecord>, HandlerError> {
        if record.kind == VerifiedKind::Control {
            return Ok(Vec::new());
        }
        let Ok(provider) = record.provider.parse::<Provider>() else {
            let detail = format!("unknown provider {:?}", record.provider);
            return self.dead_letter(message, Some(record), "unknown_provider", detail);
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
                return self.dead_letter(message, Some(record), reason, e.to_string());
            }
        };
        let mut out = Vec::with_capacity(events.len());
        for event in &events {
            let payload = self.events_encoder.encode(event);
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

    fn dead_letter(
        &self,
        message: &OwnedMessage,
        record: Option<&VerifiedRecord>,
        reason: &str,
        detail: String,
    ) -> Result<Vec<OutRecord>, HandlerError> {
        Ok(vec![self.dead_letters.record(
            message,
            reason,
            detail,
            origin(record),
        )?])
    }
}

/// What a verified record tells of the request it came from.
fn origin(record: Option<&VerifiedRecord>) -> Origin<'_> {
    Origin {
        raw_request_id: record.map(|r| r.request_id.as_str()),
        provider: record.map(|r| r.provider.as_str()),
        source: record.map(|r| r.source.as_str()),
    }
}

impl Handler for NormalizeHandler {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        let mut emissions: Vec<Emission> = Vec::with_capacity(batch.len());
        for delivery in batch {
            let (records, input) = self.outputs(&delivery.message).await?;
            emissions.push(Emission {
                input,
                records,
                ack: delivery.ack,
                tag: None,
            });
        }
        // The whole batch in input order: one recipient's events keep their order.
        self.emitter.emit(emissions).await;
        Ok(())
    }
}
