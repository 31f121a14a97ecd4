//! The alert loop: every `[console.alerts] interval_seconds`, observe (ClickHouse, Kafka
//! lag), evaluate ([`crate::alerts`]), record the states as metrics and post the changes
//! to the configured webhook. A round that cannot observe (a store down) changes no state:
//! it is counted as an error and the next round tries again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailpipe_delivery_core::SigningSecret;
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::alerts::{conditions, Alert, AlertBook, LagSample, Observations, RateCounts, State};
use crate::error::ConsoleError;
use crate::lag::LagReader;
use crate::range::TimeRange;
use crate::store::{By, Store};

/// The alerts' shared state: the book, each group's lag history, the last round's time.
pub struct Watcher {
    settings: Arc<Settings>,
    store: Store,
    lag: LagReader,
    book: Mutex<AlertBook>,
    lag_history: Mutex<BTreeMap<String, VecDeque<LagSample>>>,
    evaluated_at: AtomicI64,
    /// The alert changes to post, in the order they happened: one task sends them one
    /// after another, so a "resolved" never overtakes its "firing".
    notify: Option<tokio::sync::mpsc::UnboundedSender<Vec<Alert>>>,
}

impl Watcher {
    pub fn new(settings: Arc<Settings>, store: Store, lag: LagReader) -> anyhow::Result<Self> {
        let notify = Notifier::new(&settings)?.map(|notifier| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Alert>>();
            tokio::spawn(async move {
                while let Some(changed) = rx.recv().await {
                    notifier.send(changed).await;
                }
            });
            tx
        });
        Ok(Watcher {
            settings,
            store,
            lag,
            book: Mutex::default(),
            lag_history: Mutex::default(),
            evaluated_at: AtomicI64::new(0),
            notify,
        })
    }

    /// Alerts firing and recently resolved, and when they were last evaluated (0: never).
    pub fn alerts(&self) -> (Vec<Alert>, i64) {
        let list = self.book.lock().expect("alert book lock").list();
        (list, self.evaluated_at.load(Ordering::Relaxed))
    }

    /// Rounds until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_secs(self.settings.console.alerts.interval_seconds);
        loop {
            let outcome = match self.round(unix_now()).await {
                Ok(()) => "ok",
                Err(error) => {
                    tracing::warn!(%error, "alert round could not observe; states unchanged");
                    "error"
                }
            };
            metrics::counter!(names::CONSOLE_ALERT_EVALUATIONS, "outcome" => outcome).increment(1);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One round at `now` (Unix seconds).
    pub async fn round(&self, now: i64) -> Result<(), ConsoleError> {
        let obs = self.observe(now).await?;
        let lags = self.lag.all().await?;
        let s = &self.settings.console.alerts;
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        // A group that never committed is a stage not deployed: its lag is not growing, it
        // is everything.
        for l in lags
            .iter()
            .filter(|l| l.partitions.iter().any(|p| p.committed.is_some()))
        {
            *totals.entry(l.group.clone()).or_default() += l.total_lag;
        }
        let holding = {
            let mut history = self.lag_history.lock().expect("lag history lock");
            let keep_from =
                now - i64::try_from(s.lag_for_seconds + 2 * s.interval_seconds).unwrap_or(i64::MAX);
            for (group, lag) in totals {
                let samples = history.entry(group).or_default();
                samples.push_back(LagSample { at: now, lag });
                // Keep one sample before the span, the anchor.
                while samples.len() > 1 && samples[1].at < keep_from {
                    samples.pop_front();
                }
            }
            conditions(&obs, &history, s, now)
        };
        let changed = self
            .book
            .lock()
            .expect("alert book lock")
            .update(holding, now);
        for a in &changed {
            let firing = if a.state == State::Firing { 1.0 } else { 0.0 };
            metrics::gauge!(names::CONSOLE_ALERT_FIRING, "alert" => a.name,
                "subject" => a.subject.clone())
            .set(firing);
            tracing::info!(alert = a.name, subject = %a.subject, state = ?a.state, summary = %a.summary, "alert changed");
        }
        if let (Some(notify), false) = (&self.notify, changed.is_empty()) {
            // The task ends only with the process.
            let _ = notify.send(changed);
        }
        self.evaluated_at.store(now, Ordering::Relaxed);
        Ok(())
    }

    async fn observe(&self, now: i64) -> Result<Observations, ConsoleError> {
        let s = &self.settings.console.alerts;
        let window = i64::try_from(s.window_seconds).unwrap_or(i64::MAX / 2);
        let latency = self.store.latency(now * 1000, s.window_seconds).await?;
        let mut volume: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
        for day in self.store.source_volume(now).await? {
            let entry = volume.entry(day.source).or_insert_with(|| (0, vec![0; 7]));
            match day.days_ago {
                0 => entry.0 = day.events,
                d @ 1..=7 => entry.1[usize::from(d) - 1] = day.events,
                _ => {}
            }
        }
        let counts = |rows: Vec<crate::store::KeyCount>| {
            rows.into_iter()
                .map(|r| (r.key, r.count))
                .collect::<BTreeMap<_, _>>()
        };
        let dead_letters = counts(self.store.dead_letters_by_stage(now - window, now).await?);
        let rejections = counts(self.store.rejections_by_source(now - window, now).await?);
        let hour = TimeRange {
            from: now - 3_600,
            to: now,
        };
        let mut rates = BTreeMap::new();
        let limit = self.store.limit(None);
        for by in [By::Provider, By::Campaign] {
            for row in self.store.breakdown(by, hour, limit).await? {
                if row.key.is_empty() {
                    continue;
                }
                let counts = RateCounts {
                    delivered: row.delivered,
                    bounced: row.bounced,
                    complained: row.complained,
                };
                rates.insert(format!("{}:{}", by.as_str(), row.key), counts);
            }
        }
        Ok(Observations {
            latency_p99_seconds: (latency.events > 0).then_some(latency.p99_seconds),
            volume,
            dead_letters_by_stage: dead_letters,
            rejections_by_source: rejections,
            rates,
        })
    }
}

