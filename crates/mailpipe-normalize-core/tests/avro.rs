//! The canonical event round-trips through `schemas/email_event.avsc` exactly (serde names
//! and types match the schema), and the schema evolves as promised: older readers map new
//! enum symbols onto the enum's default, and readers fill added fields from defaults.

mod common;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use mailpipe_avro::{parse_schema, ALL_SCHEMAS, EMAIL_EVENT_SCHEMA};
use mailpipe_normalize_core::{BounceClass, EmailEvent, EventType, Geo, RejectReason};

fn schema() -> Schema {
    parse_schema(EMAIL_EVENT_SCHEMA).unwrap()
}

/// Encodes as the stage will: serde → Avro value, resolved against the schema, binary.
fn encode(schema: &Schema, event: &EmailEvent) -> Vec<u8> {
    let value = apache_avro::to_value(event)
        .unwrap()
        .resolve(schema)
        .unwrap();
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

fn decode(writer: &Schema, reader: Option<&Schema>, bytes: &[u8]) -> Value {
    GenericDatumReader::builder(writer)
        .maybe_reader_schema(reader)
        .build()
        .unwrap()
        .read_value(&mut &bytes[..])
        .unwrap()
}

fn full_event() -> EmailEvent {
    let mut events = common::all()
        .into_iter()
        .find(|f| f.name == "mandrill/message-events.form")
        .unwrap()
        .parse()
        .unwrap();
    let mut event = events.remove(4); // an open: geo, ip, user agent, tags, metadata
    event.reject_reason = Some(RejectReason::TimedOut);
    event.bounce_class = Some(BounceClass::Undetermined);
    event.geo = Some(Geo {
        country: Some("PT".into()),
        region: None,
        city: Some("Lisbon".into()),
    });
    event
}

#[test]
fn the_schema_ships_with_the_others() {
    assert!(ALL_SCHEMAS
        .iter()
        .any(|(file, _)| *file == "email_event.avsc"));
}

#[test]
fn every_fixture_event_round_trips_through_the_schema() {
    let schema = schema();
    let mut count = 0;
    for fixture in common::all() {
        for event in fixture.parse().unwrap_or_default() {
            let decoded = decode(&schema, None, &encode(&schema, &event));
            let back: EmailEvent = apache_avro::from_value(&decoded).unwrap();
            assert_eq!(back, event, "{}", fixture.name);
            count += 1;
        }
    }
    assert!(count >= 80);
    let event = full_event();
    let back: EmailEvent =
        apache_avro::from_value(&decode(&schema, None, &encode(&schema, &event))).unwrap();
    assert_eq!(back, event);
}

#[test]
fn every_enum_symbol_round_trips() {
    let schema = schema();
    let mut event = full_event();
    for t in EventType::ALL {
        event.event_type = t;
        for r in RejectReason::ALL {
            event.reject_reason = Some(r);
            let back: EmailEvent =
                apache_avro::from_value(&decode(&schema, None, &encode(&schema, &event))).unwrap();
            assert_eq!((back.event_type, back.reject_reason), (t, Some(r)));
        }
    }
    for c in BounceClass::ALL {
        event.bounce_class = Some(c);
        let back: EmailEvent =
            apache_avro::from_value(&decode(&schema, None, &encode(&schema, &event))).unwrap();
        assert_eq!(back.bounce_class, Some(c));
    }
}

#[test]
fn an_older_reader_maps_unknown_symbols_to_the_enum_default() {
    // A reader from before `subscribed` and `timed_out` existed.
    let old_text = EMAIL_EVENT_SCHEMA
        .replace(
            r#""unsubscribed", "subscribed", "unknown"]"#,
            r#""unsubscribed", "unknown"]"#,
        )
        .replace(
            r#""invalid", "bounced", "timed_out", "blocked""#,
            r#""invalid", "bounced", "blocked""#,
        );
    assert_ne!(old_text, EMAIL_EVENT_SCHEMA);
    let old = parse_schema(&old_text).unwrap();
    let mut event = full_event();
    event.event_type = EventType::Subscribed;
    event.reject_reason = Some(RejectReason::TimedOut);
    let read = decode(&schema(), Some(&old), &encode(&schema(), &event));
    let back: EmailEvent = apache_avro::from_value(&read).unwrap();
    assert_eq!(
        (back.event_type, back.reject_reason),
        (EventType::Unknown, Some(RejectReason::Other))
    );
}

#[test]
fn fields_added_later_are_filled_from_defaults() {
    // Data written before `provider_event` and `geo` existed, read with today's schema.
    let mut old_json: serde_json::Value = serde_json::from_str(EMAIL_EVENT_SCHEMA).unwrap();
    let fields = old_json["fields"].as_array_mut().unwrap();
    fields.retain(|f| f["name"] != "provider_event" && f["name"] != "geo");
    let old = parse_schema(&old_json.to_string()).unwrap();
    let event = full_event();
    let old_value = apache_avro::to_value(&event).unwrap();
    let Value::Record(fields) = old_value else {
        panic!("a record")
    };
    let trimmed = Value::Record(
        fields
            .into_iter()
            .filter(|(k, _)| k != "provider_event" && k != "geo")
            .collect(),
    );
    let bytes = GenericDatumWriter::builder(&old)
        .build()
        .unwrap()
        .write_value_to_vec(trimmed.resolve(&old).unwrap())
        .unwrap();
    let back: EmailEvent = apache_avro::from_value(&decode(&old, Some(&schema()), &bytes)).unwrap();
    assert_eq!((back.provider_event.as_str(), back.geo), ("", None));
    assert_eq!(back.event_id, event.event_id);
}
