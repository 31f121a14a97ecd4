//! The normalize stage: decode each verified request, run the pure parser
//! (`mailpipe_normalize_core::parse`), and forward one `mail.events` record per ESP event, keyed
//! by recipient so one recipient's events stay ordered on one partition. A request that
//! cannot be parsed becomes one `mail.dlq` record with the reason and its coordinates.
//! The stage is a [`MessageHandler`] on the stage kit's per-message frame, which decodes,
//! dead-letters and emits; the field-by-field event encoder is `mailpipe_avro::event_datum`.
//!
//! Invariant: every input message yields its events or a dead letter (never nothing,
//! except a control record, which carries no events), and is completed only after those
//! records are acknowledged. An event that can never be produced (too large) adds an
//! `unproducible` dead letter of its input instead (`mailpipe_stage::emit`).

pub mod enrich;

use mailpipe_avro::event_datum::EventEncoder;
use mailpipe_avro::records::{VerifiedKind, VerifiedRecord};
use mailpipe_kafka::Topic;
use mailpipe_model::{EmailEvent, Provider};
use mailpipe_normalize_core::{parse, ParseInput};
use mailpipe_settings::Settings;
use mailpipe_stage::{
    DeadLetterReason, MessageHandler, Origin, OutRecord, Pass, PerMessage, Processed, Stage,
    StageError, StageKit,
};
use mailpipe_telemetry::names;
use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;

use crate::enrich::Enricher;

/// Runs the stage until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    mailpipe_stage::kit::run::<PerMessage<NormalizeHandler>>(Stage::Normalize, &settings, shutdown)
        .await
}

/// Turns verified requests into canonical events.
pub struct NormalizeHandler {
    events_topic: String,
    events_encoder: EventEncoder,
    enricher: Enricher,
}

impl MessageHandler for NormalizeHandler {
    type Input = VerifiedRecord;

    /// Registers the events schema (once, at start-up).
    async fn new(kit: &StageKit) -> anyhow::Result<NormalizeHandler> {
        let events = kit.output(Topic::Events).await?;
        Ok(NormalizeHandler {
            enricher: Enricher::from_settings(&kit.settings().enrichment)?,
            events_encoder: EventEncoder::new(events.schema)?,
            events_topic: events.topic,
        })
    }

    fn origin(record: &VerifiedRecord) -> Origin<'_> {
        Origin {
            raw_request_id: Some(record.request_id.as_str()),
            provider: Some(record.provider.as_str()),
            source: Some(record.source.as_str()),
        }
    }

    /// The events of a decoded verified request (none for a control record).
    async fn process(
        &mut self,
        _kit: &StageKit,
        _message: &OwnedMessage,
        record: VerifiedRecord,
        _pass: Pass,
    ) -> Result<Processed, StageError> {
        self.events_of(&record).map(Processed::Records)
    }
}

/// The canonical events of a verified request (its provider and them), enriched, or why it
/// has none (a permanent error: its dead letter's reason). The stage's parsing, also used
/// by `mailpipe replay`.
pub fn parse_verified(
    record: &VerifiedRecord,
    enricher: &Enricher,
) -> Result<(Provider, Vec<EmailEvent>), StageError> {
    let Ok(provider) = record.provider.parse::<Provider>() else {
        let detail = format!("unknown provider {:?}", record.provider);
        return Err(StageError::permanent(
            DeadLetterReason::UnknownProvider,
            detail,
        ));
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
    match parse(provider, &input) {
        Ok(mut events) => {
            for event in &mut events {
                enricher.enrich(event);
            }
            Ok((provider, events))
        }
        Err(e) => {
            let reason = DeadLetterReason::Unparseable(e.failure);
            Err(StageError::permanent(reason, e.to_string()))
        }
    }
}

impl NormalizeHandler {
    fn events_of(&self, record: &VerifiedRecord) -> Result<Vec<OutRecord>, StageError> {
        if record.kind == VerifiedKind::Control {
            return Ok(Vec::new());
        }
        let (provider, events) = parse_verified(record, &self.enricher)?;
        if events.is_empty() {
            // A request that holds no email event (Postal's report on a message it
            // received): completed without output, counted, never silently.
            metrics::counter!(names::NORMALIZE_REQUESTS_WITHOUT_EVENTS,
                "provider" => provider.as_str())
            .increment(1);
        }
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
}
