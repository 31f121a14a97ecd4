//! Logging and metrics set-up shared by every binary, and the one list of metric names.
//!
//! Invariant: every metric mailpipe emits is named in [`names`]; labels are low-cardinality
//! (provider, source, topic, reason, status) — never a recipient, event id or URL.

pub mod names;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use mailpipe_settings::{LogFormat, TelemetrySettings};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {reason}")]
    BadLogFilter { filter: String, reason: String },
    #[error("cannot install the Prometheus recorder: {0}")]
    Metrics(String),
}

/// Installs the global `tracing` subscriber: text for people, JSON for log collectors.
/// `RUST_LOG`, when set, wins over the configured filter. Safe to call twice (the second
/// call is a no-op), which tests rely on.
pub fn init_logging(settings: &TelemetrySettings) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => settings.log_filter.clone(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|e| TelemetryError::BadLogFilter {
        filter: filter.clone(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        // Colour only for a terminal: make up / make run write logs to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // try_init fails only when a subscriber is already installed: keep the first one.
    let _ = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// Installs the global Prometheus recorder and returns its handle; `render()` gives the
/// text exposition for a `/metrics` route. Stages without an HTTP server of their own call
/// [`serve_metrics`] instead.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(names::LATENCY_BUCKETS_SECONDS)
        .map_err(|e| TelemetryError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| TelemetryError::Metrics(e.to_string()))?;
    names::describe_all();
    Ok(handle)
}

/// Answers `GET /readyz`: `Ok(detail)` when ready, `Err(reason)` when not.
pub type ReadyCheck = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Installs the recorder and serves a consumer stage's endpoints on `addr` from a
/// background task: `GET /metrics` (Prometheus), `GET /healthz` (the process is up) and
/// `GET /readyz` (200 or 503 with the reason, from `ready`). Binds before returning, so a
/// taken port is an error at start-up. Must be called inside a tokio runtime.
pub fn serve_endpoints(addr: SocketAddr, ready: ReadyCheck) -> Result<(), TelemetryError> {
    let handle = install_metrics_recorder()?;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| TelemetryError::Metrics(format!("listening on {addr}: {e}")))?;
    let render = handle.clone();
    let app = Router::new()
        .route("/metrics", get(move || async move { render.render() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                match ready() {
                    Ok(detail) => (StatusCode::OK, format!("ready: {detail}\n")),
                    Err(reason) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {reason}\n"),
                    ),
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, %addr, "the metrics and health endpoint stopped");
        }
    });
    // Histograms are kept as summaries between scrapes; upkeep drains them.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_reported() {
        let mut settings = mailpipe_settings::Settings::load_from(None)
            .unwrap()
            .telemetry;
        settings.log_filter = "info,[".into();
        // RUST_LOG is not set under `cargo test` unless the developer sets it.
        if std::env::var("RUST_LOG").is_err() {
            assert!(matches!(
                init_logging(&settings),
                Err(TelemetryError::BadLogFilter { .. })
            ));
        }
    }

    #[test]
    fn recorder_renders_described_metrics() {
        let handle = install_metrics_recorder().unwrap();
        metrics::counter!(names::KAFKA_MESSAGES_CONSUMED, "topic" => "t").increment(3);
        let text = handle.render();
        assert!(
            text.contains(&format!(
                "{} {{topic=\"t\"}} 3",
                names::KAFKA_MESSAGES_CONSUMED
            )) || text.contains(&format!(
                "{}{{topic=\"t\"}} 3",
                names::KAFKA_MESSAGES_CONSUMED
            )),
            "{text}"
        );
    }
}
