//! A planned batch becomes an HTTP request: the provider's body and headers, signed with
//! the source's development key at `now`, or spoiled as planned in `--bad` mode. Pure: the
//! same batch, keys and `now` always give the same bytes (every signature used is
//! deterministic: HMAC, RSA PKCS#1 v1.5, ECDSA with RFC 6979 nonces).

use mailpipe_model::{EventType, Provider};

use crate::error::SampleError;
use crate::keys::DevKeys;
use crate::plan::{Bad, Batch};
use crate::providers;

/// One event the pipeline should produce from a request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct DeclaredEvent {
    pub event_type: EventType,
    /// See [`crate::PlannedEvent::id`].
    pub id: String,
}

/// A webhook request ready to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub provider: Provider,
    pub source: String,
    /// `/webhooks/{provider}[/{source}]`.
    pub path: String,
    /// Names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What the pipeline makes of it: the events, in body order (none for a bad request).
    pub events: Vec<DeclaredEvent>,
    pub bad: Option<Bad>,
    /// Position of the batch in the plan.
    pub batch: usize,
}

impl WebhookRequest {
    /// The canonical `event_id`s the pipeline derives from this request, in body order, as
    /// the normalize stage computes them (empty for a request that does not parse). They
    /// are a function of the events themselves, never of when the request was received.
    pub fn canonical_event_ids(&self) -> Vec<String> {
        let headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let input = mailpipe_normalize_core::ParseInput {
            source: &self.source,
            raw_request_id: "",
            received_at_ms: 0,
            headers: &headers,
            query: "",
            body: &self.body,
        };
        mailpipe_normalize_core::parse(self.provider, &input)
            .map(|events| events.into_iter().map(|e| e.event_id).collect())
            .unwrap_or_default()
    }
}

/// What a provider module produces for a batch.
pub(crate) struct Rendered {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What every provider module needs besides the batch.
pub(crate) struct Signing {
    /// Unix seconds to sign with (the stale time for [`Bad::Stale`]).
    pub signed_at: i64,
    pub forged: bool,
    pub malformed: bool,
}

impl Signing {
    fn new(bad: Option<Bad>, now: i64, tolerance: i64) -> Signing {
        Signing {
            // Ten minutes past the tolerance: stale whatever the clock skew.
            signed_at: if bad == Some(Bad::Stale) {
                now.saturating_sub(tolerance.saturating_add(600))
            } else {
                now
            },
            forged: bad == Some(Bad::Forged),
            malformed: bad == Some(Bad::Malformed),
        }
    }
}

/// `batch` as a request to its provider's source in `keys`, signed at `now` (Unix seconds).
pub fn render(batch: &Batch, keys: &DevKeys, now: i64) -> Result<WebhookRequest, SampleError> {
    let source = keys.get(batch.provider).ok_or(SampleError::NoSource {
        provider: batch.provider,
    })?;
    let signing = Signing::new(batch.bad, now, source.tolerance_secs);
    let Rendered { headers, body } = providers::render(batch, &source.secret, &signing)?;
    let events = if batch.bad.is_some() {
        Vec::new()
    } else {
        batch
            .events
            .iter()
            .map(|e| DeclaredEvent {
                event_type: e.kind.event_type,
                id: e.id.clone(),
            })
            .collect()
    };
    Ok(WebhookRequest {
        provider: batch.provider,
        source: source.source_id.clone(),
        path: source.path.clone(),
        headers,
        body,
        events,
        bad: batch.bad,
        batch: batch.index,
    })
}
