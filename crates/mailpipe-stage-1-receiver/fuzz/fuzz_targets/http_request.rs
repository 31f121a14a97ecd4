//! Whole HTTP requests — method, path, query, headers, body in arbitrary chunks, client
//! address — through the receiver's router, with its real guards, body limits and rate
//! limiter, and an in-memory sink instead of Kafka (told per input to acknowledge or fail).
//!
//! Properties: the router never panics; every answer is one the contract lists (design.md
//! §3.1, never another 5xx than 503); a 2xx to a POST comes only after the sink took
//! exactly one record, whose body is the bytes sent, whose request id is the one answered,
//! and which encodes to a valid `mail.raw` Avro value; a sink failure is a 503, never a 4xx.
#![no_main]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use figment::providers::{Format, Toml};
use figment::Figment;
use http_body::Frame;
use http_body_util::BodyExt;
use mailpipe_model::Provider;
use mailpipe_stage_1_receiver::ratelimit::RateLimiter;
use mailpipe_stage_1_receiver::sink::{Ack, RawSink, SinkError, SinkFuture};
use mailpipe_stage_1_receiver::{router, AppState, RawRequest};
use mailpipe_settings::Settings;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Small, so bodies over the limit (413, declared or streamed) are reachable.
const MAX_BODY_BYTES: usize = 4096;

#[derive(Arbitrary, Debug)]
struct Input {
    method: MethodChoice,
    path: PathChoice,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body_chunks: Vec<Vec<u8>>,
    peer: Peer,
    sink_fails: bool,
}

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    Post,
    Get,
    Head,
    Put,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum PathChoice {
    /// `/webhooks/{provider}` or `/webhooks/{provider}/{source}`.
    Webhook {
        provider: u8,
        source: Option<SourceChoice>,
    },
    Health,
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum SourceChoice {
    Configured(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Peer {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
    /// A trusted proxy (10.0.0.0/8): `X-Forwarded-For` is believed.
    Proxy(u8, u16),
    Unknown,
}

/// Configured source ids besides one per provider (named like it).
const EXTRA_SOURCES: [&str; 2] = ["acme-eu", "locked"];

/// Acknowledges or fails every publish, as the current input says; keeps what it took.
#[derive(Default)]
struct FuzzSink {
    fail: AtomicBool,
    taken: Mutex<Vec<RawRequest>>,
}

impl RawSink for FuzzSink {
    fn publish(&self, record: RawRequest) -> SinkFuture<'_, Result<Ack, SinkError>> {
        Box::pin(async move {
            self.taken.lock().unwrap().push(record);
            if self.fail.load(Ordering::SeqCst) {
                return Err(SinkError::Kafka("fuzz: refused".into()));
            }
            Ok(Ack {
                partition: 0,
                offset: 0,
            })
        })
    }
    fn probe(&self) -> SinkFuture<'_, bool> {
        Box::pin(async { true })
    }
    fn flush(&self, _: Duration) -> SinkFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A body delivered in the chunks the input gives.
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Router,
    sink: Arc<FuzzSink>,
    schema: apache_avro::Schema,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // The built-in defaults (rate limits included), plus sources like the handler tests'.
        let mut extra: String = Provider::ALL
            .iter()
            .map(|p| format!("[sources.{p}]\nprovider = \"{p}\"\n"))
            .collect();
        extra.push_str(&format!(
            "[sources.acme-eu]\nprovider = \"mailgun\"\n\
             [sources.locked]\nprovider = \"postmark\"\nallowed_cidrs = [\"192.0.2.0/24\"]\n\
             [receiver]\nmax_body_bytes = {MAX_BODY_BYTES}\ntrusted_proxies = [\"10.0.0.0/8\"]\n"
        ));
        let figment = Figment::from(Toml::string(mailpipe_settings::DEFAULTS_TOML))
            .merge(Toml::string(&extra));
        let settings = Settings::from_figment(&figment).expect("fuzz settings are valid");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let sink = Arc::new(FuzzSink::default());
        let limiter = RateLimiter::from_settings(&settings).unwrap();
        let state = runtime.block_on(async {
            AppState::new(
                settings,
                sink.clone(),
                limiter,
                mailpipe_stage_1_receiver::metrics_handle(),
                CancellationToken::new(),
            )
        });
        let schema = mailpipe_avro::parse_schema(mailpipe_avro::RAW_REQUEST_SCHEMA).unwrap();
        Harness {
            runtime,
            app: router(state),
            sink,
            schema,
        }
    })
}

