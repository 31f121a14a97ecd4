//! The console (`mailpipe-console`, default 127.0.0.1:8090): one web page (served from the
//! binary with its assets: no CDN, works offline), the read-only JSON API behind it
//! ([`api`]; contract in API.md, OpenAPI at `/api/openapi.json`), and the alerts
//! ([`alerts`], evaluated by [`watch`] on a schedule).
//!
//! Invariants:
//! - Read-only: ClickHouse queries run with `readonly=2`; Kafka clients never join a group
//!   or commit.
//! - Bounded: every query has a timeout (`[console] query_timeout_ms`, then 503) and every
//!   list a row limit.
//! - Counts read `FINAL`: what the page shows equals what an analyst's exact query gives.
//! - No credentials in answers: rejected bodies are stored without them, dead letters of
//!   `mail.raw` without excerpt, URLs never in error texts.
//! - No authentication of its own: it listens on loopback by default and answers with
//!   recipients (suppressions) and request-body excerpts; expose it only behind an
//!   authenticating proxy (or set `[privacy] hash_recipients`).

pub mod alerts;
pub mod api;
pub mod error;
pub mod lag;
pub mod range;
pub mod store;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::lag::LagReader;
use crate::store::Store;
use crate::watch::Watcher;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// The OpenAPI document of the JSON API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Serves the console on `[console] listen` and runs the alert loop until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = settings.console.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("console: listening on {listen}"))?;
    let app = build(settings)?;
    let alerts = tokio::spawn(app.watcher.clone().run(shutdown.clone()));
    tracing::info!(%listen, "console serving");
    let served = serve(listener, app, shutdown).await;
    alerts.abort();
    served
}

/// Serves the page and the API on `listener` until `shutdown` (the alert loop is
/// [`Watcher::run`]; tests drive its rounds themselves).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("console: serving")
}

/// The console's state from `settings` (no connection is made here).
pub fn build(settings: Settings) -> anyhow::Result<AppState> {
    let settings = Arc::new(settings);
    let store = Store::new(&settings);
    let lag = LagReader::new(settings.clone());
    let watcher = Arc::new(Watcher::new(settings.clone(), store.clone(), lag.clone())?);
    let http = mailpipe_runtime::http::client("mailpipe-console", Duration::from_secs(2))?;
    Ok(AppState {
        settings,
        store,
        lag,
        watcher,
        http,
    })
}

/// Every route of the console.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(|| asset_response("index.html")))
        .route(
            "/assets/{*file}",
            get(|Path(file): Path<String>| asset_response_owned(file)),
        )
        .route("/api/overview", get(api::overview))
        .route("/api/providers", get(api::providers))
        .route("/api/sources", get(api::sources))
        .route("/api/campaigns", get(api::campaigns))
        .route("/api/rejections", get(api::rejections))
        .route("/api/examples", get(api::examples))
        .route("/api/lag", get(api::lag))
        .route("/api/rules", get(api::rules))
        .route("/api/alerts", get(api::alerts))
        .route("/api/stages", get(api::stages))
        .route(
            "/api/engagement/recipient/{address}",
            get(api::engagement_recipient),
        )
        .route(
            "/api/engagement/domain/{domain}",
            get(api::engagement_domain),
        )
        .route("/api/predict/send-time/{address}", get(api::predict))
        .route("/api/predict/likelihood/{address}", get(api::predict))
        .route(
            "/api/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(app)
}

/// Ready when ClickHouse answers a trivial query in time.
async fn readyz(State(app): State<AppState>) -> Response {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics_text() -> Response {
    match metrics_handle() {
        Some(h) => h.render().into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

/// The process's Prometheus recorder, installed on first use (tests build several consoles
/// in one process; only one recorder can be installed).
fn metrics_handle() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| mailpipe_telemetry::install_metrics_recorder().ok())
        .as_ref()
}

/// Installs the recorder now (before the first metric is recorded) and keeps its
/// histograms drained.
pub fn init_metrics() {
    if let Some(handle) = metrics_handle() {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
    }
}

async fn count_requests(request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    if endpoint.starts_with("/api/") {
        metrics::counter!(names::CONSOLE_API_REQUESTS, "endpoint" => endpoint,
            "status" => response.status().as_u16().to_string())
        .increment(1);
    }
    response
}

async fn asset_response_owned(file: String) -> Response {
    asset_response(&file).await
}

async fn asset_response(file: &str) -> Response {
    match embedded::ASSETS.iter().find(|(name, _)| *name == file) {
        Some((name, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type(name)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}
