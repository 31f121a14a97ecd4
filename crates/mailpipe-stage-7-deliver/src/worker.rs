//! The delivery loop: claims due deliveries from the store and runs each in a task of its
//! own, so one slow target never holds another's; per target, at most
//! `target_concurrency` attempts at once, `target_rate_per_second` attempts per second,
//! and a circuit breaker. Every attempt's result is stored before anything else happens:
//! the next due time (retry), or the end (outcome record and, for a failure, dead letter,
//! through the outbox).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailpipe_delivery_core::{
    classify, Admission, BreakerConfig, BreakerState, CircuitBreaker, RetrySchedule, TokenBucket,
    Verdict,
};
use mailpipe_settings::DeliverySettings;
use mailpipe_telemetry::names;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::http::Sender;
use crate::job::{webhook_id, Job, LastAttempt};
use crate::outcome::{attempt_outbox_key, AttemptRecord, Ended, OutboxEntry, Outcome};
use crate::store::{Store, StoreError, Stored};

/// A deferred attempt of a disabled target is looked at again after this (so enabling a
/// target sends what waited for it within seconds).
const DISABLED_RECHECK_MS: i64 = 5_000;
/// Deliveries in flight at once, over every target.
const MAX_IN_FLIGHT: usize = 512;
/// Targets with a metric label of their own; the others (URLs templated per event could
/// name unboundedly many) share the label `other`.
const MAX_TARGET_LABELS: usize = 200;

struct TargetState {
    slots: Semaphore,
    control: Mutex<(CircuitBreaker, TokenBucket)>,
    /// Its own schedule (`[delivery.targets."…"] schedule`), else `[delivery] schedule`.
    schedule: Option<RetrySchedule>,
}

/// A target's limits: its own where `[delivery.targets."…"]` sets them.
fn limits(settings: &DeliverySettings, target: &str) -> (usize, f64) {
    let own = settings.targets.get(target);
    (
        own.and_then(|t| t.target_concurrency)
            .unwrap_or(settings.target_concurrency),
        own.and_then(|t| t.target_rate_per_second)
            .unwrap_or(settings.target_rate_per_second),
    )
}

/// Shared by the loop and the attempt tasks.
pub struct Worker {
    store: Store,
    sender: Sender,
    schedule: RetrySchedule,
    settings: DeliverySettings,
    breaker: BreakerConfig,
    targets: Mutex<HashMap<String, Arc<TargetState>>>,
    disabled: Mutex<BTreeMap<String, String>>,
    in_flight: Arc<Semaphore>,
    /// Deliveries this process is attempting: a claim that returns one of them again (its
    /// lease ran out while its result was being stored) does not start a second attempt.
    attempting: Mutex<HashSet<String>>,
    labels: Mutex<HashSet<String>>,
    /// Woken by the intake when it schedules a delivery, so a new delivery is claimed at
    /// once rather than at the next poll.
    pub scheduled: Arc<tokio::sync::Notify>,
}

