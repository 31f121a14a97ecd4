//! What every stage does with input it cannot read: decode with retries while the
//! registry is away, and write what can never be processed to `mail.dlq` with a reason —
//! also an input whose output can never be produced (`unproducible`, see [`crate::emit`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpipe_avro::records::DeadLetterRecord;
use mailpipe_avro::{AvroCodec, AvroError, RegisteredSchema, TopicSchema};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use rdkafka::message::{Message, OwnedMessage};
use serde::de::DeserializeOwned;

use crate::error::{DeadLetterReason, StageError};
use crate::{OutRecord, Stage};

/// Decodes a Confluent-framed record, retrying while the registry is unreachable (a
/// valid record must not be dead-lettered because of an outage). Any other failure is
/// permanent: [`DeadLetterReason::Undecodable`].
pub async fn decode_retrying<T: DeserializeOwned>(
    codec: &AvroCodec,
    payload: &[u8],
) -> Result<T, StageError> {
    registry_retrying(|| codec.decode::<T>(payload))
        .await
        .map_err(|e| StageError::permanent(DeadLetterReason::Undecodable, e.to_string()))
}

/// Runs a schema registry call again, with backoff, for as long as the registry is
/// unreachable; returns its result or its first permanent error.
pub async fn registry_retrying<T, F, Fut>(mut call: F) -> Result<T, AvroError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AvroError>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, attempt, "schema registry unavailable; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
                attempt += 1;
            }
            result => return result,
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
    /// `mail.raw`: its records carry every request header, credentials included, so
    /// their dead letters keep coordinates, never bytes.
    raw_topic: String,
    schema: RegisteredSchema,
}

impl DeadLetters {
    /// Registers the dead-letter schema (once, at start-up).
    pub async fn new(
        stage: Stage,
        settings: &Settings,
        codec: &AvroCodec,
    ) -> anyhow::Result<DeadLetters> {
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let topic = names.name(Topic::Dlq);
        let schema = Topic::Dlq
            .value_schema()
            .ok_or_else(|| anyhow::anyhow!("mail.dlq has no schema"))?;
        let schema = codec
            .register(&TopicSchema::new(&topic, schema)?)
            .await
            .map_err(|e| anyhow::anyhow!("registering the dead letter schema: {e}"))?;
        Ok(DeadLetters {
            stage,
            topic,
            raw_topic: names.name(Topic::Raw),
            schema,
        })
    }

    /// The dead letter of `message`: its value byte for byte (none for a `mail.raw`
    /// record, see [`Self::copies_payload_of`]), where it came from, why. Keyed by the raw
    /// request id when known, else by the message's own key.
    pub fn record(
        &self,
        message: &OwnedMessage,
        reason: DeadLetterReason,
        detail: String,
        origin: Origin<'_>,
    ) -> Result<OutRecord, StageError> {
        let input = Input {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            origin,
        };
        self.letter(
            &input,
            reason,
            detail,
            message.payload().unwrap_or_default(),
        )
    }

    /// The dead letter of an input kept by the stage past its commit (a `webhook` action
    /// whose delivery failed for good): its coordinates, key and value as they were read.
    #[allow(clippy::too_many_arguments)]
    pub fn kept(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        reason: DeadLetterReason,
        detail: String,
    ) -> Result<OutRecord, StageError> {
        let input = Input {
            topic,
            partition,
            offset,
            key,
            origin: Origin::default(),
        };
        self.letter(&input, reason, detail, payload)
    }

    /// The dead letter of an input one of whose output records can never be produced (over
    /// a size limit, or refused by the broker for good): reason `unproducible`, the
    /// produce error as detail, and the input's value cut to [`UNPRODUCIBLE_PAYLOAD_BYTES`]
    /// (the detail says how much of it is kept), so the dead letter itself surely fits. The
    /// input stays readable at its coordinates for the topic's retention.
    pub fn unproducible(
        &self,
        input: &InputRef,
        record: &OutRecord,
        error: &rdkafka::error::KafkaError,
    ) -> Result<OutRecord, StageError> {
        let mut detail = format!(
            "a record of {} bytes for {} cannot be produced: {error}",
            record.payload.len(),
            record.topic,
        );
        if self.copies_payload_of(&input.topic) {
            detail.push_str(&format!(
                "; payload: the first {} of the input's {} bytes",
                input.payload_head.len(),
                input.payload_len
            ));
        }
        let origin = input.origin();
        let coordinates = Input {
            topic: &input.topic,
            partition: input.partition,
            offset: input.offset,
            key: input.key.as_deref(),
            origin,
        };
        self.letter(
            &coordinates,
            DeadLetterReason::Unproducible,
            detail,
            &input.payload_head,
        )
    }

