//! The email event schema's evolution from v1 (`schemas/history/email_event.v1.avsc`) to the
//! current one (v2: the enrichment fields): old readers read new records, new readers read
//! old ones, with Avro's schema resolution and with the paths our consumers take (the
//! registry converter's writer-schema decoding + serde, and the field-by-field decoder).
//! That the registry accepts v2 after v1 under BACKWARD compatibility is checked against the
//! real registry in `tests/tests/it/registry_contract.rs`.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{from_value, to_value, Schema};
use mailpipe_avro::event_datum::EventDecoder;
use mailpipe_avro::{parse_schema, RegisteredSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_model::{DeviceClass, EmailEvent, EventType, Geo, Provider};

/// Avro binary of `value` under `schema`.
fn to_avro_datum(schema: &Schema, value: Value) -> apache_avro::AvroResult<Vec<u8>> {
    GenericDatumWriter::builder(schema)
        .build()?
        .write_value_to_vec(value)
}

/// A datum written with `writer`, read as `reader` (Avro schema resolution) or as written.
fn from_avro_datum(
    writer: &Schema,
    datum: &mut &[u8],
    reader: Option<&Schema>,
) -> apache_avro::AvroResult<Value> {
    GenericDatumReader::builder(writer)
        .maybe_reader_schema(reader)
        .build()?
        .read_value(datum)
}

const V1: &str = include_str!("../../../schemas/history/email_event.v1.avsc");

fn schemas() -> (Schema, Schema) {
    (
        parse_schema(V1).unwrap(),
        parse_schema(EMAIL_EVENT_SCHEMA).unwrap(),
    )
}

/// An open with every v1 field and every enrichment field set.
fn enriched_open() -> EmailEvent {
    EmailEvent {
        event_id: "ev-open-1".into(),
        event_type: EventType::Opened,
        provider_event: "open".into(),
        provider: Provider::Sendgrid,
        source: "main".into(),
        occurred_at: 1_795_996_800_123,
        received_at: 1_795_996_801_000,
        recipient: Some("reader@example.com".into()),
        recipient_domain: Some("example.com".into()),
        message_id: Some("msg-1".into()),
        campaign_id: Some("spring".into()),
        tags: vec!["news".into()],
        metadata: [("plan".to_string(), "pro".to_string())].into(),
        reject_reason: None,
        bounce_class: None,
        url: None,
        user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148".into()),
        ip: Some("198.51.100.7".into()),
        geo: Some(Geo {
            country: Some("PT".into()),
            region: Some("11".into()),
            city: Some("Lisbon".into()),
        }),
        mta_response: None,
        description: None,
        raw_request_id: "req-1".into(),
        raw_event: "{}".into(),
        client_name: Some("Apple Mail".into()),
        client_os: Some("iOS".into()),
        device_class: Some(DeviceClass::Mobile),
        machine_open: Some(false),
        machine_reason: None,
        geo_source: Some("ip_database".into()),
    }
}

fn fields(value: &Value) -> &[(String, Value)] {
    match value {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn v2_only_adds_fields_each_with_a_default() {
    let (v1, v2) = schemas();
    let (Schema::Record(old), Schema::Record(new)) = (&v1, &v2) else {
        panic!("records expected")
    };
    let old_names: Vec<&str> = old.fields.iter().map(|f| f.name.as_str()).collect();
    let new_names: Vec<&str> = new.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        &new_names[..old_names.len()],
        &old_names[..],
        "v1 fields kept in order"
    );
    assert_eq!(
        &new_names[old_names.len()..],
        [
            "client_name",
            "client_os",
            "device_class",
            "machine_open",
            "machine_reason",
            "geo_source"
        ]
    );
    for field in &new.fields[old_names.len()..] {
        assert!(field.default.is_some(), "{} has no default", field.name);
    }
}

/// An old reader (v1) reads a v2 record: the v1 fields, equal to what was written, and
/// nothing else.
#[test]
fn old_readers_read_new_records() {
    let (v1, v2) = schemas();
    let event = enriched_open();
    let written = to_value(&event).unwrap().resolve(&v2).unwrap();
    let datum = to_avro_datum(&v2, written.clone()).unwrap();
    // Also what the normalize stage's field-by-field encoder writes.
    let registered = RegisteredSchema::new(7, v2.clone()).unwrap();
    let encoder = mailpipe_avro::event_datum::EventEncoder::new(registered).unwrap();
    assert_eq!(&encoder.encode(&event)[5..], &datum[..]);

    let read = from_avro_datum(&v2, &mut &datum[..], Some(&v1)).unwrap();
    let read = fields(&read);
    let Schema::Record(old) = &v1 else { panic!() };
    assert_eq!(read.len(), old.fields.len());
    for (name, value) in read {
        let original = fields(&written)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap();
        assert_eq!(value, original, "{name}");
    }
}

/// A new reader reads a v1 record (written before the enrichment existed): the v1 fields as
/// written, every enrichment field absent.
#[test]
fn new_readers_read_old_records() {
    let (v1, v2) = schemas();
    let mut old_event = enriched_open();
    old_event.client_name = None;
    old_event.client_os = None;
    old_event.device_class = None;
    old_event.machine_open = None;
    old_event.geo_source = None;
    // A v1 datum: the event's fields that v1 has, in v1's order.
    let full = to_value(&old_event).unwrap();
    let Schema::Record(old) = &v1 else { panic!() };
    let v1_value = Value::Record(
        old.fields
            .iter()
            .map(|f| {
                let value = fields(&full)
                    .iter()
                    .find(|(n, _)| *n == f.name)
                    .map(|(_, v)| v.clone())
                    .unwrap();
                (f.name.clone(), value)
            })
            .collect(),
    );
    let v1_value = v1_value.resolve(&v1).unwrap();
    let datum = to_avro_datum(&v1, v1_value).unwrap();

    // Avro resolution with the v2 reader schema.
    let resolved = from_avro_datum(&v1, &mut &datum[..], Some(&v2)).unwrap();
    assert_eq!(from_value::<EmailEvent>(&resolved).unwrap(), old_event);
    // What the consumers' generic path does (the registry converter decodes with the
    // writer schema only, then serde): the absent fields are None.
    let writer_only = from_avro_datum(&v1, &mut &datum[..], None).unwrap();
    assert_eq!(from_value::<EmailEvent>(&writer_only).unwrap(), old_event);
    // The field-by-field decoder is not used for v1 records (another layout) …
    let decoder = EventDecoder::new().unwrap();
    assert!(!decoder.reads(&v1));
    assert!(decoder.reads(&v2));
    // … and would refuse one rather than misread it.
    assert!(decoder.decode(&datum).is_err());
}