/// Posts alert changes to `[console.alerts] webhook_url`, signed like outbound webhooks
/// (Standard Webhooks, `[delivery] secrets`), a few tries each.
#[derive(Clone)]
struct Notifier {
    url: String,
    secrets: Arc<Vec<SigningSecret>>,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct AlertMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    alert: &'a Alert,
}

impl Notifier {
    fn new(settings: &Settings) -> anyhow::Result<Option<Notifier>> {
        let url = &settings.console.alerts.webhook_url;
        if url.is_empty() {
            return Ok(None);
        }
        let secrets = settings
            .delivery
            .secrets
            .iter()
            .map(|s| SigningSecret::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("[delivery] secrets, to sign alert notifications: {e}"))?;
        if secrets.is_empty() {
            anyhow::bail!("[console.alerts] webhook_url is set but [delivery] secrets is empty: alert notifications would go unsigned");
        }
        let client = mailpipe_runtime::http::client("mailpipe-console", Duration::from_secs(10))?;
        Ok(Some(Notifier {
            url: url.clone(),
            secrets: Arc::new(secrets),
            client,
        }))
    }

    async fn send(&self, changed: Vec<Alert>) {
        for alert in &changed {
            let kind = match alert.state {
                State::Firing => "alert.firing",
                State::Resolved => "alert.resolved",
            };
            let body = match serde_json::to_vec(&AlertMessage { kind, alert }) {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(%error, "alert notification not encodable");
                    continue;
                }
            };
            let id = format!("alert_{}", uuid::Uuid::now_v7().simple());
            let mut outcome = "failed";
            for attempt in 0..3u32 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(2u64.pow(attempt))).await;
                }
                let Ok(headers) =
                    mailpipe_delivery_core::headers(&self.secrets, &id, unix_now(), &body)
                else {
                    break;
                };
                let mut request = self
                    .client
                    .post(&self.url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                for (name, value) in headers.pairs() {
                    request = request.header(name, value);
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        outcome = "sent";
                        break;
                    }
                    Ok(r) => tracing::warn!(
                        status = r.status().as_u16(),
                        alert = alert.name,
                        "alert notification refused"
                    ),
                    // Without the URL: it may carry a token.
                    Err(e) => {
                        tracing::warn!(error = %e.without_url(), alert = alert.name, "alert notification failed")
                    }
                }
            }
            metrics::counter!(names::CONSOLE_ALERT_NOTIFICATIONS, "outcome" => outcome)
                .increment(1);
        }
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