    /// Whether dead letters of `topic`'s records copy their bytes: not for `mail.raw`,
    /// whose records hold the request's credentials (Basic authorization, signature and
    /// token headers); the record stays readable at its coordinates, for mail.raw's
    /// retention, to principals allowed to read mail.raw (deploy/kafka-acls/).
    pub fn copies_payload_of(&self, topic: &str) -> bool {
        topic != self.raw_topic
    }

    fn letter(
        &self,
        input: &Input<'_>,
        reason: DeadLetterReason,
        mut detail: String,
        mut payload: &[u8],
    ) -> Result<OutRecord, StageError> {
        if !self.copies_payload_of(input.topic) {
            payload = &[];
            detail.push_str(&format!(
                "; payload not copied ({} records carry request credentials): read it at \
                 its coordinates",
                self.raw_topic
            ));
        }
        metrics::counter!(names::DEAD_LETTERS, "stage" => self.stage.name(), "reason" => reason.as_str())
            .increment(1);
        tracing::warn!(stage = self.stage.name(), reason = reason.as_str(), detail = %detail, topic = input.topic,
            partition = input.partition, offset = input.offset, "dead-lettering a message");
        let origin = input.origin;
        let dead = DeadLetterRecord {
            stage: self.stage.name().into(),
            reason: reason.as_str().into(),
            detail,
            failed_at: now_ms(),
            topic: input.topic.into(),
            partition: input.partition,
            offset: input.offset,
            raw_request_id: origin.raw_request_id.map(str::to_string),
            provider: origin.provider.map(str::to_string),
            source: origin.source.map(str::to_string),
            payload: payload.to_vec(),
        };
        let bytes = self
            .schema
            .encode(&dead, payload.len() + 256)
            .map_err(|e| StageError::fatal(format!("encoding a dead letter: {e}")))?;
        let key = match origin.raw_request_id {
            Some(id) => Some(id.as_bytes().to_vec()),
            None => input.key.map(<[u8]>::to_vec),
        };
        Ok(OutRecord {
            topic: self.topic.clone(),
            key,
            payload: bytes,
        })
    }
}

/// How much of the input's value an `unproducible` dead letter keeps: far below Kafka's
/// default record limit (1 MB), so the dead letter fits wherever anything fits.
pub const UNPRODUCIBLE_PAYLOAD_BYTES: usize = 64 * 1024;

/// Where a dead-lettered message sits, and what is known of its request.
struct Input<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    origin: Origin<'a>,
}

/// What is kept of an input message while its outputs are produced, to dead-letter it
/// should one of them never be producible: its coordinates, key, request and the first
/// [`UNPRODUCIBLE_PAYLOAD_BYTES`] of its value (bounded, so holding it costs little).
#[derive(Debug, Clone)]
pub struct InputRef {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload_head: Vec<u8>,
    payload_len: usize,
    raw_request_id: Option<String>,
    provider: Option<String>,
    source: Option<String>,
}

impl InputRef {
    pub fn new(message: &OwnedMessage, origin: Origin<'_>) -> InputRef {
        let payload = message.payload().unwrap_or_default();
        InputRef {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload_head: payload[..payload.len().min(UNPRODUCIBLE_PAYLOAD_BYTES)].to_vec(),
            payload_len: payload.len(),
            raw_request_id: origin.raw_request_id.map(str::to_string),
            provider: origin.provider.map(str::to_string),
            source: origin.source.map(str::to_string),
        }
    }

    /// What is known of the input's request.
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            raw_request_id: self.raw_request_id.as_deref(),
            provider: self.provider.as_deref(),
            source: self.source.as_deref(),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, for `*_at` fields of records we write.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
