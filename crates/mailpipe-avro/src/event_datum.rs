//! Email event datums (`schemas/email_event.avsc`) written and read field by field:
//! [`EventEncoder`] writes the normalize stage's `mail.events` records instead of the
//! schema-aware serde serializer, which looks every field up by name and took as long as
//! parsing the event; [`EventDecoder`] reads `mail.events` / `mail.events.unique` records
//! instead of the registry converter and serde, which build an Avro `Value` tree first and
//! bound the aggregate stage (`make bench`).
//!
//! Invariant (encoder): the bytes are exactly those [`RegisteredSchema::encode`] writes for
//! the same event; [`EventEncoder::new`] refuses a schema whose fields are not the ones
//! written here ([`FIELDS`]).
//!
//! Invariant (decoder): [`EventDecoder::decode`] gives exactly the [`EmailEvent`], or an
//! error exactly when, the generic decoder does for the same datum, with two differences:
//! bytes left after the record are an error here (the generic decoder ignores them; they
//! mean the datum was not written with this schema), and so is a datum that ends before
//! the trailing optional fields (the generic decoder reads them as null). It is only used for records whose
//! writer schema is this schema ([`EventDecoder::reads`]: equal parsing canonical forms,
//! i.e. the same binary layout); any other writer schema goes the generic way. The tests
//! (`event_datum/tests.rs`) and the fuzz target `event_datum` compare both ways with the
//! generic ones.

use std::collections::BTreeMap;

use apache_avro::schema::RecordSchema;
use apache_avro::Schema;
use mailpipe_model::{
    BounceClass, DeviceClass, EmailEvent, EventType, Geo, Provider, RejectReason,
};

use crate::datum::{
    write_long, write_optional_string, write_string, write_string_array, write_string_map, Reader,
};
use crate::{parse_schema, AvroError, RegisteredSchema, EMAIL_EVENT_SCHEMA};

/// The schema's fields in order, as [`EventEncoder::encode`] writes them.
pub const FIELDS: [&str; 29] = mailpipe_model::EVENT_FIELD_NAMES;

/// Encodes canonical events as Confluent-framed `mail.events` records.
#[derive(Debug, Clone)]
pub struct EventEncoder {
    schema: RegisteredSchema,
    /// The schema's index of each symbol, in the order of `EventType::ALL` (and likewise
    /// below): enum values are written as their index in the schema, not by name.
    event_types: Vec<i64>,
    reject_reasons: Vec<i64>,
    bounce_classes: Vec<i64>,
    device_classes: Vec<i64>,
}

impl EventEncoder {
    /// An encoder for `schema`, the registered email event schema.
    pub fn new(schema: RegisteredSchema) -> Result<EventEncoder, AvroError> {
        let record = event_record(schema.schema())?;
        let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        if names != FIELDS {
            return Err(AvroError::Schema(format!(
                "the email event schema's fields {names:?} are not the ones the encoder writes"
            )));
        }
        Ok(EventEncoder {
            event_types: indexes(
                EventType::ALL.map(EventType::as_str),
                symbols_of(record, "event_type")?,
            )?,
            reject_reasons: indexes(
                RejectReason::ALL.map(RejectReason::as_str),
                symbols_of(record, "reject_reason")?,
            )?,
            bounce_classes: indexes(
                BounceClass::ALL.map(BounceClass::as_str),
                symbols_of(record, "bounce_class")?,
            )?,
            device_classes: indexes(
                DeviceClass::ALL.map(DeviceClass::as_str),
                symbols_of(record, "device_class")?,
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
        write_optional_string(out, e.client_name.as_deref());
        write_optional_string(out, e.client_os.as_deref());
        match e.device_class {
            None => write_long(out, 0),
            Some(class) => {
                write_long(out, 1);
                write_long(out, symbol(&self.device_classes, &DeviceClass::ALL, class));
            }
        }
        match e.machine_open {
            None => write_long(out, 0),
            Some(machine) => {
                write_long(out, 1);
                out.push(u8::from(machine));
            }
        }
        write_optional_string(out, e.machine_reason.as_deref());
        write_optional_string(out, e.geo_source.as_deref());
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

/// Decodes email event datums written with [`EMAIL_EVENT_SCHEMA`].
#[derive(Debug, Clone)]
pub struct EventDecoder {
    schema: Schema,
    /// Each schema symbol, by index, as the model's value.
    event_types: Vec<EventType>,
    reject_reasons: Vec<RejectReason>,
    bounce_classes: Vec<BounceClass>,
    device_classes: Vec<DeviceClass>,
}

impl EventDecoder {
    pub fn new() -> Result<EventDecoder, AvroError> {
        let schema = parse_schema(EMAIL_EVENT_SCHEMA)?;
        let record = event_record(&schema)?;
        let event_types = values(symbols_of(record, "event_type")?, EventType::from_symbol)?;
        let reject_reasons = values(
            symbols_of(record, "reject_reason")?,
            RejectReason::from_symbol,
        )?;
        let bounce_classes = values(
            symbols_of(record, "bounce_class")?,
            BounceClass::from_symbol,
        )?;
        let device_classes = values(
            symbols_of(record, "device_class")?,
            DeviceClass::from_symbol,
        )?;
        Ok(EventDecoder {
            schema,
            event_types,
            reject_reasons,
            bounce_classes,
            device_classes,
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
            client_name: owned(r.optional_str()?),
            client_os: owned(r.optional_str()?),
            device_class: match r.branch(2)? {
                0 => None,
                _ => Some(self.device_classes[r.symbol(self.device_classes.len())?]),
            },
            machine_open: match r.branch(2)? {
                0 => None,
                _ => Some(r.boolean()?),
            },
            machine_reason: owned(r.optional_str()?),
            geo_source: owned(r.optional_str()?),
        };
        r.finish()?;
        Ok(event)
    }
}

fn owned(text: Option<&str>) -> Option<String> {
    text.map(str::to_owned)
}

/// The record of the email event schema.
fn event_record(schema: &Schema) -> Result<&RecordSchema, AvroError> {
    match schema {
        Schema::Record(record) => Ok(record),
        _ => Err(AvroError::Schema(
            "the email event schema is not a record".into(),
        )),
    }
}

/// The symbols of the enum field `field` of the email event record.
fn symbols_of<'a>(record: &'a RecordSchema, field: &str) -> Result<&'a [String], AvroError> {
    record
        .lookup
        .get(field)
        .and_then(|position| enum_symbols(&record.fields[*position].schema))
        .ok_or_else(|| AvroError::Schema(format!("field {field} is not an enum")))
}

/// The symbols of an enum, or of the enum branch of a `["null", enum]` union.
fn enum_symbols(schema: &Schema) -> Option<&[String]> {
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
mod tests;
