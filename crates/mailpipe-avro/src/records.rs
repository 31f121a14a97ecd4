//! Serde views of the records on our topics, for the stages that read them.
//!
//! Each struct matches its schema in `schemas/` field for field (names, order, types), so
//! `AvroCodec::decode` fills it from any writer schema the registry resolves.

use serde::{Deserialize, Serialize};

/// A record of `mail.raw` (`schemas/raw_request.avsc`), as read by the verify stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRecord {
    pub request_id: String,
    /// Milliseconds since the Unix epoch (`timestamp-millis`).
    pub received_at: i64,
    pub provider: String,
    pub source: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<Header>,
    pub remote_addr: Option<String>,
    #[serde(with = "apache_avro::serde::bytes")]
    pub body: Vec<u8>,
}

/// One HTTP header: lower-cased name, value bytes as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    #[serde(with = "apache_avro::serde::bytes")]
    pub value: Vec<u8>,
}

impl RawRecord {
    /// The first value of header `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_slice())
    }
}

/// A record of `mail.verified` (`schemas/verified_request.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedRecord {
    pub request_id: String,
    pub received_at: i64,
    pub provider: String,
    pub source: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Credentials removed.
    pub headers: Vec<Header>,
    pub remote_addr: Option<String>,
    #[serde(with = "apache_avro::serde::bytes")]
    pub body: Vec<u8>,
    pub verified_at: i64,
    pub kind: VerifiedKind,
    pub control_action: Option<String>,
    pub key_index: Option<i32>,
}

/// Whether a verified request carries ESP events or was a protocol message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifiedKind {
    Events,
    Control,
}

/// A record of `mail.rejected` (`schemas/rejected_request.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub request_id: String,
    pub received_at: i64,
    pub provider: String,
    pub source: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Credentials removed.
    pub headers: Vec<Header>,
    pub remote_addr: Option<String>,
    #[serde(with = "apache_avro::serde::bytes")]
    pub body: Vec<u8>,
    pub rejected_at: i64,
    pub reason: String,
    pub detail: String,
}

/// A record of `mail.dlq` (`schemas/dead_letter.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    pub stage: String,
    pub reason: String,
    pub detail: String,
    pub failed_at: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub raw_request_id: Option<String>,
    pub provider: Option<String>,
    pub source: Option<String>,
    #[serde(with = "apache_avro::serde::bytes")]
    pub payload: Vec<u8>,
}

/// A `mail.actions` record read as data (schemas/rule_action.avsc): every field, its enums
/// as their symbols, so any writer version reads. The readers of the topic (the aggregate
/// and deliver stages) share it.
pub type RuleActionView = RuleAction<String, String, String>;

/// A `mail.actions` record (schemas/rule_action.avsc), field for field; `K`, `D`, `O` are
/// the types of its `action`, `decision` and `outcome` enums: `String` to read any symbol,
/// unit-variant enums to write one (an Avro enum is written from a unit variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleAction<K, D, O> {
    pub action_id: String,
    pub rule_id: String,
    pub rule_version: String,
    pub action_index: i32,
    pub action: K,
    pub parameters: std::collections::BTreeMap<String, String>,
    pub decision: D,
    pub outcome: O,
    pub event_id: String,
    pub event_type: String,
    pub provider: String,
    pub source: String,
    pub recipient: Option<String>,
    pub campaign_id: Option<String>,
    pub occurred_at: i64,
    pub decided_at: i64,
    pub due_at: i64,
    pub detail: String,
}

/// A `mail.deliveries` record: one outbound delivery attempt
/// (schemas/delivery_attempt.avsc). Written by the deliver stage, loaded by the aggregate
/// stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttemptRecord {
    pub action_id: String,
    pub webhook_id: String,
    pub rule_id: String,
    pub event_id: String,
    pub target: String,
    pub attempt: i32,
    pub at: i64,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub verdict: String,
    pub reason: String,
    pub error: String,
    pub next_attempt_at: i64,
}

impl VerifiedRecord {
    /// The first value of header `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_schema, RAW_REQUEST_SCHEMA};
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;