impl Worker {
    pub fn new(settings: &DeliverySettings, store: Store) -> anyhow::Result<Worker> {
        let schedule = RetrySchedule::parse(&settings.schedule, settings.jitter)
            .map_err(|e| anyhow::anyhow!("[delivery] schedule: {e}"))?;
        let breaker = BreakerConfig {
            failure_threshold: settings.breaker_failures,
            cooldown: Duration::from_millis(settings.breaker_cooldown_ms),
            max_cooldown: Duration::from_millis(settings.breaker_max_cooldown_ms),
            probe_timeout: Duration::from_millis(settings.lease_ms),
        };
        CircuitBreaker::new(breaker).map_err(|e| anyhow::anyhow!("[delivery] breaker: {e}"))?;
        TokenBucket::new(settings.target_rate_per_second, 1, 0)
            .map_err(|e| anyhow::anyhow!("[delivery] target_rate_per_second: {e}"))?;
        for (target, own) in &settings.targets {
            if let Some(schedule) = &own.schedule {
                RetrySchedule::parse(schedule, settings.jitter).map_err(|e| {
                    anyhow::anyhow!("[delivery.targets.\"{target}\"] schedule: {e}")
                })?;
            }
            let (concurrency, rate) = limits(settings, target);
            TokenBucket::new(rate, 1, 0).map_err(|e| {
                anyhow::anyhow!("[delivery.targets.\"{target}\"] target_rate_per_second: {e}")
            })?;
            anyhow::ensure!(
                concurrency >= 1,
                "[delivery.targets.\"{target}\"] target_concurrency must be at least 1"
            );
        }
        Ok(Worker {
            sender: Sender::new(settings)?,
            store,
            schedule,
            settings: settings.clone(),
            breaker,
            targets: Mutex::new(HashMap::new()),
            disabled: Mutex::new(BTreeMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            attempting: Mutex::new(HashSet::new()),
            labels: Mutex::new(HashSet::new()),
            scheduled: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The metric label of a target: its own for the first [`MAX_TARGET_LABELS`] seen.
    fn label(&self, target: &str) -> String {
        let mut labels = self.labels.lock().expect("labels lock");
        if labels.contains(target) {
            return target.to_string();
        }
        if labels.len() < MAX_TARGET_LABELS {
            labels.insert(target.to_string());
            return target.to_string();
        }
        "other".to_string()
    }

    fn target(&self, target: &str, now_ms: i64) -> Arc<TargetState> {
        let mut targets = self.targets.lock().expect("targets lock");
        targets
            .entry(target.to_string())
            .or_insert_with(|| {
                let (concurrency, rate) = limits(&self.settings, target);
                let burst = rate.ceil().max(1.0) as u32;
                let schedule = self
                    .settings
                    .targets
                    .get(target)
                    .and_then(|t| t.schedule.as_ref())
                    .and_then(|s| RetrySchedule::parse(s, self.settings.jitter).ok());
                Arc::new(TargetState {
                    slots: Semaphore::new(concurrency),
                    control: Mutex::new((
                        CircuitBreaker::new(self.breaker).expect("checked in new"),
                        TokenBucket::new(rate, burst, now_ms).expect("checked in new"),
                    )),
                    schedule,
                })
            })
            .clone()
    }

    /// Claims and starts due deliveries until `shutdown`; then waits for the attempts
    /// under way (each stores its result).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut failures = 0;
        let mut last_disabled_refresh = i64::MIN;
        loop {
            let now = now_ms();
            if now.saturating_sub(last_disabled_refresh) >= 1_000 {
                match self.store.disabled().await {
                    Ok(d) => *self.disabled.lock().expect("disabled lock") = d,
                    Err(e) => store_error("reading disabled targets", &e),
                }
                last_disabled_refresh = now;
            }
            let free = self.in_flight.available_permits().min(200);
            let claimed = if free == 0 {
                Ok(Vec::new())
            } else {
                let lease_until = now + i64::try_from(self.settings.lease_ms).unwrap_or(60_000);
                self.store.claim(now, lease_until, free).await
            };
            let pause = match claimed {
                Ok(jobs) => {
                    failures = 0;
                    let full = !jobs.is_empty() && jobs.len() == free;
                    for job in jobs {
                        let id = job.id().to_string();
                        if !self
                            .attempting
                            .lock()
                            .expect("attempting lock")
                            .insert(id.clone())
                        {
                            continue;
                        }
                        let permit = self
                            .in_flight
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("never closed");
                        let worker = self.clone();
                        tokio::spawn(async move {
                            worker.deliver(job).await;
                            worker
                                .attempting
                                .lock()
                                .expect("attempting lock")
                                .remove(&id);
                            drop(permit);
                        });
                    }
                    if full {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(100)
                    }
                }
                Err(e) => {
                    store_error("claiming due deliveries", &e);
                    failures += 1;
                    mailpipe_runtime::backoff(failures)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
                () = self.scheduled.notified(), if failures == 0 => {}
            }
        }
        // Attempts under way finish and store their results (bounded by the timeout).
        let _ = self.in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
        Ok(())
    }

    /// One claimed delivery: deferred (target disabled, breaker open, rate limit) or
    /// attempted, and the result stored.
    async fn deliver(&self, mut job: Job) {
        let now = now_ms();
        let (request, target) = match (job.request(), job.target()) {
            (Ok(r), Some(t)) => (r, t),
            (Err(e), _) => {
                return self
                    .end(job, Outcome::Failed, format!("failed: {e}"), None)
                    .await
            }
            (Ok(_), None) => {
                let detail = "failed: the url has no host".to_string();
                return self.end(job, Outcome::Failed, detail, None).await;
            }
        };
        if self
            .disabled
            .lock()
            .expect("disabled lock")
            .contains_key(&target)
        {
            return self
                .defer(&job, &target, "target_disabled", now + DISABLED_RECHECK_MS)
                .await;
        }
        let state = self.target(&target, now);
        // Not waited for: a claimed delivery holds a lease, and waiting here behind a slow
        // target could outlast it.
        let Ok(_slot) = state.slots.try_acquire() else {
            return self.defer(&job, &target, "target_busy", now + 250).await;
        };
        let now = now_ms();
        let admitted = {
            let mut control = state.control.lock().expect("control lock");
            let (breaker, bucket) = &mut *control;
            match bucket.try_take(now) {
                Err(wait_ms) => Err((
                    "rate_limited",
                    now + i64::try_from(wait_ms).unwrap_or(1_000),
                )),
                Ok(()) => match breaker.admit(now) {
                    Admission::Allowed(ticket) => Ok(ticket),
                    Admission::Refused { until_ms } => Err(("breaker_open", until_ms)),
                },
            }
        };
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err((why, until)) => return self.defer(&job, &target, why, until).await,
        };
        let attempted = self
            .sender
            .attempt(&request, &webhook_id(job.id()), now / 1000)
            .await;
        let verdict = classify(attempted.result);
        let done = now_ms();
        {
            let mut control = state.control.lock().expect("control lock");
            let breaker = &mut control.0;
            if verdict.trips_breaker() {
                breaker.record_failure(ticket, done);
            } else {
                breaker.record_success(ticket, done);
            }
            let state_value = match breaker.state() {
                BreakerState::Closed { .. } => 0.0,
                BreakerState::HalfOpen { .. } => 1.0,
                BreakerState::Open { .. } => 2.0,
            };
            metrics::gauge!(names::DELIVERY_BREAKER_STATE, "target" => self.label(&target))
                .set(state_value);
        }
        metrics::counter!(names::DELIVERY_ATTEMPTS, "target" => self.label(&target),
            "verdict" => verdict.as_str(), "reason" => verdict.reason())
        .increment(1);
        metrics::histogram!(names::DELIVERY_ATTEMPT_SECONDS, "target" => self.label(&target))
            .record(attempted.latency.as_secs_f64());
        job.attempts += 1;
        job.last = Some(LastAttempt {
            at_ms: now,
            status: attempted.status,
            error: attempted.error.clone(),
            latency_ms: u64::try_from(attempted.latency.as_millis()).unwrap_or(u64::MAX),
        });
        let summary = |what: &str| {
            let status = attempted
                .status
                .map_or_else(|| verdict.reason().to_string(), |s| format!("HTTP {s}"));
            format!(
                "{what}: {status} in {} ms, attempt {}{}",
                attempted.latency.as_millis(),
                job.attempts,
                if attempted.error.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", attempted.error)
                }
            )
        };
        let record = |next_attempt_at: i64| AttemptRecord {
            action_id: job.id().to_string(),
            webhook_id: webhook_id(job.id()),
            rule_id: job.action.rule_id.clone(),
            event_id: job.action.event_id.clone(),
            target: target.clone(),
            attempt: i32::try_from(job.attempts).unwrap_or(i32::MAX),
            at: now,
            status: attempted.status.map(i32::from),
            latency_ms: i64::try_from(attempted.latency.as_millis()).unwrap_or(i64::MAX),
            verdict: verdict.as_str().to_string(),
            reason: verdict.reason().to_string(),
            error: attempted.error.clone(),
            next_attempt_at,
        };
        let ended_attempt = record(0);
        match verdict {
            Verdict::Delivered => {
                let detail = summary("delivered");
                self.end(job, Outcome::Delivered, detail, Some(ended_attempt))
                    .await;
            }
            Verdict::Retry { retry_after, .. } => {
                let random = random_unit();
                let schedule = state.schedule.as_ref().unwrap_or(&self.schedule);
                match schedule.next_with_retry_after(job.attempts, random, retry_after) {
                    Some(wait) => {
                        let due = done + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                        let attempt = record(due);
                        let key = attempt_outbox_key(&attempt);
                        let entry = outbox_json(&OutboxEntry::Attempt(attempt));
                        let stored = self
                            .store_until_ok("rescheduling", || {
                                self.store.reschedule(
                                    &job,
                                    due,
                                    Some((key.as_str(), entry.as_str())),
                                )
                            })
                            .await;
                        lease_lost(stored, &job);
                    }
                    None => {
                        let detail = summary("failed after the last retry");
                        self.end(job, Outcome::Failed, detail, Some(ended_attempt))
                            .await;
                    }
                }
            }
            Verdict::Fail { .. } => {
                let detail = summary("failed");
                self.end(job, Outcome::Failed, detail, Some(ended_attempt))
                    .await;
            }
            Verdict::DisableTarget => {
                let why = format!("410 Gone at {done} for {}", job.id());
                self.store_until_ok("disabling a target", || self.store.disable(&target, &why))
                    .await;
                tracing::warn!(%target, "target answered 410 Gone: disabled until an operator enables it");
                let detail = summary("failed, target disabled");
                self.end(job, Outcome::Failed, detail, Some(ended_attempt))
                    .await;
            }
        }
    }

    async fn defer(&self, job: &Job, target: &str, why: &'static str, until_ms: i64) {
        metrics::counter!(names::DELIVERY_DEFERRED, "target" => self.label(target), "why" => why)
            .increment(1);
        let stored = self
            .store_until_ok("deferring", || self.store.reschedule(job, until_ms, None))
            .await;
        lease_lost(stored, job);
    }

    /// Ends a delivery, with the record of its last attempt when there was one.
    async fn end(
        &self,
        job: Job,
        outcome: Outcome,
        detail: String,
        attempt: Option<AttemptRecord>,
    ) {
        let ended = Ended::new(&job, outcome, detail, now_ms());
        let target = job.target().unwrap_or_default();
        let outcome_label = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
        };
        metrics::counter!(names::DELIVERY_OUTCOMES, "target" => self.label(&target), "outcome" => outcome_label)
            .increment(1);
        let json = outbox_json(&OutboxEntry::Ended(ended));
        let attempt = attempt.map(|a| {
            (
                attempt_outbox_key(&a),
                outbox_json(&OutboxEntry::Attempt(a)),
            )
        });
        let failed = outcome == Outcome::Failed;
        let stored = self
            .store_until_ok("ending a delivery", || {
                let attempt = attempt.as_ref().map(|(k, e)| (k.as_str(), e.as_str()));
                self.store.finish(&job, &json, failed, attempt)
            })
            .await;
        lease_lost(stored, &job);
    }

    /// Runs a store call until it succeeds: an attempt's result is never dropped (while
    /// Redis is away the delivery keeps its lease, and is claimed again after it).
    async fn store_until_ok<F, Fut, T>(&self, what: &'static str, mut call: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut failures = 0;
        loop {
            match call().await {
                Ok(v) => return v,
                Err(e) => {
                    store_error(what, &e);
                    failures += 1;
                    tokio::time::sleep(mailpipe_runtime::backoff(failures)).await;
                }
            }
        }
    }
}

/// Logs a result discarded because the attempt outlasted its lease and another claim took
/// the delivery over (its attempt decides).
fn lease_lost(stored: Stored, job: &Job) {
    if stored == Stored::LeaseLost {
        metrics::counter!(names::DELIVERY_STORE_ERRORS).increment(1);
        tracing::warn!(action_id = %job.id(),
            "an attempt outlasted its lease and the delivery was claimed again: its result is discarded");
    }
}

/// An outbox entry as stored (plain data: serializing it cannot fail).
fn outbox_json(entry: &OutboxEntry) -> String {
    serde_json::to_string(entry).expect("outbox entries are plain data")
}

fn store_error(what: &str, e: &StoreError) {
    metrics::counter!(names::DELIVERY_STORE_ERRORS).increment(1);
    tracing::warn!(error = %e, "delivery store: {what} failed; retrying");
}

pub fn now_ms() -> i64 {
    mailpipe_stage::now_ms()
}

/// A number in [0, 1) from the OS, for jitter.
fn random_unit() -> f64 {
    use rand_core::RngCore as _;
    let bits = rand_core::OsRng.next_u64() >> 11;
    bits as f64 / (1u64 << 53) as f64
}
