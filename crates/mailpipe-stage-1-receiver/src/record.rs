//! The raw record: one webhook request exactly as received, and its Avro form
//! (`schemas/raw_request.avsc`). Raw is the source of truth (design.md invariant 4), so
//! nothing here interprets, trims or re-encodes what the client sent.

use std::net::IpAddr;

use apache_avro::types::Value;
use axum::http::HeaderMap;
use bytes::Bytes;
use mailpipe_model::Provider;
use uuid::Uuid;

/// One request as the receiver got it, before it is encoded for `mail.raw`.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Time-ordered (v7), so raw records sort by arrival; also the Kafka key.
    pub request_id: Uuid,
    /// Milliseconds since the Unix epoch, when the whole body had been read.
    pub received_at_ms: i64,
    pub provider: Provider,
    pub source: String,
    pub method: String,
    /// As received: still percent-encoded, without the query.
    pub path: String,
    /// Without the leading `?`; empty when there was none.
    pub query: String,
    /// Every header. Names are lower-case by construction of `HeaderMap`; values are the
    /// bytes sent (hyper drops only the optional whitespace around each value).
    pub headers: HeaderMap,
    /// The client, see `guards::client_ip`; `None` when the transport has no peer address.
    pub remote_addr: Option<IpAddr>,
    pub body: Bytes,
}

impl RawRequest {
    /// Bytes this record will roughly take once encoded; sizes the encode buffer.
    pub fn encoded_size_hint(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        self.body.len() + headers + self.path.len() + self.query.len() + 128
    }

    /// The record as an Avro value of `RawRequest`, fields in schema order. Header order:
    /// names in first-arrival order, each name's values in arrival order (what `HeaderMap`
    /// keeps; the schema's doc says so).
    pub fn into_avro_value(self) -> Value {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                Value::Record(vec![
                    ("name".into(), Value::String(name.as_str().to_owned())),
                    ("value".into(), Value::Bytes(value.as_bytes().to_vec())),
                ])
            })
            .collect();
        let remote_addr = match self.remote_addr {
            Some(ip) => Value::Union(1, Box::new(Value::String(ip.to_string()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        Value::Record(vec![
            (
                "request_id".into(),
                Value::String(self.request_id.hyphenated().to_string()),
            ),
            (
                "received_at".into(),
                Value::TimestampMillis(self.received_at_ms),
            ),
            (
                "provider".into(),
                Value::String(self.provider.as_str().into()),
            ),
            ("source".into(), Value::String(self.source)),
            ("method".into(), Value::String(self.method)),
            ("path".into(), Value::String(self.path)),
            ("query".into(), Value::String(self.query)),
            ("headers".into(), Value::Array(headers)),
            ("remote_addr".into(), remote_addr),
            // Reuses the allocation when the body is not shared (the usual case).
            ("body".into(), Value::Bytes(Vec::from(self.body))),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use axum::http::HeaderValue;

    fn sample() -> RawRequest {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-dup", HeaderValue::from_static("first"));
        headers.append("x-other", HeaderValue::from_static("o"));
        headers.append("x-dup", HeaderValue::from_static("second"));
        // Not UTF-8: must survive as bytes.
        headers.append(
            "x-bin",
            HeaderValue::from_bytes(&[0xff, b'a', 0x80]).unwrap(),
        );
        RawRequest {
            request_id: Uuid::now_v7(),
            received_at_ms: 1_700_000_000_123,
            provider: Provider::Postmark,
            source: "acme".into(),
            method: "POST".into(),
            path: "/webhooks/postmark/acme".into(),
            query: "a=1&b=%20".into(),
            headers,
            remote_addr: Some("192.0.2.7".parse().unwrap()),
            body: Bytes::from_static(b"{\"RecordType\":\"Delivery\"}\0\xff"),
        }
    }

    #[test]
    fn value_matches_the_shipped_schema_and_round_trips() {
        let schema = mailpipe_avro::parse_schema(mailpipe_avro::RAW_REQUEST_SCHEMA).unwrap();
        let record = sample();
        let body = record.body.clone();
        let value = record.into_avro_value();
        let writer = GenericDatumWriter::builder(&schema).build().unwrap();
        let bytes = writer.write_value_to_vec(value.clone()).unwrap();
        let reader = GenericDatumReader::builder(&schema).build().unwrap();
        let decoded = reader.read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(decoded, value);
        let Value::Record(fields) = decoded else {
            panic!("not a record")
        };
        assert_eq!(fields[9], ("body".into(), Value::Bytes(body.to_vec())));
    }

    #[test]
    fn headers_keep_bytes_and_per_name_order() {
        let Value::Record(fields) = sample().into_avro_value() else {
            panic!("not a record")
        };
        let Value::Array(headers) = &fields[7].1 else {
            panic!("headers not an array")
        };
        let pairs: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|h| match h {
                Value::Record(f) => match (&f[0].1, &f[1].1) {
                    (Value::String(n), Value::Bytes(v)) => (n.clone(), v.clone()),
                    other => panic!("bad header {other:?}"),
                },
                other => panic!("bad header {other:?}"),
            })
            .collect();
        let expected: Vec<(String, Vec<u8>)> = vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("x-dup".into(), b"first".to_vec()),
            ("x-dup".into(), b"second".to_vec()),
            ("x-other".into(), b"o".to_vec()),
            ("x-bin".into(), vec![0xff, b'a', 0x80]),
        ];
        assert_eq!(pairs, expected);
    }

    #[test]
    fn missing_remote_address_is_null() {
        let mut record = sample();
        record.remote_addr = None;
        let Value::Record(fields) = record.into_avro_value() else {
            panic!("not a record")
        };
        assert_eq!(fields[8].1, Value::Union(0, Box::new(Value::Null)));
    }
}
