//! The field-by-field event encoder and decoder against the generic (serde) ones: same
//! bytes out, same events (and the same refusals) in.

use std::path::{Path, PathBuf};

use mailpipe_normalize_core::{parse, ParseInput};

use super::*;

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
        client_name: None,
        client_os: None,
        device_class: None,
        machine_open: None,
        machine_reason: None,
        geo_source: None,
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
    // Every truncation, and one byte too many. The generic reader takes a datum that ends
    // where the v2 (enrichment) fields start, all null here (six one-byte union indexes),
    // as if they were absent; this decoder refuses it, as every truncation.
    let v2_fields_start = good.len() - 6;
    for end in 0..good.len() {
        assert!(decoder.decode(&good[..end]).is_err(), "truncated at {end}");
        if end < v2_fields_start {
            assert!(generic(&good[..end]).is_err(), "truncated at {end}");
        }
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
    let other = parse_schema(&EMAIL_EVENT_SCHEMA.replace("\"raw_event\"", "\"raw_text\"")).unwrap();
    assert!(!decoder.reads(&other));
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
    let schema = registered().clone();
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
    let schema = registered().clone();
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
    let text = crate::EMAIL_EVENT_SCHEMA.replace("\"raw_event\"", "\"raw_text\"");
    let schema = crate::parse_schema(&text).unwrap();
    let error = EventEncoder::new(RegisteredSchema::new(1, schema).unwrap()).unwrap_err();
    assert!(error.to_string().contains("raw_text"), "{error}");
}
