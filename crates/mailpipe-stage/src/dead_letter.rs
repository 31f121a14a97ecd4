//! What every stage does with input it cannot read: decode with retries while the
//! registry is away, and write what can never be processed to `mail.dlq` with a reason.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpipe_avro::records::DeadLetterRecord;
use mailpipe_avro::{AvroCodec, RegisteredSchema, TopicSchema, DEAD_LETTER_SCHEMA};
use mailpipe_kafka::{HandlerError, Topic, TopicNames};
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use rdkafka::message::{Message, OwnedMessage};
use serde::de::DeserializeOwned;

use crate::{OutRecord, Stage};

/// Decodes a Confluent-framed record, retrying while the registry is unreachable (a
/// valid record must not be dead-lettered because of an outage). Any other failure is
/// permanent and returned as its description.
pub async fn decode_retrying<T: DeserializeOwned>(
    codec: &AvroCodec,
    payload: &[u8],
) -> Result<T, String> {
    let mut attempt = 0u32;
    loop {
        match codec.decode::<T>(payload).await {
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

/// What is known of the request a dead-lettered message came from.
#[derive(Debug, Default, Clone, Copy)]
pub struct Origin<'a> {
    pub raw_request_id: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// A stage's way to `mail.dlq`.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    stage: Stage,
    topic: String,
    schema: RegisteredSchema,
}

impl DeadLetters {
    /// Registers the dead-letter schema (once, at start-up).
    pub async fn new(
        stage: Stage,
        settings: &Settings,
        codec: &AvroCodec,
    ) -> anyhow::Result<DeadLetters> {
        let topic = TopicNames::new(&settings.kafka.topic_prefix).name(Topic::Dlq);
        let schema = codec
            .register(&TopicSchema::new(&topic, DEAD_LETTER_SCHEMA)?)
            .await
            .map_err(|e| anyhow::anyhow!("registering the dead letter schema: {e}"))?;
        Ok(DeadLetters {
            stage,
            topic,
            schema,
        })
    }

    /// The dead letter of `message`: its value byte for byte, where it came from, why.
    /// Keyed by the raw request id when known, else by the message's own key.
    pub fn record(
        &self,
        message: &OwnedMessage,
        reason: &str,
        detail: String,
        origin: Origin<'_>,
    ) -> Result<OutRecord, HandlerError> {
        metrics::counter!(names::DEAD_LETTERS, "stage" => self.stage.name(), "reason" => reason.to_string())
            .increment(1);
        tracing::warn!(stage = self.stage.name(), reason, detail = %detail, topic = message.topic(),
            partition = message.partition(), offset = message.offset(), "dead-lettering a message");
        let payload = message.payload().unwrap_or_default();
        let dead = DeadLetterRecord {
            stage: self.stage.name().into(),
            reason: reason.into(),
            detail,
            failed_at: now_ms(),
            topic: message.topic().into(),
            partition: message.partition(),
            offset: message.offset(),
            raw_request_id: origin.raw_request_id.map(str::to_string),
            provider: origin.provider.map(str::to_string),
            source: origin.source.map(str::to_string),
            payload: payload.to_vec(),
        };
        let bytes = self
            .schema
            .encode(&dead, payload.len() + 256)
            .map_err(|e| format!("encoding a dead letter: {e}"))?;
        let key = match origin.raw_request_id {
            Some(id) => Some(id.as_bytes().to_vec()),
            None => message.key().map(<[u8]>::to_vec),
        };
        Ok(OutRecord {
            topic: self.topic.clone(),
            key,
            payload: bytes,
        })
    }
}

/// Wall-clock milliseconds since the Unix epoch, for `*_at` fields of records we write.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
