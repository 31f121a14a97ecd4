//! Avro on our topics: the schemas in `schemas/*.avsc`, and records in the Confluent wire
//! format (magic byte 0, 4-byte big-endian schema id, Avro binary) via a schema registry.
//!
//! Invariant: the encoder registers a schema once per subject (topic name strategy,
//! `<topic>-value`) and caches its id, so steady-state encoding makes no registry call;
//! the decoder fetches each writer schema id once and caches it.

use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::avro_common::get_supplied_schema;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Schema of `mail.raw` records.
pub const RAW_REQUEST_SCHEMA: &str = include_str!("../../../schemas/raw_request.avsc");

/// Every schema this crate ships, by file name, for checks and tooling.
pub const ALL_SCHEMAS: &[(&str, &str)] = &[("raw_request.avsc", RAW_REQUEST_SCHEMA)];

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("invalid Avro schema: {0}")]
    Schema(String),
    #[error("schema registry or wire format: {0}")]
    Registry(String),
    #[error("record does not match its schema: {0}")]
    Mismatch(String),
}

impl From<SRCError> for AvroError {
    fn from(e: SRCError) -> AvroError {
        AvroError::Registry(e.to_string())
    }
}

/// Parses a schema text, with a readable error.
pub fn parse_schema(text: &str) -> Result<Schema, AvroError> {
    Schema::parse_str(text).map_err(|e| AvroError::Schema(e.to_string()))
}

/// The value schema of one topic, parsed once.
#[derive(Debug, Clone)]
pub struct TopicSchema {
    strategy: SubjectNameStrategy,
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
        })
    }
}

/// Encodes and decodes Confluent-framed Avro through a schema registry.
pub struct AvroCodec {
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec").finish_non_exhaustive()
    }
}

impl AvroCodec {
    /// `registry_url` is the registry's base URL, e.g. `http://127.0.0.1:8081`.
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
        })
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

    /// Decodes a Confluent-framed record with its writer schema, into `T`.
    pub async fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, AvroError> {
        let decoded = self.decoder.decode(Some(bytes)).await?;
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
    fn wire_format_schema_id() {
        assert_eq!(schema_id(&[0, 0, 0, 1, 2, 42]), Some(258));
        assert_eq!(schema_id(&[1, 0, 0, 0, 1]), None);
        assert_eq!(schema_id(&[0, 0]), None);
    }
}
