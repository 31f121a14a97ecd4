//! Handler tests of the guards (413, 415, 403, 429, 408, 503 over capacity) and of the
//! health, readiness and metrics routes, through `Router::oneshot`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, StatusCode};
use bytes::Bytes;
use mailpipe_telemetry::names;
use tokio::sync::Semaphore;

use crate::tests::{app, post_json, request, send, settings, MemorySink};

#[tokio::test]
async fn declared_body_over_the_limit_is_413_without_reading_it() {
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    let mut req = post_json("/webhooks/sparkpost", "{}");
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, "1025".parse().unwrap());
    let (status, _, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(sink.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413() {
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    let chunk: &'static [u8] = &[b'x'; 400];
    let body = crate::body::tests::chunked(vec![chunk, chunk, chunk]); // 1200 > 1024
    let req = request(
        Method::POST,
        "/webhooks/sparkpost",
        Some("application/json"),
        body,
    );
    assert_eq!(send(&app, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Exactly at the limit is fine.
    let (x, y): (&'static [u8], &'static [u8]) = (&[b'x'; 1000], &[b'y'; 24]);
    let body = crate::body::tests::chunked(vec![x, y]);
    let req = request(
        Method::POST,
        "/webhooks/sparkpost",
        Some("application/json"),
        body,
    );
    assert_eq!(send(&app, req).await.0, StatusCode::OK);
    assert_eq!(sink.records.lock().unwrap()[0].body.len(), 1024);
}

#[tokio::test]
async fn content_type_the_provider_never_sends_is_415() {
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    let xml = request(
        Method::POST,
        "/webhooks/postmark",
        Some("text/xml"),
        Body::from("<a/>"),
    );
    assert_eq!(send(&app, xml).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let json_to_mandrill = post_json("/webhooks/mandrill", "{}");
    assert_eq!(
        send(&app, json_to_mandrill).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let sns = request(
        Method::POST,
        "/webhooks/ses",
        Some("text/plain; charset=UTF-8"),
        Body::from("{}"),
    );
    assert_eq!(send(&app, sns).await.0, StatusCode::OK);
    let missing = request(Method::POST, "/webhooks/postmark", None, Body::from("{}"));
    assert_eq!(send(&app, missing).await.0, StatusCode::OK);
    assert_eq!(sink.records.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn client_outside_the_allowlist_is_403() {
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    // The default test peer, 198.51.100.7, is outside 192.0.2.0/24.
    let outside = post_json("/webhooks/postmark/locked", "{}");
    assert_eq!(send(&app, outside).await.0, StatusCode::FORBIDDEN);
    let mut inside = post_json("/webhooks/postmark/locked", "{}");
    let peer: SocketAddr = "192.0.2.10:1234".parse().unwrap();
    inside.extensions_mut().insert(ConnectInfo(peer));
    assert_eq!(send(&app, inside).await.0, StatusCode::OK);
    // Through a trusted proxy (10.0.0.0/8), X-Forwarded-For names the client...
    let mut proxied = post_json("/webhooks/postmark/locked", "{}");
    let proxy: SocketAddr = "10.1.2.3:5555".parse().unwrap();
    proxied.extensions_mut().insert(ConnectInfo(proxy));
    proxied
        .headers_mut()
        .insert("x-forwarded-for", "192.0.2.99".parse().unwrap());
    assert_eq!(send(&app, proxied).await.0, StatusCode::OK);
    // ...but not through anyone else.
    let mut spoofed = post_json("/webhooks/postmark/locked", "{}");
    spoofed
        .headers_mut()
        .insert("x-forwarded-for", "192.0.2.99".parse().unwrap());
    assert_eq!(send(&app, spoofed).await.0, StatusCode::FORBIDDEN);
    let records = sink.records.lock().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].remote_addr, Some("192.0.2.99".parse().unwrap()));
}

#[tokio::test]
async fn empty_bucket_is_429_with_retry_after() {
    let mut settings = settings();
    settings.receiver.rate_limit.per_source_per_second = 0.5;
    settings.receiver.rate_limit.per_source_burst = 2;
    let (app, _) = app(settings, Arc::new(MemorySink::default()));
    for _ in 0..2 {
        assert_eq!(
            send(&app, post_json("/webhooks/brevo", "{}")).await.0,
            StatusCode::OK
        );
    }
    let (status, headers, _) = send(&app, post_json("/webhooks/brevo", "{}")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // One token every 2 s.
    assert_eq!(headers[header::RETRY_AFTER], "2");
    // Another source is not affected.
    assert_eq!(
        send(&app, post_json("/webhooks/mailjet", "{}")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn default_limits_let_a_burst_of_5000_sns_requests_from_one_address_through() {
    // SES posts through SNS, one request per event, from few addresses; SNS retries a
    // throttled delivery only a few times. With the default settings (the real limiter),
    // 5,000 requests sent back to back from one address all get 2xx.
    let sink = Arc::new(MemorySink::default());
    let (app, _) = app(settings(), sink.clone());
    let sns: SocketAddr = "54.240.217.9:443".parse().unwrap();
    let mut refused = Vec::new();
    for i in 0..5000 {
        let mut req = request(
            Method::POST,
            "/webhooks/ses",
            Some("text/plain; charset=UTF-8"),
            Body::from("{\"Type\":\"Notification\"}"),
        );
        req.extensions_mut().insert(ConnectInfo(sns));
        let status = send(&app, req).await.0;
        if !status.is_success() {
            refused.push((i, status));
        }
    }
    assert!(
        refused.is_empty(),
        "{} refused, first {:?}",
        refused.len(),
        refused.first()
    );
    assert_eq!(sink.records.lock().unwrap().len(), 5000);
}

#[tokio::test]
async fn body_that_stops_arriving_is_408() {
    let mut settings = settings();
    settings.receiver.body_read_timeout_ms = 100;
    let (app, _) = app(settings, Arc::new(MemorySink::default()));
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
    tx.send_data(Bytes::from_static(b"{\"partial\":"))
        .await
        .unwrap();
    let req = request(
        Method::POST,
        "/webhooks/mailersend",
        Some("application/json"),
        Body::new(body),
    );
    // Bounded so a missing timeout fails the test instead of hanging it.
    let answer = tokio::time::timeout(Duration::from_secs(10), send(&app, req)).await;
    assert_eq!(answer.expect("answered").0, StatusCode::REQUEST_TIMEOUT);
    drop(tx);
}

#[tokio::test]
async fn beyond_max_concurrent_requests_is_503_at_once() {
    let mut settings = settings();
    settings.receiver.max_concurrent_requests = 1;
    let sink = Arc::new(MemorySink {
        gate: Some(Semaphore::new(0)),
        ..MemorySink::default()
    });
    let (app, _) = app(settings, sink.clone());
    let busy = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("/webhooks/postal", "{}")).await.0 }
    });
    // The first request holds the only permit: it waits in the (closed) sink.
    sink.wait_for_publishing(1).await;
    // The sink stays closed, so a request that queued for the permit instead of being
    // refused would never be answered: the bound turns that into a failure, not a hang.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        send(&app, post_json("/webhooks/postal", "{}")),
    )
    .await;
    let (status, headers, _) = answer.expect("answered without waiting for the permit");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    sink.gate.as_ref().unwrap().add_permits(1);
    assert_eq!(busy.await.unwrap(), StatusCode::OK);
    // The permit is back: the next request is served.
    sink.gate.as_ref().unwrap().add_permits(1);
    assert_eq!(
        send(&app, post_json("/webhooks/postal", "{}")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_routes() {
    let (app, state) = app(settings(), Arc::new(MemorySink::default()));
    let get = |uri| request(Method::GET, uri, None, Body::empty());
    assert_eq!(send(&app, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        send(&app, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    state.set_ready(true);
    assert_eq!(send(&app, get("/readyz")).await.0, StatusCode::OK);
    let (status, headers, _) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
}

#[tokio::test]
async fn metrics_count_requests_by_provider_source_and_status() {
    let handle = crate::metrics_handle();
    let (app, _) = app(settings(), Arc::new(MemorySink::default()));
    send(&app, post_json("/webhooks/mailgun/acme-eu", "{}")).await;
    send(&app, post_json("/webhooks/mailgun/unknown-one", "{}")).await;
    let text = handle.render();
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(names::RECEIVER_REQUESTS))
        .collect();
    let has = |parts: &[&str]| requests.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&[
            "provider=\"mailgun\"",
            "source=\"acme-eu\"",
            "status=\"200\""
        ]),
        "{text}"
    );
    assert!(
        has(&[
            "provider=\"mailgun\"",
            "source=\"unknown\"",
            "status=\"404\""
        ]),
        "{text}"
    );
    assert!(text.contains("reason=\"unknown_source\""), "{text}");
    assert!(
        !text.contains("unknown-one"),
        "path segments as sent must not become labels"
    );
}
