//! Avro on our topics: the schemas in `schemas/*.avsc`, and records in the Confluent wire
//! format (magic byte 0, 4-byte big-endian schema id, Avro binary) via a schema registry.
//!
//! Invariant: the encoder registers a schema once per subject (topic name strategy,
//! `<topic>-value`) and caches its id, so steady-state encoding makes no registry call;
//! the decoder fetches each writer schema id once and caches it. Hot paths (the receiver)
//! register at start-up with [`AvroCodec::register`] and encode locally with
//! [`RegisteredSchema`], so a request never waits on the registry; the hottest (the
//! normalize stage's events) write their datum field by field with [`datum`].

pub mod datum;
pub mod event_datum;
pub mod records;

use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::avro_common::get_supplied_schema;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Schema of `mail.raw` records.
pub const RAW_REQUEST_SCHEMA: &str = include_str!("../../../schemas/raw_request.avsc");

/// Schema of `mail.events` records (canonical email events, key = recipient).
pub const EMAIL_EVENT_SCHEMA: &str = include_str!("../../../schemas/email_event.avsc");

/// Schema of `mail.verified` records (verified requests, credentials removed).
pub const VERIFIED_REQUEST_SCHEMA: &str = include_str!("../../../schemas/verified_request.avsc");

/// Schema of `mail.rejected` records (requests that failed verification, with the reason).
pub const REJECTED_REQUEST_SCHEMA: &str = include_str!("../../../schemas/rejected_request.avsc");

/// Schema of `mail.dlq` records (messages a stage could not process, with the reason).
pub const DEAD_LETTER_SCHEMA: &str = include_str!("../../../schemas/dead_letter.avsc");

/// Schema of `mail.actions` records (what the rules decided, key = action id).
pub const RULE_ACTION_SCHEMA: &str = include_str!("../../../schemas/rule_action.avsc");

/// Schema of `mail.suppressions` records (the suppression list, compacted).
pub const SUPPRESSION_SCHEMA: &str = include_str!("../../../schemas/suppression.avsc");

/// Schema of `mail.deliveries` records (one per outbound delivery attempt).
pub const DELIVERY_ATTEMPT_SCHEMA: &str = include_str!("../../../schemas/delivery_attempt.avsc");

/// Every schema this crate ships, by file name, for checks and tooling.
pub const ALL_SCHEMAS: &[(&str, &str)] = &[
    ("raw_request.avsc", RAW_REQUEST_SCHEMA),
    ("email_event.avsc", EMAIL_EVENT_SCHEMA),
    ("verified_request.avsc", VERIFIED_REQUEST_SCHEMA),
    ("rejected_request.avsc", REJECTED_REQUEST_SCHEMA),
    ("dead_letter.avsc", DEAD_LETTER_SCHEMA),
    ("rule_action.avsc", RULE_ACTION_SCHEMA),
    ("suppression.avsc", SUPPRESSION_SCHEMA),
    ("delivery_attempt.avsc", DELIVERY_ATTEMPT_SCHEMA),
];

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("invalid Avro schema: {0}")]
    Schema(String),
    #[error("schema registry or wire format: {0}")]
    Registry(String),
    #[error("record does not match its schema: {0}")]
    Mismatch(String),
    #[error("schema registry unavailable (retry later): {0}")]
    RegistryUnavailable(String),
    /// The registry would not take a schema under a subject: most often a change its
    /// compatibility rule forbids. `detail` is the registry's own answer, which names what
    /// broke (e.g. Apicurio's "list of diff types: [campaign at /fields/3]").
    #[error("schema registry refused the schema of subject {subject}: {detail}")]
    Refused { subject: String, detail: String },
}

impl AvroError {
    /// Whether trying again later may succeed (the registry was unreachable), as opposed
    /// to a record or schema that will never decode.
    pub fn is_retriable(&self) -> bool {
        matches!(self, AvroError::RegistryUnavailable(_))
    }
}

impl From<SRCError> for AvroError {
    fn from(e: SRCError) -> AvroError {
        if e.retriable {
            AvroError::RegistryUnavailable(e.to_string())
        } else {
            AvroError::Registry(e.to_string())
        }
    }
}

impl AvroError {
    /// A failed registration under `subject`: the registry's refusal in its own words, or
    /// its being unreachable.
    fn registering(subject: &str, e: SRCError) -> AvroError {
        if e.retriable {
            return AvroError::RegistryUnavailable(e.to_string());
        }
        let detail = match &e.cause {
            Some(cause) => format!("{} ({cause})", e.error),
            None => e.error.clone(),
        };
        AvroError::Refused {
            subject: subject.to_string(),
            detail,
        }
    }
}

