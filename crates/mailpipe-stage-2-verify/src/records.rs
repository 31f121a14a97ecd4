//! Pure conversions between the topics' records and the library's [`Request`]: a raw record
//! is split into the request verification reads and the few fields it does not (moved,
//! not copied), and joined back into a verified or rejected record afterwards.
//!
//! Invariant: the builders take only what the library hands back stripped of credentials
//! ([`Verified`], [`StrippedRequest`]), so no record can carry a credential header.

use mailpipe_avro::records::{Header, RawRecord, RejectedRecord, VerifiedKind, VerifiedRecord};
use mailpipe_verify_core::{Rejection, Request, StrippedRequest, Verified};

use crate::control::ControlAction;

/// What verification does not read from a raw record, kept to rebuild the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub provider: String,
    pub source: String,
    pub remote_addr: Option<String>,
}

/// Splits a raw record into the library's request and the rest, moving every field.
pub fn split(raw: RawRecord) -> (Request, Envelope) {
    let request = Request {
        request_id: raw.request_id,
        received_at_ms: raw.received_at,
        method: raw.method,
        path: raw.path,
        query: raw.query,
        headers: raw.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        body: raw.body,
    };
    let envelope = Envelope {
        provider: raw.provider,
        source: raw.source,
        remote_addr: raw.remote_addr,
    };
    (request, envelope)
}

fn headers(headers: Vec<(String, Vec<u8>)>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|(name, value)| Header { name, value })
        .collect()
}

/// What a verified request becomes on `mail.verified`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body carries ESP events for normalize.
    Events,
    /// An SNS protocol message verify handled itself; `action` says what it did.
    Control { action: ControlAction },
}

/// The `mail.verified` record of a request that passed verification.
pub fn verified_record(
    verified: Verified,
    envelope: Envelope,
    outcome: &Outcome,
    verified_at_ms: i64,
) -> VerifiedRecord {
    let key_index = verified.key_index().and_then(|i| i32::try_from(i).ok());
    let request = verified.into_request().into_inner();
    let (kind, control_action) = match outcome {
        Outcome::Events => (VerifiedKind::Events, None),
        Outcome::Control { action } => (VerifiedKind::Control, Some(action.as_str().to_string())),
    };
    VerifiedRecord {
        request_id: request.request_id,
        received_at: request.received_at_ms,
        provider: envelope.provider,
        source: envelope.source,
        method: request.method,
        path: request.path,
        query: request.query,
        headers: headers(request.headers),
        remote_addr: envelope.remote_addr,
        body: request.body,
        verified_at: verified_at_ms,
        kind,
        control_action,
        key_index,
    }
}

