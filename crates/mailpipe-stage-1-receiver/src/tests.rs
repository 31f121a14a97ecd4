//! Handler tests: every route and guard through `Router::oneshot` (no socket, no broker).
//! The sink is an in-memory stand-in below the handler; the real broker is exercised by
//! the integration tests in `tests/`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use figment::providers::{Format, Toml};
use figment::Figment;
use http_body_util::BodyExt;
use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::ratelimit::RateLimiter;
use crate::sink::{Ack, RawSink, SinkError, SinkFuture};
use crate::{router, AppState, RawRequest};

/// Records what it is given. `gate`: each publish waits for a permit before acking.
#[derive(Default)]
pub(crate) struct MemorySink {
    pub records: Mutex<Vec<RawRequest>>,
    pub fail: bool,
    pub gate: Option<Semaphore>,
    /// Publishes begun (a request reached the sink), acknowledged or not.
    pub publishing: AtomicUsize,
}

impl MemorySink {
    /// Waits until `count` publishes have begun (10 s at most: a test never hangs here).
    pub async fn wait_for_publishing(&self, count: usize) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while self.publishing.load(Ordering::SeqCst) < count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "{count} publishes not begun within 10 s");
    }
}

impl RawSink for MemorySink {
    fn publish(&self, record: RawRequest) -> SinkFuture<'_, Result<Ack, SinkError>> {
        Box::pin(async move {
            self.publishing.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate open").forget();
            }
            if self.fail {
                return Err(SinkError::Timeout(Duration::from_millis(5)));
            }
            let mut records = self.records.lock().unwrap();
            records.push(record);
            Ok(Ack {
                partition: 0,
                offset: records.len() as i64 - 1,
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

/// Defaults (no env, no user file) plus one source per provider, `acme-eu` (mailgun) and
/// `locked` (postmark, allowlist 192.0.2.0/24); bodies up to 1 KiB; proxies in 10/8.
pub(crate) fn settings() -> Settings {
    let mut sources: String = Provider::ALL
        .iter()
        .map(|p| format!("[sources.{p}]\nprovider = \"{p}\"\n"))
        .collect();
    sources.push_str(
        "[sources.acme-eu]\nprovider = \"mailgun\"\n\
         [sources.locked]\nprovider = \"postmark\"\nallowed_cidrs = [\"192.0.2.0/24\"]\n\
         [receiver]\nmax_body_bytes = 1024\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    );
    let figment =
        Figment::from(Toml::string(mailpipe_settings::DEFAULTS_TOML)).merge(Toml::string(&sources));
    Settings::from_figment(&figment).unwrap()
}

pub(crate) fn app(settings: Settings, sink: Arc<MemorySink>) -> (Router, AppState) {
    let limiter = RateLimiter::from_settings(&settings).unwrap();
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let state = AppState::new(settings, sink, limiter, metrics, CancellationToken::new());
    (router(state.clone()), state)
}

pub(crate) fn request(
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: Body,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    let mut request = builder.body(body).unwrap();
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

pub(crate) fn post_json(uri: &str, body: &'static str) -> Request<Body> {
    request(
        Method::POST,
        uri,
        Some("application/json"),
        Body::from(body),
    )
}

pub(crate) async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn post_is_answered_200_with_the_record_exactly_as_sent() {
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    let mut req = post_json(
        "/webhooks/sendgrid?x=1&sig=abc",
        "[{\"event\":\"delivered\"}]",
    );
    req.headers_mut().append(
        "x-twilio-email-event-webhook-signature",
        "c2ln".parse().unwrap(),
    );
    req.headers_mut().append("X-Custom", "a".parse().unwrap());
    req.headers_mut().append("x-custom", "b ".parse().unwrap());
    let (status, headers, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let records = sink.records.lock().unwrap();
    let record = &records[0];
    assert_eq!(json["request_id"], record.request_id.to_string());
    assert_eq!(
        headers["x-request-id"],
        record.request_id.to_string().as_str()
    );
    assert_eq!(record.request_id.get_version_num(), 7);
    assert_eq!(&record.body[..], b"[{\"event\":\"delivered\"}]");
    assert_eq!(
        (record.provider, record.source.as_str()),
        (Provider::Sendgrid, "sendgrid")
    );
    assert_eq!(
        (record.method.as_str(), record.path.as_str()),
        ("POST", "/webhooks/sendgrid")
    );
    assert_eq!(record.query, "x=1&sig=abc");
    let custom: Vec<&[u8]> = record
        .headers
        .get_all("x-custom")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    assert_eq!(custom, [&b"a"[..], &b"b "[..]]);
    assert_eq!(record.remote_addr, Some("198.51.100.7".parse().unwrap()));
}

#[tokio::test]
async fn post_with_a_source_segment_uses_that_source() {
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    let req = request(
        Method::POST,
        "/webhooks/mailgun/acme-eu",
        Some("application/x-www-form-urlencoded"),
        Body::from("token=t&signature=s"),
    );
    assert_eq!(send(&app, req).await.0, StatusCode::OK);
    assert_eq!(sink.records.lock().unwrap()[0].source, "acme-eu");
}

#[tokio::test]
async fn the_200_waits_for_the_acknowledgement() {
    let sink = Arc::new(MemorySink {
        gate: Some(Semaphore::new(0)),
        ..MemorySink::default()
    });
    let (app, _) = app(settings(), sink.clone());
    let pending = tokio::spawn(send_owned(app, post_json("/webhooks/postmark", "{}")));
    // The request reached the sink, which holds its acknowledgement back.
    sink.wait_for_publishing(1).await;
    tokio::task::yield_now().await;
    assert!(
        !pending.is_finished(),
        "answered before the sink acknowledged"
    );
    assert!(sink.records.lock().unwrap().is_empty());
    sink.gate.as_ref().unwrap().add_permits(1);
    assert_eq!(pending.await.unwrap(), StatusCode::OK);
    assert_eq!(sink.records.lock().unwrap().len(), 1);
}

async fn send_owned(app: Router, request: Request<Body>) -> StatusCode {
    send(&app, request).await.0
}

#[tokio::test]
async fn unacknowledged_records_get_503_with_retry_after() {
    let sink = Arc::new(MemorySink {
        fail: true,
        ..MemorySink::default()
    });
    let (app, _) = app(settings(), sink);
    let (status, headers, body) = send(&app, post_json("/webhooks/resend", "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "5");
    assert!(
        !String::from_utf8_lossy(&body).contains("acknowledgement"),
        "no internals"
    );
}

#[tokio::test]
async fn get_and_head_answer_200_on_known_paths_only() {
    let (app, _) = app(settings(), Arc::new(MemorySink::default()));
    for method in [Method::GET, Method::HEAD] {
        let ok = request(method.clone(), "/webhooks/mandrill", None, Body::empty());
        assert_eq!(send(&app, ok).await.0, StatusCode::OK, "{method}");
        let with_source = request(
            method.clone(),
            "/webhooks/mailgun/acme-eu",
            None,
            Body::empty(),
        );
        assert_eq!(send(&app, with_source).await.0, StatusCode::OK, "{method}");
        let unknown = request(
            method.clone(),
            "/webhooks/mailgun/nope",
            None,
            Body::empty(),
        );
        assert_eq!(
            send(&app, unknown).await.0,
            StatusCode::NOT_FOUND,
            "{method}"
        );
    }
}

#[tokio::test]
async fn unknown_provider_source_or_route_is_404() {
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    for uri in [
        "/webhooks/hotmail",
        "/webhooks/mailgun/nope",
        "/webhooks/sendgrid/acme-eu", // acme-eu is a mailgun source
        "/webhooks/SendGrid",         // ids are exact
        "/webhooks/sendgrid/",
        "/elsewhere",
    ] {
        let (status, _, body) = send(&app, post_json(uri, "{}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(body.starts_with(b"{\"error\""), "{uri}: {body:?}");
    }
    assert!(sink.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let (app, _) = app(settings(), Arc::new(MemorySink::default()));
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        let req = request(method.clone(), "/webhooks/postal", None, Body::empty());
        let (status, headers, _) = send(&app, req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers[header::ALLOW], "POST, GET, HEAD");
    }
}
