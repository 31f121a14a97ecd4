//! What went wrong, as ClickHouse rows for the console: a `mail.rejected` record becomes a
//! `rejected_requests` row, a `mail.dlq` record a `dead_letters` row
//! (schemas/clickhouse/006_rejections_dead_letters.sql).
//!
//! Bodies and payloads are kept only as a short excerpt. Rejected requests reach here with
//! their credentials removed by verify; a dead letter of `mail.raw` carries the request as
//! received, credentials included, so its excerpt is left empty.

use mailpipe_avro::records::{DeadLetterRecord, RejectedRecord};
use serde::Serialize;

use crate::row::datetime_seconds;

/// The longest excerpt kept of a body or payload, in bytes (before UTF-8 repair).
pub const EXCERPT_BYTES: usize = 2048;

/// One row of `rejected_requests`, fields in column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clickhouse::Row)]
pub struct RejectionRow {
    pub request_id: String,
    pub rejected_at: u32,
    pub rejected_at_ms: i64,
    pub received_at_ms: i64,
    pub provider: String,
    pub source: String,
    pub reason: String,
    pub detail: String,
    pub remote_addr: String,
    pub body_bytes: u64,
    pub body_excerpt: String,
}

impl From<RejectedRecord> for RejectionRow {
    fn from(r: RejectedRecord) -> RejectionRow {
        RejectionRow {
            request_id: r.request_id,
            rejected_at: datetime_seconds(r.rejected_at),
            rejected_at_ms: r.rejected_at,
            received_at_ms: r.received_at,
            provider: r.provider,
            source: r.source,
            reason: r.reason,
            detail: r.detail,
            remote_addr: r.remote_addr.unwrap_or_default(),
            body_bytes: r.body.len() as u64,
            body_excerpt: excerpt(&r.body),
        }
    }
}

impl RejectionRow {
    /// Roughly the row's size on the wire, for batch limits.
    pub fn approximate_bytes(&self) -> usize {
        self.request_id.len()
            + self.provider.len()
            + self.source.len()
            + self.reason.len()
            + self.detail.len()
            + self.remote_addr.len()
            + self.body_excerpt.len()
            + 40
    }
}

/// One row of `dead_letters`, fields in column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, clickhouse::Row)]
pub struct DeadLetterRow {
    pub stage: String,
    pub reason: String,
    pub detail: String,
    pub failed_at: u32,
    pub failed_at_ms: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub raw_request_id: String,
    pub provider: String,
    pub source: String,
    pub payload_bytes: u64,
    pub payload_excerpt: String,
}

impl DeadLetterRow {
    /// The row of `record`; `raw_topic` is the name of `mail.raw` under the deployment's
    /// prefix, whose payloads are never excerpted.
    pub fn new(record: DeadLetterRecord, raw_topic: &str) -> DeadLetterRow {
        let payload_excerpt = if record.topic == raw_topic {
            String::new()
        } else {
            excerpt(&record.payload)
        };
        DeadLetterRow {
            stage: record.stage,
            reason: record.reason,
            detail: record.detail,
            failed_at: datetime_seconds(record.failed_at),
            failed_at_ms: record.failed_at,
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            raw_request_id: record.raw_request_id.unwrap_or_default(),
            provider: record.provider.unwrap_or_default(),
            source: record.source.unwrap_or_default(),
            payload_bytes: record.payload.len() as u64,
            payload_excerpt,
        }
    }

    /// Roughly the row's size on the wire, for batch limits.
    pub fn approximate_bytes(&self) -> usize {
        self.stage.len()
            + self.reason.len()
            + self.detail.len()
            + self.topic.len()
            + self.raw_request_id.len()
            + self.provider.len()
            + self.source.len()
            + self.payload_excerpt.len()
            + 48
    }
}

/// The first [`EXCERPT_BYTES`] of `bytes` as text, invalid UTF-8 replaced.
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(topic: &str, payload: &[u8]) -> DeadLetterRecord {
        DeadLetterRecord {
            stage: "verify".into(),
            reason: "undecodable".into(),
            detail: "bad avro".into(),
            failed_at: 1_700_000_000_500,
            topic: topic.into(),
            partition: 2,
            offset: 7,
            raw_request_id: None,
            provider: Some("mailgun".into()),
            source: None,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn a_raw_input_keeps_no_excerpt_others_keep_a_bounded_one() {
        let secret = b"authorization: Basic c2VjcmV0";
        let raw = DeadLetterRow::new(dead_letter("p.mail.raw", secret), "p.mail.raw");
        assert_eq!(raw.payload_excerpt, "");
        assert_eq!(raw.payload_bytes, secret.len() as u64);
        let big = vec![b'a'; EXCERPT_BYTES + 10];
        let other = DeadLetterRow::new(dead_letter("p.mail.verified", &big), "p.mail.raw");
        assert_eq!(other.payload_excerpt.len(), EXCERPT_BYTES);
        assert_eq!(
            (other.failed_at, other.partition, other.offset),
            (1_700_000_000, 2, 7)
        );
        assert_eq!(other.source, "");
    }

    #[test]
    fn a_rejection_keeps_an_excerpt_with_invalid_utf8_replaced() {
        let record = RejectedRecord {
            request_id: "r1".into(),
            received_at: 1_700_000_000_000,
            provider: "sendgrid".into(),
            source: "sendgrid".into(),
            method: "POST".into(),
            path: "/webhooks/sendgrid".into(),
            query: String::new(),
            headers: Vec::new(),
            remote_addr: None,
            body: vec![b'{', 0xff, b'}'],
            rejected_at: 1_700_000_001_000,
            reason: "bad_signature".into(),
            detail: "signature does not match".into(),
        };
        let row = RejectionRow::from(record);
        assert_eq!(row.body_excerpt, "{\u{fffd}}");
        assert_eq!(row.body_bytes, 3);
        assert_eq!(row.rejected_at, 1_700_000_001);
    }
}
