//! The `mail.events` record, encoded field by field in Avro binary
//! (`schemas/email_event.avsc`) instead of through the schema-aware serde serializer, which
//! looks every field up by name and took as long as parsing the event (`make bench`).
//!
//! Invariant: the bytes are exactly those [`RegisteredSchema::encode`] writes for the same
//! event. The tests below compare both on every fixture event and every enum symbol, and
//! [`EventEncoder::new`] refuses a schema whose fields are not the ones written here.

use apache_avro::Schema;
use mailpipe_avro::datum::{
    write_long, write_optional_string, write_string, write_string_array, write_string_map,
};
use mailpipe_avro::event_datum::enum_symbols;
use mailpipe_avro::{AvroError, RegisteredSchema};
use mailpipe_model::{BounceClass, EmailEvent, EventType, RejectReason};

/// The schema's fields in order, as [`EventEncoder::encode`] writes them.
const FIELDS: [&str; 23] = [
    "event_id",
    "event_type",
    "provider_event",
    "provider",
    "source",
    "occurred_at",
    "received_at",
    "recipient",
    "recipient_domain",
    "message_id",
    "campaign_id",
    "tags",
    "metadata",
    "reject_reason",
    "bounce_class",
    "url",
    "user_agent",
    "ip",
    "geo",
    "mta_response",
    "description",
    "raw_request_id",
    "raw_event",
];

/// Encodes canonical events as Confluent-framed `mail.events` records.
#[derive(Debug, Clone)]
pub struct EventEncoder {
    schema: RegisteredSchema,
    /// The schema's index of each symbol, in the order of `EventType::ALL` (and likewise
    /// below): enum values are written as their index in the schema, not by name.
    event_types: Vec<i64>,
    reject_reasons: Vec<i64>,
    bounce_classes: Vec<i64>,
}

impl EventEncoder {
    /// An encoder for `schema`, the registered email event schema.
    pub fn new(schema: RegisteredSchema) -> Result<EventEncoder, AvroError> {
        let Schema::Record(record) = schema.schema() else {
            return Err(AvroError::Schema(
                "the email event schema is not a record".into(),
            ));
        };
        let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        if names != FIELDS {
            return Err(AvroError::Schema(format!(
                "the email event schema's fields {names:?} are not the ones the encoder writes"
            )));
        }
        let symbols_of = |field: &str| -> Result<&[String], AvroError> {
            let position = record.lookup[field];
            enum_symbols(&record.fields[position].schema)
                .ok_or_else(|| AvroError::Schema(format!("field {field} is not an enum")))
        };
        Ok(EventEncoder {
            event_types: indexes(
                EventType::ALL.map(EventType::as_str),
                symbols_of("event_type")?,
            )?,
            reject_reasons: indexes(
                RejectReason::ALL.map(RejectReason::as_str),
                symbols_of("reject_reason")?,
            )?,
            bounce_classes: indexes(
                BounceClass::ALL.map(BounceClass::as_str),
                symbols_of("bounce_class")?,
            )?,
            schema,
        })
    }

    /// One `mail.events` record: magic byte, schema id, then the event's fields in
    /// schema order.
    pub fn encode(&self, event: &EmailEvent) -> Vec<u8> {
        self.schema
            .encode_with(event.raw_event.len() + 256, |out| self.write(out, event))
    }