/// The subject of a topic's record values under the topic name strategy.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Parses a schema text, with a readable error.
pub fn parse_schema(text: &str) -> Result<Schema, AvroError> {
    Schema::parse_str(text).map_err(|e| AvroError::Schema(e.to_string()))
}

/// The value schema of one topic, parsed once.
#[derive(Debug, Clone)]
pub struct TopicSchema {
    strategy: SubjectNameStrategy,
    schema: Schema,
}

impl TopicSchema {
    pub fn new(topic: &str, schema: &str) -> Result<TopicSchema, AvroError> {
        let parsed = parse_schema(schema)?;
        Ok(TopicSchema {
            strategy: SubjectNameStrategy::TopicNameStrategyWithSchema(
                topic.to_string(),
                false,
                get_supplied_schema(&parsed),
            ),
            schema: parsed,
        })
    }
}

/// A schema registered in the registry, with its id: encodes Confluent-framed records
/// locally, with no registry call.
#[derive(Clone)]
pub struct RegisteredSchema {
    id: u32,
    schema: &'static Schema,
    /// Built once: resolving a schema's names costs more than encoding a small record.
    writer: Arc<GenericDatumWriter<'static>>,
}

impl std::fmt::Debug for RegisteredSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredSchema")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RegisteredSchema {
    /// `schema` is kept for the life of the process (a handful per process, registered at
    /// start-up), so the writer that borrows it can be built once.
    pub fn new(id: u32, schema: Schema) -> Result<RegisteredSchema, AvroError> {
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| AvroError::Schema(e.to_string()))?;
        Ok(RegisteredSchema {
            id,
            schema,
            writer: Arc::new(writer),
        })
    }

    /// The registry's id of this schema (the 4 bytes after the magic byte).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The schema, for writers that encode its datums themselves ([`Self::encode_with`]).
    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// Magic byte 0 and the big-endian schema id; `size_hint` pre-sizes the buffer so a
    /// large record is not copied while it grows.
    fn framed_buffer(&self, size_hint: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + size_hint);
        out.push(0);
        out.extend_from_slice(&self.id.to_be_bytes());
        out
    }

    /// Encodes a serde value whose fields match the schema (see [`records`]) straight
    /// from serde, without building an intermediate Avro `Value` (3x faster on events).
    pub fn encode<T: Serialize>(&self, value: &T, size_hint: usize) -> Result<Vec<u8>, AvroError> {
        let mut out = self.framed_buffer(size_hint);
        self.writer
            .write_ser(&mut out, value)
            .map_err(|e| AvroError::Mismatch(e.to_string()))?;
        Ok(out)
    }

    /// Confluent-frames a datum that `write_datum` appends in Avro binary (with
    /// [`datum`]'s functions). Nothing checks it against the schema: the writer must follow
    /// the schema field by field, which its own tests prove against [`Self::encode`].
    pub fn encode_with(&self, size_hint: usize, write_datum: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = self.framed_buffer(size_hint);
        write_datum(&mut out);
        out
    }

    /// Encodes an Avro `Value` (validated against the schema), Confluent-framed.
    pub fn encode_value(&self, value: &Value, size_hint: usize) -> Result<Vec<u8>, AvroError> {
        let mut out = self.framed_buffer(size_hint);
        self.writer
            .write_value_ref(&mut out, value)
            .map_err(|e| AvroError::Mismatch(e.to_string()))?;
        Ok(out)
    }
}

/// Encodes and decodes Confluent-framed Avro through a schema registry.
pub struct AvroCodec {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    registry: SrSettings,
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec").finish_non_exhaustive()
    }
}

impl AvroCodec {
    /// `registry_url` is the registry's Confluent-compatible base URL, e.g.
    /// `http://127.0.0.1:8081/apis/ccompat/v7` (Apicurio) or `http://127.0.0.1:8081`.
    pub fn new(registry_url: &str) -> Result<AvroCodec, AvroError> {
        let settings = || {
            SrSettings::new_builder(registry_url.to_string())
                .set_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(AvroError::from)
        };
        Ok(AvroCodec {
            encoder: AvroEncoder::new(settings()?),
            decoder: AvroDecoder::new(settings()?),
            registry: settings()?,
        })
    }

    /// Registers the target's schema under `<topic>-value` (or finds it already
    /// registered) and returns it with its id, for local encoding from then on. Fails when
    /// the registry is unreachable or refuses the schema as incompatible.
    pub async fn register(&self, target: &TopicSchema) -> Result<RegisteredSchema, AvroError> {
        let SubjectNameStrategy::TopicNameStrategyWithSchema(_, _, supplied) = &target.strategy
        else {
            return Err(AvroError::Schema(
                "a topic schema always carries its schema".into(),
            ));
        };
        let subject = target.strategy.get_subject()?;
        let registered = post_schema(&self.registry, subject.clone(), supplied.clone())
            .await
            .map_err(|e| AvroError::registering(&subject, e))?;
        RegisteredSchema::new(registered.id, target.schema.clone())
    }

