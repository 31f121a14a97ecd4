//! The routes: webhooks (POST to receive; GET and HEAD answer 200 for ESPs that check a
//! URL before enabling it), health, readiness and metrics. The webhook flow itself is in
//! `webhook.rs`; this file wires routes and the per-request bookkeeping around them.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use mailpipe_telemetry::names;
use uuid::Uuid;

use crate::error::ReceiverError;
use crate::state::AppState;
use crate::webhook;

/// What the access log and the request metrics need to know about a webhook request,
/// left by the handler in the response's extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestInfo {
    /// A known provider id, else `"unknown"` (never the path segment as sent).
    pub provider: &'static str,
    /// A configured source id, if the request resolved to one.
    pub source: Option<String>,
    pub client: Option<IpAddr>,
    pub request_id: Option<Uuid>,
    pub body_bytes: usize,
}

/// Every route of the receiver; tests drive it with `oneshot`, `run` serves it.
pub fn router(state: AppState) -> Router {
    let by_provider: MethodRouter<AppState> = post(
        |State(state): State<AppState>, Path(provider): Path<String>, request: Request| async move {
            webhook::receive(&state, &provider, None, request).await
        },
    )
    .get(
        |State(state): State<AppState>, Path(provider): Path<String>, request: Request| async move {
            webhook::probe(&state, &provider, None, request)
        },
    )
    .fallback(method_not_allowed);
    let by_source: MethodRouter<AppState> = post(
        |State(state): State<AppState>,
         Path((provider, source)): Path<(String, String)>,
         request: Request| async move {
            webhook::receive(&state, &provider, Some(&source), request).await
        },
    )
    .get(
        |State(state): State<AppState>,
         Path((provider, source)): Path<(String, String)>,
         request: Request| async move {
            webhook::probe(&state, &provider, Some(&source), request)
        },
    )
    .fallback(method_not_allowed);
    Router::new()
        .route("/webhooks/{provider}", by_provider)
        .route("/webhooks/{provider}/{source}", by_source)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(|| async { ReceiverError::UnknownRoute })
        .with_state(state)
}

async fn method_not_allowed() -> ReceiverError {
    ReceiverError::MethodNotAllowed
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, Json(serde_json::json!({ "ready": true }))).into_response()
    } else {
        let body = Json(serde_json::json!({ "ready": false }));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let text = state.inner().metrics.render();
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content_type, text).into_response()
}

/// Around every webhook request: the concurrency budget (503 at once when spent), the
/// in-flight gauge, request metrics and the access log.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match state.inner().concurrency.clone().try_acquire_owned() {
        Ok(_permit) => {
            let _in_flight = InFlight::enter();
            next.run(request).await
        }
        Err(_) => {
            let retry_after_secs = state.inner().settings.receiver.retry_after_secs;
            ReceiverError::OverCapacity { retry_after_secs }.into_response()
        }
    };
    let info = response
        .extensions()
        .get::<RequestInfo>()
        .cloned()
        .unwrap_or_default();
    let provider = if info.provider.is_empty() {
        "unknown"
    } else {
        info.provider
    };
    let source = info.source.as_deref().unwrap_or("unknown");
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::counter!(names::RECEIVER_REQUESTS,
        "provider" => provider, "source" => source.to_owned(), "status" => status.as_str().to_owned())
    .increment(1);
    metrics::histogram!(names::RECEIVER_REQUEST_SECONDS).record(elapsed.as_secs_f64());
    // Path and ids only: never the query string (tokens hide there) or header values.
    tracing::info!(
        target: "mailpipe_stage_1_receiver::access",
        %method,
        path,
        status = status.as_u16(),
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        provider,
        source,
        client = info.client.map(tracing::field::display),
        request_id = info.request_id.map(tracing::field::display),
        body_bytes = info.body_bytes,
        "request"
    );
    response
}

/// Holds one unit of the in-flight gauge; released on drop, also when the client goes
/// away and the request future is dropped mid-way.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        metrics::gauge!(names::RECEIVER_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(names::RECEIVER_IN_FLIGHT).decrement(1.0);
    }
}
