//! What every handler shares: settings, the sink, the rate limiter, the concurrency
//! budget, readiness and the metrics handle. Built once by `run` (or by a test).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ratelimit::RateLimiter;
use crate::sink::RawSink;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub settings: Settings,
    pub sink: Arc<dyn RawSink>,
    pub limiter: RateLimiter,
    /// Webhook requests in progress; `try_acquire` failing means over capacity.
    pub concurrency: Arc<Semaphore>,
    pub metrics: PrometheusHandle,
    ready: AtomicBool,
    /// Cancelled when shutdown starts: from then on `/readyz` says no, so load balancers
    /// stop sending while in-flight requests finish.
    shutdown: CancellationToken,
}

impl AppState {
    pub fn new(
        settings: Settings,
        sink: Arc<dyn RawSink>,
        limiter: RateLimiter,
        metrics: PrometheusHandle,
        shutdown: CancellationToken,
    ) -> AppState {
        let permits = settings.receiver.max_concurrent_requests;
        AppState(Arc::new(Inner {
            settings,
            sink,
            limiter,
            concurrency: Arc::new(Semaphore::new(permits)),
            metrics,
            ready: AtomicBool::new(false),
            shutdown,
        }))
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// Ready: the sink answered its last probe and shutdown has not started.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Relaxed) && !self.0.shutdown.is_cancelled()
    }

    /// Records the outcome of a readiness probe.
    pub fn set_ready(&self, ready: bool) {
        let was = self.0.ready.swap(ready, Ordering::Relaxed);
        if was != ready {
            if ready {
                tracing::info!("ready: the broker answers for the raw topic");
            } else {
                tracing::warn!("not ready: the broker does not answer for the raw topic");
            }
        }
        metrics::gauge!(names::RECEIVER_READY).set(if ready { 1.0 } else { 0.0 });
    }

    /// Probes the sink every `interval` until `stop` is cancelled.
    pub async fn watch_readiness(self, interval: Duration, stop: CancellationToken) {
        loop {
            let ready = tokio::select! {
                ready = self.0.sink.probe() => ready,
                () = stop.cancelled() => return,
            };
            self.set_ready(ready);
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
