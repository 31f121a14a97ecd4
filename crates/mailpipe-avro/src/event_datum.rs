//! Reading `mail.events` / `mail.events.unique` records field by field
//! (`schemas/email_event.avsc`) instead of through the registry converter and serde, which
//! build an Avro `Value` tree first and bound the aggregate stage (`make bench`).
//!
//! Invariant: [`EventDecoder::decode`] gives exactly the [`EmailEvent`], or an error
//! exactly when, the generic decoder does for the same datum, with one difference: bytes
//! left after the record are an error here (the generic decoder ignores them; they mean
//! the datum was not written with this schema). It is only used for records
//! whose writer schema is this schema ([`EventDecoder::reads`]: equal parsing canonical
//! forms, i.e. the same binary layout); any other writer schema goes the generic way. The
//! tests below and the fuzz target `event_datum` compare both.

use std::collections::BTreeMap;

use apache_avro::Schema;
use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

use crate::datum::Reader;
use crate::{parse_schema, AvroError, EMAIL_EVENT_SCHEMA};

/// Decodes email event datums written with [`EMAIL_EVENT_SCHEMA`].
#[derive(Debug, Clone)]
pub struct EventDecoder {
    schema: Schema,
    /// Each schema symbol, by index, as the model's value.
    event_types: Vec<EventType>,
    reject_reasons: Vec<RejectReason>,
    bounce_classes: Vec<BounceClass>,
}

impl EventDecoder {
    pub fn new() -> Result<EventDecoder, AvroError> {
        let schema = parse_schema(EMAIL_EVENT_SCHEMA)?;
        let Schema::Record(record) = &schema else {
            return Err(AvroError::Schema(
                "the email event schema is not a record".into(),
            ));
        };
        let symbols_of = |field: &str| -> Result<&[String], AvroError> {
            record
                .lookup
                .get(field)
                .and_then(|position| enum_symbols(&record.fields[*position].schema))
                .ok_or_else(|| AvroError::Schema(format!("field {field} is not an enum")))
        };
        let event_types = values(symbols_of("event_type")?, EventType::from_symbol)?;
        let reject_reasons = values(symbols_of("reject_reason")?, RejectReason::from_symbol)?;
        let bounce_classes = values(symbols_of("bounce_class")?, BounceClass::from_symbol)?;
        Ok(EventDecoder {
            schema,
            event_types,
            reject_reasons,
            bounce_classes,
        })
    }

    /// Whether datums written with `writer` can be read here: same fields, types and
    /// symbols in the same order (docs, defaults and logical types aside).
    pub fn reads(&self, writer: &Schema) -> bool {
        *writer == self.schema
    }

    /// One event from its Avro datum (the record without the 5-byte Confluent header).
    pub fn decode(&self, datum: &[u8]) -> Result<EmailEvent, AvroError> {
        let mut r = Reader::new(datum);
        let event = EmailEvent {
            event_id: r.str()?.to_owned(),
            event_type: self.event_types[r.symbol(self.event_types.len())?],
            provider_event: r.str()?.to_owned(),
            provider: {
                let id = r.str()?;
                id.parse::<Provider>()
                    .map_err(|e| AvroError::Mismatch(e.to_string()))?
            },
            source: r.str()?.to_owned(),
            occurred_at: r.long()?,
            received_at: r.long()?,
            recipient: owned(r.optional_str()?),
            recipient_domain: owned(r.optional_str()?),
            message_id: owned(r.optional_str()?),
            campaign_id: owned(r.optional_str()?),
            tags: {
                let mut tags = Vec::new();
                r.string_array(|tag| tags.push(tag.to_owned()))?;
                tags
            },
            metadata: {
                let mut metadata = BTreeMap::new();
                r.string_map(|key, value| {
                    metadata.insert(key.to_owned(), value.to_owned());
                })?;
                metadata
            },
            reject_reason: match r.branch(2)? {
                0 => None,
                _ => Some(self.reject_reasons[r.symbol(self.reject_reasons.len())?]),
            },
            bounce_class: match r.branch(2)? {
                0 => None,
                _ => Some(self.bounce_classes[r.symbol(self.bounce_classes.len())?]),
            },
            url: owned(r.optional_str()?),
            user_agent: owned(r.optional_str()?),
            ip: owned(r.optional_str()?),
            geo: match r.branch(2)? {
                0 => None,
                _ => Some(Geo {
                    country: owned(r.optional_str()?),
                    region: owned(r.optional_str()?),
                    city: owned(r.optional_str()?),
                }),
            },
            mta_response: owned(r.optional_str()?),
            description: owned(r.optional_str()?),
            raw_request_id: r.str()?.to_owned(),
            raw_event: r.str()?.to_owned(),
        };
        r.finish()?;
        Ok(event)
    }
}

fn owned(text: Option<&str>) -> Option<String> {
    text.map(str::to_owned)
}

/// The symbols of an enum, or of the enum branch of a `["null", enum]` union (also used by
/// the normalize stage's field-by-field encoder).
pub fn enum_symbols(schema: &Schema) -> Option<&[String]> {
    match schema {
        Schema::Enum(e) => Some(&e.symbols),
        Schema::Union(union) => union.variants().iter().find_map(enum_symbols),
        _ => None,
    }
}

