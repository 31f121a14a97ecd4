//! Arbitrary or mutated-from-valid `mail.events` datums through the field-by-field decoder
//! and the generic one (Avro value, then serde): never a panic, and the same event or an
//! error from both. The one allowed difference: bytes left after the record, which only
//! the field-by-field decoder refuses.
#![no_main]

use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use mailpipe_avro::event_datum::EventDecoder;
use mailpipe_avro::{parse_schema, RegisteredSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};

struct Fixture {
    decoder: EventDecoder,
    schema: RegisteredSchema,
    /// A valid datum with every optional field set, to mutate.
    valid: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Keeps the generic decoder from reserving gigabytes for a forged length.
        apache_avro::max_allocation_bytes(1 << 20);
        let schema = RegisteredSchema::new(1, parse_schema(EMAIL_EVENT_SCHEMA).unwrap()).unwrap();
        let event = EmailEvent {
            event_id: "ev".into(),
            event_type: EventType::Clicked,
            provider_event: "click".into(),
            provider: Provider::Mailgun,
            source: "s".into(),
            occurred_at: 1_700_000_000_000,
            received_at: 1_700_000_000_001,
            recipient: Some("a@b.c".into()),
            recipient_domain: Some("b.c".into()),
            message_id: Some("m".into()),
            campaign_id: Some("c".into()),
            tags: vec!["t".into(), "u".into()],
            metadata: [("k".to_string(), "v".to_string())].into(),
            reject_reason: Some(RejectReason::Spam),
            bounce_class: Some(BounceClass::Soft),
            url: Some("https://x".into()),
            user_agent: Some("ua".into()),
            ip: Some("1.2.3.4".into()),
            geo: Some(Geo {
                country: Some("PT".into()),
                region: Some("L".into()),
                city: None,
            }),
            mta_response: Some("250".into()),
            description: Some("d".into()),
            raw_request_id: "r".into(),
            raw_event: "{}".into(),
            client_name: None,
            client_os: None,
            device_class: None,
            machine_open: None,
            machine_reason: None,
            geo_source: None,
        };
        let valid = schema.encode(&event, 0).unwrap()[5..].to_vec();
        Fixture {
            decoder: EventDecoder::new().unwrap(),
            schema,
            valid,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // First byte even: the rest is the datum. Odd: the rest are (position, byte) pairs
    // written over the valid datum, the last pair's position also truncating it.
    let datum = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let mut datum = f.valid.clone();
            let mut end = datum.len();
            for pair in rest.chunks_exact(2) {
                let at = usize::from(pair[0]) % datum.len();
                datum[at] = pair[1];
                end = at.max(1);
            }
            if rest.len() % 2 == 1 {
                datum.truncate(end);
            }
            datum
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    };
    let fast = f.decoder.decode(&datum);
    let reader = GenericDatumReader::builder(f.schema.schema()).build().unwrap();
    let mut remaining = &datum[..];
    let generic = reader
        .read_value(&mut remaining)
        .ok()
        .and_then(|value| apache_avro::from_value::<EmailEvent>(&value).ok());
    match (fast, generic) {
        (Ok(event), Some(expected)) => {
            assert!(remaining.is_empty(), "accepted trailing bytes");
            assert_eq!(event, expected);
        }
        (Ok(event), None) => panic!("only the field-by-field decoder accepts {event:?}"),
        (Err(_), Some(_)) => assert!(!remaining.is_empty(), "only the generic decoder accepts"),
        (Err(_), None) => {}
    }
});