    fn write(&self, out: &mut Vec<u8>, e: &EmailEvent) {
        write_string(out, &e.event_id);
        write_long(
            out,
            symbol(&self.event_types, &EventType::ALL, e.event_type),
        );
        write_string(out, &e.provider_event);
        write_string(out, e.provider.as_str());
        write_string(out, &e.source);
        write_long(out, e.occurred_at);
        write_long(out, e.received_at);
        write_optional_string(out, e.recipient.as_deref());
        write_optional_string(out, e.recipient_domain.as_deref());
        write_optional_string(out, e.message_id.as_deref());
        write_optional_string(out, e.campaign_id.as_deref());
        write_string_array(out, e.tags.iter().map(String::as_str));
        write_string_map(
            out,
            e.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        match e.reject_reason {
            None => write_long(out, 0),
            Some(reason) => {
                write_long(out, 1);
                write_long(
                    out,
                    symbol(&self.reject_reasons, &RejectReason::ALL, reason),
                );
            }
        }
        match e.bounce_class {
            None => write_long(out, 0),
            Some(class) => {
                write_long(out, 1);
                write_long(out, symbol(&self.bounce_classes, &BounceClass::ALL, class));
            }
        }
        write_optional_string(out, e.url.as_deref());
        write_optional_string(out, e.user_agent.as_deref());
        write_optional_string(out, e.ip.as_deref());
        match &e.geo {
            None => write_long(out, 0),
            Some(geo) => {
                write_long(out, 1);
                write_optional_string(out, geo.country.as_deref());
                write_optional_string(out, geo.region.as_deref());
                write_optional_string(out, geo.city.as_deref());
            }
        }
        write_optional_string(out, e.mta_response.as_deref());
        write_optional_string(out, e.description.as_deref());
        write_string(out, &e.raw_request_id);
        write_string(out, &e.raw_event);
    }
}

/// Each name's index in `symbols`; an error names a symbol the schema lacks.
fn indexes<const N: usize>(names: [&str; N], symbols: &[String]) -> Result<Vec<i64>, AvroError> {
    names
        .into_iter()
        .map(|name| {
            let index = symbols.iter().position(|s| s == name).ok_or_else(|| {
                AvroError::Schema(format!("symbol {name} is missing from the schema"))
            })?;
            Ok(index as i64)
        })
        .collect()
}

/// The schema index of `value`, from the table built in the order of `all` (the model's
/// `ALL` constant, which lists every variant, so the position is always found).
fn symbol<T: PartialEq>(indexes: &[i64], all: &[T], value: T) -> i64 {
    let position = all.iter().position(|v| *v == value).unwrap_or(0);
    indexes[position]
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use mailpipe_model::{Geo, Provider};
    use mailpipe_normalize_core::{parse, ParseInput};

    use super::*;

    fn registered() -> RegisteredSchema {
        let schema = mailpipe_avro::parse_schema(mailpipe_avro::EMAIL_EVENT_SCHEMA).unwrap();
        RegisteredSchema::new(7, schema).unwrap()
    }

    /// Every event of every fixture the normalizer's tests use.
    fn fixture_events() -> Vec<EmailEvent> {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../mailpipe-normalize-core/tests/fixtures");
        let mut events = Vec::new();
        for provider in Provider::ALL {
            let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(provider.as_str()))
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            files.sort();
            for path in files {
                let content_type: &[u8] = match path.extension().and_then(|e| e.to_str()) {
                    Some("json") => b"application/json",
                    Some("form") => b"application/x-www-form-urlencoded",
                    _ => b"text/plain",
                };
                let headers = vec![("content-type".to_string(), content_type.to_vec())];
                let body = std::fs::read(&path).unwrap();
                let input = ParseInput {
                    source: "main",
                    raw_request_id: "r-1",
                    received_at_ms: 1_717_000_000_000,
                    headers: &headers,
                    query: "",
                    body: &body,
                };
                events.extend(parse(provider, &input).unwrap_or_default());
            }
        }
        events
    }

    #[test]
    fn writes_the_bytes_of_the_schema_aware_serializer() {
        let schema = registered();
        let encoder = EventEncoder::new(schema.clone()).unwrap();
        let events = fixture_events();
        assert!(events.len() >= 80, "{} fixture events", events.len());
        for event in &events {
            assert_eq!(
                encoder.encode(event),
                schema.encode(event, 0).unwrap(),
                "{event:?}"
            );
        }
    }

    #[test]
    fn every_optional_field_and_enum_symbol_matches_too() {
        let schema = registered();
        let encoder = EventEncoder::new(schema.clone()).unwrap();
        let mut event = fixture_events().remove(0);
        event.geo = Some(Geo {
            country: Some("PT".into()),
            region: None,
            city: Some("Lisbon".into()),
        });
        event.tags = vec!["a".into(), "".into(), "ü".repeat(100)];
        event.metadata = [("k".to_string(), "v".to_string()), ("".into(), "".into())].into();
        event.occurred_at = 0;
        for event_type in EventType::ALL {
            for reason in RejectReason::ALL.map(Some).into_iter().chain([None]) {
                for class in BounceClass::ALL.map(Some).into_iter().chain([None]) {
                    event.event_type = event_type;
                    event.reject_reason = reason;
                    event.bounce_class = class;
                    assert_eq!(encoder.encode(&event), schema.encode(&event, 0).unwrap());
                }
            }
        }
        let empty = EmailEvent {
            tags: Vec::new(),
            metadata: Default::default(),
            geo: Some(Geo::default()),
            recipient: None,
            recipient_domain: None,
            ..event
        };
        assert_eq!(encoder.encode(&empty), schema.encode(&empty, 0).unwrap());
    }

    #[test]
    fn refuses_a_schema_with_other_fields() {
        let text = mailpipe_avro::EMAIL_EVENT_SCHEMA.replace("\"raw_event\"", "\"raw_text\"");
        let schema = mailpipe_avro::parse_schema(&text).unwrap();
        let error = EventEncoder::new(RegisteredSchema::new(1, schema).unwrap()).unwrap_err();
        assert!(error.to_string().contains("raw_text"), "{error}");
    }
}