/// The model's value of every symbol; an error names a symbol the model lacks.
fn values<T>(symbols: &[String], from: fn(&str) -> Option<T>) -> Result<Vec<T>, AvroError> {
    symbols
        .iter()
        .map(|s| from(s).ok_or_else(|| AvroError::Schema(format!("the model has no symbol {s}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegisteredSchema;

    fn registered() -> &'static RegisteredSchema {
        static SCHEMA: std::sync::OnceLock<RegisteredSchema> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| {
            RegisteredSchema::new(1, parse_schema(EMAIL_EVENT_SCHEMA).unwrap()).unwrap()
        })
    }

    /// What the registry converter does with a datum: a generic value, then serde.
    fn generic(datum: &[u8]) -> Result<EmailEvent, String> {
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(registered().schema())
            .build()
            .unwrap();
        let value = reader
            .read_value(&mut &datum[..])
            .map_err(|e| e.to_string())?;
        apache_avro::from_value(&value).map_err(|e| e.to_string())
    }

    fn event() -> EmailEvent {
        EmailEvent {
            event_id: "ev-1".into(),
            event_type: EventType::Bounced,
            provider_event: "bounce".into(),
            provider: Provider::Sendgrid,
            source: "main".into(),
            occurred_at: 1_795_996_800_123,
            received_at: -1,
            recipient: Some("a@example.com".into()),
            recipient_domain: Some("example.com".into()),
            message_id: None,
            campaign_id: Some("spring".into()),
            tags: vec!["t1".into(), "".into(), "ü".repeat(100)],
            metadata: [("k".to_string(), "v".to_string()), ("".into(), "".into())].into(),
            reject_reason: None,
            bounce_class: None,
            url: None,
            user_agent: Some("Mozilla".into()),
            ip: None,
            geo: None,
            mta_response: Some("550".into()),
            description: None,
            raw_request_id: "req-1".into(),
            raw_event: "{}".into(),
        }
    }

    fn encoded(event: &EmailEvent) -> Vec<u8> {
        registered().encode(event, 0).unwrap()[5..].to_vec()
    }

    #[test]
    fn reads_every_field_enum_symbol_and_optional_as_the_generic_decoder() {
        let decoder = EventDecoder::new().unwrap();
        let mut e = event();
        for provider in Provider::ALL {
            for event_type in EventType::ALL {
                for reason in RejectReason::ALL.map(Some).into_iter().chain([None]) {
                    for class in BounceClass::ALL.map(Some).into_iter().chain([None]) {
                        e.provider = provider;
                        e.event_type = event_type;
                        e.reject_reason = reason;
                        e.bounce_class = class;
                        e.geo = class.map(|_| Geo {
                            country: Some("PT".into()),
                            region: None,
                            city: Some("Lisbon".into()),
                        });
                        let datum = encoded(&e);
                        assert_eq!(decoder.decode(&datum).unwrap(), e);
                        assert_eq!(generic(&datum).unwrap(), e);
                    }
                }
            }
        }
        let empty = EmailEvent {
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            recipient: None,
            recipient_domain: None,
            campaign_id: None,
            user_agent: None,
            mta_response: None,
            geo: Some(Geo::default()),
            ..event()
        };
        assert_eq!(decoder.decode(&encoded(&empty)).unwrap(), empty);
    }

    #[test]
    fn refuses_what_the_generic_decoder_refuses() {
        let decoder = EventDecoder::new().unwrap();
        let good = encoded(&event());
        // Every truncation, and one byte too many.
        for end in 0..good.len() {
            assert!(decoder.decode(&good[..end]).is_err(), "truncated at {end}");
            assert!(generic(&good[..end]).is_err(), "truncated at {end}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decoder.decode(&longer).is_err());
        // A provider the model does not know (the schema has it as a string).
        let mut unknown = event();
        unknown.source = "x".into();
        let datum = encoded(&unknown);
        let at = datum.windows(9).position(|w| w == b"\x10sendgrid").unwrap();
        let mut forged = datum.clone();
        forged[at + 1..at + 9].copy_from_slice(b"sendgrix");
        assert!(decoder.decode(&forged).is_err());
        assert!(generic(&forged).is_err());
        // An enum index past the symbols.
        let mut bad_type = good.clone();
        bad_type[1 + good[0] as usize / 2] = 0x7e;
        assert!(decoder.decode(&bad_type).is_err());
        assert!(generic(&bad_type).is_err());
    }

    #[test]
    fn reads_only_its_own_schema() {
        let decoder = EventDecoder::new().unwrap();
        let same = parse_schema(&EMAIL_EVENT_SCHEMA.replace("\"doc\"", "\"x-doc\"")).unwrap();
        assert!(decoder.reads(&same), "docs do not change the layout");
        let other =
            parse_schema(&EMAIL_EVENT_SCHEMA.replace("\"raw_event\"", "\"raw_text\"")).unwrap();
        assert!(!decoder.reads(&other));
    }
}
