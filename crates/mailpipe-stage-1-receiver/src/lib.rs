//! The edge receiver: the only part of mailpipe ESPs talk to. It takes
//! `POST /webhooks/{provider}[/{source}]`, writes the request, still signed and byte for
//! byte, to the raw topic (`mail.raw`), and answers (design.md §3.1).
//!
//! Invariant: a webhook request is answered 2xx only after Kafka acknowledged its raw
//! record (`acks=all`, idempotent producer); on failure, or when the bounded wait runs
//! out, the answer is 503 with `Retry-After`, so the ESP retries. The receiver keeps no
//! other state than rate-limit buckets.
//!
//! Map: `routes` (routes, access log, metrics) → `webhook` (one request: `guards`,
//! `ratelimit`, `body`, `record`) → `sink` (Kafka). `server` drives hyper's connections;
//! `error` is the one error type of the edge.

mod body;
mod error;
mod guards;
pub mod ratelimit;
mod record;
mod routes;
mod server;
pub mod sink;
mod state;
mod webhook;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_settings::Settings;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ReceiverError;
pub use record::RawRequest;
pub use routes::router;
pub use state::AppState;

use crate::ratelimit::RateLimiter;
use crate::sink::{KafkaSink, RawSink};

/// Runs the receiver on an already-bound `listener` until `shutdown` is cancelled, then
/// drains: stops accepting, lets in-flight requests finish (bounded by
/// `receiver.shutdown_timeout_ms`) and flushes the producer (same bound).
///
/// Fails at start when the raw schema cannot be registered (registry down or refusing an
/// incompatible schema). A broker that is down is not an error: requests get 503 and
/// `/readyz` says not ready until it answers.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topic = TopicNames::new(&settings.kafka.topic_prefix).name(Topic::Raw);
    let sink = Arc::new(KafkaSink::start(&settings, topic.clone()).await?);
    let limiter = RateLimiter::from_settings(&settings).context("rate limiter")?;
    let receiver = settings.receiver.clone();
    let state = AppState::new(
        settings,
        sink.clone(),
        limiter,
        metrics_handle(),
        shutdown.clone(),
    );
    let interval = Duration::from_millis(receiver.readiness_interval_ms);
    let background = shutdown.child_token();
    let readiness = tokio::spawn(state.clone().watch_readiness(interval, background.clone()));
    let upkeep = tokio::spawn(metrics_upkeep(background.clone()));
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, topic, "receiver listening");

    server::serve(listener, router(state), &receiver, shutdown).await;

    background.cancel();
    let _ = tokio::join!(readiness, upkeep);
    sink.flush(Duration::from_millis(receiver.shutdown_timeout_ms))
        .await;
    tracing::info!("receiver stopped");
    Ok(())
}

/// The process-wide Prometheus recorder, installed on first use. `run` may be called
/// several times in one process (tests), and a recorder can be installed only once.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            mailpipe_telemetry::install_metrics_recorder().unwrap_or_else(|e| {
                // Another recorder is installed (an embedding program's): /metrics is empty.
                tracing::warn!(error = %e, "metrics recorder not installed");
                PrometheusBuilder::new().build_recorder().handle()
            })
        })
        .clone()
}

/// Histograms buffer samples until upkeep folds them in; run it regularly.
async fn metrics_upkeep(stop: CancellationToken) {
    let handle = metrics_handle();
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod tests;