/// The `mail.rejected` record of a request that failed verification. The rejection's
/// detail is secret-free by the library's contract.
pub fn rejected_record(
    request: StrippedRequest,
    envelope: Envelope,
    rejection: &Rejection,
    rejected_at_ms: i64,
) -> RejectedRecord {
    let request = request.into_inner();
    RejectedRecord {
        request_id: request.request_id,
        received_at: request.received_at_ms,
        provider: envelope.provider,
        source: envelope.source,
        method: request.method,
        path: request.path,
        query: request.query,
        headers: headers(request.headers),
        remote_addr: envelope.remote_addr,
        body: request.body,
        rejected_at: rejected_at_ms,
        reason: rejection.reason.as_str().to_string(),
        detail: rejection.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpipe_model::Provider;
    use mailpipe_verify_core::{testing, Reason, Scheme, SnsControl, SourceConfig, SourceOptions};

    fn raw() -> RawRecord {
        RawRecord {
            request_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            received_at: 1_764_000_000_123,
            provider: "postmark".into(),
            source: "acme".into(),
            method: "POST".into(),
            path: "/webhooks/postmark/acme".into(),
            query: "a=1".into(),
            headers: vec![
                Header {
                    name: "content-type".into(),
                    value: b"application/json".to_vec(),
                },
                Header {
                    name: "x-odd".into(),
                    value: vec![0xff, 0x00],
                },
            ],
            remote_addr: Some("192.0.2.7".into()),
            body: b"[{\"RecordType\":\"Delivery\"}]".to_vec(),
        }
    }

    fn postmark() -> SourceConfig {
        SourceConfig::new(Provider::Postmark, &[], SourceOptions::default())
    }

    fn verified(request: Request, key_index: Option<usize>) -> Verified {
        testing::verified(&postmark(), request, Scheme::BasicAuth, key_index, None)
    }

    #[test]
    fn split_moves_every_field_into_the_request_or_the_envelope() {
        let (request, envelope) = split(raw());
        assert_eq!(request.request_id, "01890a5d-ac96-774b-bcce-b302099a8057");
        assert_eq!(request.received_at_ms, 1_764_000_000_123);
        assert_eq!(request.received_at_secs(), 1_764_000_000);
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/webhooks/postmark/acme")
        );
        assert_eq!(request.query, "a=1");
        assert_eq!(
            request.headers,
            vec![
                ("content-type".to_string(), b"application/json".to_vec()),
                ("x-odd".to_string(), vec![0xff, 0x00]),
            ]
        );
        assert_eq!(request.body, raw().body);
        assert_eq!(
            envelope,
            Envelope {
                provider: "postmark".into(),
                source: "acme".into(),
                remote_addr: Some("192.0.2.7".into()),
            }
        );
    }

    #[test]
    fn verified_events_record_keeps_the_raw_fields() {
        let (request, envelope) = split(raw());
        let record = verified_record(verified(request, Some(1)), envelope, &Outcome::Events, 42);
        let original = raw();
        assert_eq!(record.request_id, original.request_id);
        assert_eq!(record.received_at, original.received_at);
        assert_eq!(
            (record.provider.as_str(), record.source.as_str()),
            ("postmark", "acme")
        );
        assert_eq!(record.headers, original.headers);
        assert_eq!(record.remote_addr, original.remote_addr);
        assert_eq!(record.body, original.body);
        assert_eq!(record.query, "a=1");
        assert_eq!(record.verified_at, 42);
        assert_eq!(record.kind, VerifiedKind::Events);
        assert_eq!(record.control_action, None);
        assert_eq!(record.key_index, Some(1));
    }

    #[test]
    fn control_record_names_its_action_and_sns_has_no_key_index() {
        let (request, envelope) = split(raw());
        let ses = SourceConfig::new(Provider::Ses, &[], SourceOptions::default());
        let control = Some(SnsControl::Unsubscribed {
            topic_arn: "arn".into(),
        });
        let sns = testing::verified(&ses, request, Scheme::SnsV2, None, control);
        let outcome = Outcome::Control {
            action: ControlAction::SubscriptionConfirmed,
        };
        let record = verified_record(sns, envelope, &outcome, 7);
        assert_eq!(record.kind, VerifiedKind::Control);
        assert_eq!(
            record.control_action.as_deref(),
            Some("sns_subscription_confirmed")
        );
        assert_eq!(record.key_index, None);
    }

    #[test]
    fn key_index_beyond_i32_is_dropped_not_wrapped() {
        let (request, envelope) = split(raw());
        let huge = verified(request, Some(usize::MAX));
        let record = verified_record(huge, envelope, &Outcome::Events, 0);
        assert_eq!(record.key_index, None);
    }

    #[test]
    fn rejected_record_carries_reason_name_and_detail() {
        let (mut request, envelope) = split(raw());
        request.headers.retain(|(name, _)| name != "x-odd");
        let request = StrippedRequest::new(&postmark(), request);
        let rejection = Rejection::new(Reason::StaleTimestamp, "timestamp is 400 s from receipt");
        let record = rejected_record(request, envelope, &rejection, 99);
        assert_eq!(record.reason, "stale_timestamp");
        assert_eq!(record.detail, "timestamp is 400 s from receipt");
        assert_eq!(record.rejected_at, 99);
        assert_eq!(
            record.headers.len(),
            1,
            "headers as given (already stripped)"
        );
        assert_eq!(record.request_id, raw().request_id);
        assert_eq!(record.body, raw().body);
        assert_eq!(record.remote_addr.as_deref(), Some("192.0.2.7"));
    }
}
