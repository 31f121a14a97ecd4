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
}
