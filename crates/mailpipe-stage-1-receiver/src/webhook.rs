//! One webhook request, start to finish. The order of the checks is deliberate: the
//! cheap refusals (404, 403, 415, 413 from `Content-Length`, 429) come before any body
//! byte is read, and the answer is 200 only after the sink acknowledged the record.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mailpipe_model::Provider;
use mailpipe_settings::SourceSettings;
use mailpipe_telemetry::names;
use uuid::Uuid;

use crate::body;
use crate::error::ReceiverError;
use crate::guards;
use crate::ratelimit::Decision;
use crate::record::RawRequest;
use crate::routes::RequestInfo;
use crate::state::AppState;

/// `POST /webhooks/{provider}[/{source}]`.
pub async fn receive(
    state: &AppState,
    provider: &str,
    source: Option<&str>,
    request: Request,
) -> Response {
    let mut info = RequestInfo::default();
    let outcome = receive_inner(state, provider, source, request, &mut info).await;
    with_info(outcome, info)
}

/// `GET` and `HEAD` on a webhook path: 200 when a POST there would be accepted by the
/// routing and allowlist checks (ESPs validate URLs this way), else the same 404 / 403.
pub fn probe(state: &AppState, provider: &str, source: Option<&str>, request: Request) -> Response {
    let mut info = RequestInfo::default();
    let (parts, _body) = request.into_parts();
    let outcome = resolve(state, provider, source, &parts, &mut info)
        .map(|_| (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response());
    with_info(outcome, info)
}

fn with_info(outcome: Result<Response, ReceiverError>, info: RequestInfo) -> Response {
    let mut response = outcome.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(info);
    response
}

/// Provider, source and client allowlist: 404 / 403, or the source's settings.
fn resolve<'s>(
    state: &'s AppState,
    provider: &str,
    source: Option<&str>,
    parts: &Parts,
    info: &mut RequestInfo,
) -> Result<(Provider, &'s str, &'s SourceSettings), ReceiverError> {
    let provider: Provider = provider
        .parse()
        .map_err(|_| ReceiverError::UnknownProvider)?;
    info.provider = provider.as_str();
    let settings = &state.inner().settings;
    let (source_id, source) = settings
        .source(provider, source)
        .ok_or(ReceiverError::UnknownSource)?;
    info.source = Some(source_id.to_owned());
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    info.client = guards::client_ip(peer, &parts.headers, &settings.receiver.trusted_proxies);
    if !guards::ip_allowed(&source.allowed_cidrs, info.client) {
        return Err(ReceiverError::IpNotAllowed);
    }
    Ok((provider, source_id, source))
}

async fn receive_inner(
    state: &AppState,
    provider: &str,
    source: Option<&str>,
    request: Request,
    info: &mut RequestInfo,
) -> Result<Response, ReceiverError> {
    let (parts, body) = request.into_parts();
    let (provider, source_id, _) = resolve(state, provider, source, &parts, info)?;
    let receiver = &state.inner().settings.receiver;
    if !guards::content_type_allowed(provider, parts.headers.get(header::CONTENT_TYPE)) {
        return Err(ReceiverError::UnsupportedContentType);
    }
    body::check_declared_length(&parts.headers, receiver.max_body_bytes)?;
    if let Decision::Limit { scope, retry_after } =
        state.inner().limiter.check(source_id, info.client).await
    {
        return Err(ReceiverError::RateLimited {
            scope: scope.reason(),
            retry_after,
        });
    }
    let deadline = Duration::from_millis(receiver.body_read_timeout_ms);
    let body = body::read_body(body, receiver.max_body_bytes, deadline).await?;
    info.body_bytes = body.len();
    metrics::counter!(names::RECEIVER_BODY_BYTES,
        "provider" => provider.as_str(), "source" => source_id.to_owned())
    .increment(body.len() as u64);

    let request_id = Uuid::now_v7();
    info.request_id = Some(request_id);
    let record = RawRequest {
        request_id,
        received_at_ms: now_ms(),
        provider,
        source: source_id.to_owned(),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        remote_addr: info.client,
        body,
    };
    // The invariant of the receiver: 200 only once the record is acknowledged.
    match state.inner().sink.publish(record).await {
        Ok(_ack) => {
            let id = request_id.hyphenated().to_string();
            let mut response = (
                StatusCode::OK,
                Json(serde_json::json!({ "request_id": id })),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-request-id", value);
            }
            Ok(response)
        }
        Err(cause) => Err(ReceiverError::Unavailable {
            cause,
            retry_after_secs: receiver.retry_after_secs,
        }),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