fn build_request(input: &Input) -> Option<Request<Body>> {
    let method = match &input.method {
        MethodChoice::Post => Method::POST,
        MethodChoice::Get => Method::GET,
        MethodChoice::Head => Method::HEAD,
        MethodChoice::Put => Method::PUT,
        MethodChoice::Other(name) => Method::from_bytes(name.as_bytes()).ok()?,
    };
    let mut uri = match &input.path {
        PathChoice::Webhook { provider, source } => {
            let provider = Provider::ALL[*provider as usize % Provider::ALL.len()];
            match source {
                None => format!("/webhooks/{provider}"),
                Some(SourceChoice::Configured(i)) => {
                    let ids: Vec<&str> = Provider::ALL
                        .iter()
                        .map(|p| p.as_str())
                        .chain(EXTRA_SOURCES)
                        .collect();
                    format!("/webhooks/{provider}/{}", ids[*i as usize % ids.len()])
                }
                Some(SourceChoice::Any(segment)) => format!("/webhooks/{provider}/{segment}"),
            }
        }
        PathChoice::Health => "/healthz".to_string(),
        PathChoice::Any(path) => path.clone(),
    };
    if let Some(query) = &input.query {
        uri.push('?');
        uri.push_str(query);
    }
    let mut builder = Request::builder().method(method).uri(uri.as_str());
    for (name, value) in &input.headers {
        // hyper never hands the router a header it could not parse: skip such pairs.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let chunks = input
        .body_chunks
        .iter()
        .map(|c| Bytes::copy_from_slice(c))
        .collect();
    let mut request = builder.body(Body::new(Chunks(chunks))).ok()?;
    let peer = match input.peer {
        Peer::V4(ip, port) => Some(SocketAddr::new(IpAddr::from(ip), port)),
        Peer::V6(ip, port) => Some(SocketAddr::new(IpAddr::from(ip), port)),
        Peer::Proxy(last, port) => Some(SocketAddr::new(IpAddr::from([10, 0, 0, last]), port)),
        Peer::Unknown => None,
    };
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    Some(request)
}

/// Every status the router may answer (design.md §3.1; 400 is axum's answer to a path
/// segment that is not valid percent-encoded UTF-8).
const EXPECTED: [u16; 10] = [200, 400, 403, 404, 405, 408, 413, 415, 429, 503];

libfuzzer_sys::fuzz_target!(|input: Input| {
    let Some(request) = build_request(&input) else {
        return;
    };
    let is_post = request.method() == Method::POST;
    let harness = harness();
    harness.sink.fail.store(input.sink_fails, Ordering::SeqCst);
    harness.sink.taken.lock().unwrap().clear();
    let (status, headers, body) = harness.runtime.block_on(async {
        let response = harness.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    });
    assert!(
        EXPECTED.contains(&status.as_u16()),
        "unexpected status {status}"
    );
    let taken = std::mem::take(&mut *harness.sink.taken.lock().unwrap());
    assert!(taken.len() <= 1, "one request, {} records", taken.len());
    if let Some(record) = taken.first() {
        let sent: Vec<u8> = input.body_chunks.concat();
        assert_eq!(
            &record.body[..],
            &sent[..],
            "the record's body is the bytes sent"
        );
        let value = record.clone().into_avro_value();
        assert!(value.validate(&harness.schema), "not a valid raw record");
        if input.sink_fails {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "sink failure");
        }
    }
    if is_post && status.is_success() {
        assert!(!input.sink_fails, "2xx although the sink failed");
        let record = taken.first().expect("2xx without a record");
        let answered: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let id = record.request_id.hyphenated().to_string();
        assert_eq!(answered["request_id"], id.as_str());
        assert_eq!(headers["x-request-id"], id.as_str());
    }
});