    /// Registers the writer schema with id `id` (that of records read elsewhere) under
    /// `<topic>-value` as well, and returns the id it has there: the same one on registries
    /// whose ids name a schema's content (Confluent, Apicurio's ccompat API, Karapace), or
    /// another to put in the records' header. For stages that forward records unchanged
    /// to another topic, so every topic's subject holds the schemas of its records.
    pub async fn register_under_topic(&self, topic: &str, id: u32) -> Result<u32, AvroError> {
        let registered = get_schema_by_id(id, &self.registry).await?;
        let subject = value_subject(topic);
        if !registered.references.is_empty() {
            // Our schemas are self-contained; one that refers to others was not written by us.
            return Err(AvroError::Refused {
                subject,
                detail: format!("schema {id} refers to other schemas, which is not supported"),
            });
        }
        // Posted in the form `register` posts (the parsed schema, serialized again): the
        // registry's answer to a lookup by id may be laid out differently from what was
        // registered, and a registry that keys ids on the exact text (Apicurio) would give
        // the same schema a new id.
        let supplied = get_supplied_schema(&parse_schema(&registered.schema)?);
        let posted = post_schema(&self.registry, subject.clone(), supplied)
            .await
            .map_err(|e| AvroError::registering(&subject, e))?;
        Ok(posted.id)
    }

    /// Encodes `value` as the value of a record on the target's topic, registering the
    /// target's schema under `<topic>-value` on first use (the registry refuses an
    /// incompatible change).
    pub async fn encode<T: Serialize>(
        &self,
        target: &TopicSchema,
        value: &T,
    ) -> Result<Vec<u8>, AvroError> {
        Ok(self.encoder.encode_struct(value, &target.strategy).await?)
    }

    /// The schema the registry has under `id` (a record's writer schema), parsed.
    pub async fn writer_schema(&self, id: u32) -> Result<Schema, AvroError> {
        let registered = get_schema_by_id(id, &self.registry).await?;
        parse_schema(&registered.schema)
    }

    /// Decodes a Confluent-framed record with its writer schema, into `T`.
    pub async fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, AvroError> {
        let decoded = match self.decoder.decode(Some(bytes)).await {
            Ok(decoded) => decoded,
            Err(e) => {
                // The converter caches failed schema look-ups; forget them so a retry after
                // the registry comes back asks it again.
                if e.retriable {
                    self.decoder.remove_errors_from_cache();
                }
                return Err(e.into());
            }
        };
        apache_avro::from_value(&decoded.value).map_err(|e| AvroError::Mismatch(e.to_string()))
    }
}

/// The schema id of a Confluent-framed record, or `None` when the framing is wrong.
pub fn schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_schema_parses() {
        for (file, text) in ALL_SCHEMAS {
            parse_schema(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            // Also valid JSON with a doc string, so the schema documents itself.
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            assert!(json.get("doc").is_some(), "{file} has no doc");
        }
    }

    #[test]
    fn bad_schema_is_a_clear_error() {
        let err = parse_schema(r#"{"type": "record", "name": "x"}"#).unwrap_err();
        assert!(err.to_string().starts_with("invalid Avro schema"), "{err}");
    }

    #[test]
    fn registered_schema_encodes_confluent_framed_datums_locally() {
        let schema = parse_schema(
            r#"{"type": "record", "name": "P", "doc": "p",
            "fields": [{"name": "body", "type": "bytes"}]}"#,
        )
        .unwrap();
        let registered = RegisteredSchema::new(258, schema.clone()).unwrap();
        let value = Value::Record(vec![("body".into(), Value::Bytes(vec![0, 255, 10]))]);
        let bytes = registered.encode_value(&value, 3).unwrap();
        assert_eq!(schema_id(&bytes), Some(258));
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap();
        let decoded = reader.read_value(&mut &bytes[5..]).unwrap();
        assert_eq!(decoded, value);
        // A datum written by hand gets the same framing (what it holds is the writer's business).
        let by_hand = registered.encode_with(3, |out| datum::write_long(out, 3));
        assert_eq!(by_hand, [0, 0, 0, 1, 2, 6]);
        let wrong = Value::Record(vec![("body".into(), Value::String("x".into()))]);
        assert!(matches!(
            registered.encode_value(&wrong, 0),
            Err(AvroError::Mismatch(_))
        ));
    }

    #[test]
    fn wire_format_schema_id() {
        assert_eq!(schema_id(&[0, 0, 0, 1, 2, 42]), Some(258));
        assert_eq!(schema_id(&[1, 0, 0, 0, 1]), None);
        assert_eq!(schema_id(&[0, 0]), None);
    }
}