    fn sample() -> RawRecord {
        RawRecord {
            request_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            received_at: 1_764_000_000_123,
            provider: "sendgrid".into(),
            source: "sendgrid".into(),
            method: "POST".into(),
            path: "/webhooks/sendgrid".into(),
            query: "".into(),
            headers: vec![
                Header {
                    name: "content-type".into(),
                    value: b"application/json".to_vec(),
                },
                Header {
                    name: "x-odd".into(),
                    value: vec![0xff, 0x00, b'a'],
                },
            ],
            remote_addr: Some("192.0.2.7".into()),
            body: b"[{\"event\":\"open\"}]\xff".to_vec(),
        }
    }

    #[test]
    fn raw_record_round_trips_through_its_schema() {
        let schema = parse_schema(RAW_REQUEST_SCHEMA).unwrap();
        for record in [
            sample(),
            RawRecord {
                remote_addr: None,
                headers: vec![],
                body: vec![],
                ..sample()
            },
        ] {
            let value = apache_avro::to_value(&record)
                .unwrap()
                .resolve(&schema)
                .unwrap();
            let bytes = GenericDatumWriter::builder(&schema)
                .build()
                .unwrap()
                .write_value_to_vec(value)
                .unwrap();
            let back = GenericDatumReader::builder(&schema)
                .build()
                .unwrap()
                .read_value(&mut bytes.as_slice())
                .unwrap();
            let decoded: RawRecord = apache_avro::from_value(&back).unwrap();
            assert_eq!(decoded, record);
        }
    }

    #[test]
    fn header_lookup_takes_the_first_value() {
        let mut record = sample();
        record.headers.push(Header {
            name: "content-type".into(),
            value: b"text/plain".to_vec(),
        });
        assert_eq!(
            record.header("content-type"),
            Some(&b"application/json"[..])
        );
        assert_eq!(record.header("authorization"), None);
    }

    /// Writes with the schema-aware serde path `RegisteredSchema::encode` uses, reads back
    /// generically.
    fn round_trip<T>(schema_text: &str, record: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let schema = parse_schema(schema_text).unwrap();
        let bytes = GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_ser_to_vec(record)
            .unwrap();
        let back = GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut bytes.as_slice())
            .unwrap();
        apache_avro::from_value(&back).unwrap()
    }

    #[test]
    fn verified_rejected_and_dead_letter_records_round_trip() {
        let raw = sample();
        let verified = VerifiedRecord {
            request_id: raw.request_id.clone(),
            received_at: raw.received_at,
            provider: raw.provider.clone(),
            source: raw.source.clone(),
            method: raw.method.clone(),
            path: raw.path.clone(),
            query: raw.query.clone(),
            headers: raw.headers.clone(),
            remote_addr: raw.remote_addr.clone(),
            body: raw.body.clone(),
            verified_at: raw.received_at + 5,
            kind: VerifiedKind::Control,
            control_action: Some("sns_subscription_confirmed".into()),
            key_index: Some(1),
        };
        assert_eq!(
            round_trip(crate::VERIFIED_REQUEST_SCHEMA, &verified),
            verified
        );
        let rejected = RejectedRecord {
            request_id: raw.request_id.clone(),
            received_at: raw.received_at,
            provider: raw.provider.clone(),
            source: raw.source.clone(),
            method: raw.method.clone(),
            path: raw.path.clone(),
            query: raw.query.clone(),
            headers: vec![],
            remote_addr: None,
            body: raw.body.clone(),
            rejected_at: raw.received_at + 5,
            reason: "bad_signature".into(),
            detail: "no configured key verifies the signature".into(),
        };
        assert_eq!(
            round_trip(crate::REJECTED_REQUEST_SCHEMA, &rejected),
            rejected
        );
        let dead = DeadLetterRecord {
            stage: "normalize".into(),
            reason: "not_json".into(),
            detail: "expected value at line 1".into(),
            failed_at: 1,
            topic: "mail.verified".into(),
            partition: 3,
            offset: 42,
            raw_request_id: Some(raw.request_id.clone()),
            provider: None,
            source: Some("sendgrid".into()),
            payload: vec![0, 1, 2, 255],
        };
        assert_eq!(round_trip(crate::DEAD_LETTER_SCHEMA, &dead), dead);
    }
}
