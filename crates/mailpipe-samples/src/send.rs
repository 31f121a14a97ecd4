//! Posting a plan to a receiver the way an ESP would: bounded concurrency, an optional rate
//! cap, and retries with exponential backoff (honouring `Retry-After`) of every post that
//! got no answer, a 5xx, a 408 or a 429, within a bounded number of attempts and time. So
//! a receiver killed mid-request loses nothing: the request is posted again until it is
//! acknowledged (copies are the dedupe stage's job, as with a real ESP).

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailpipe_model::Provider;
use mailpipe_settings::Settings;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::SampleError;
use crate::keys::DevKeys;
use crate::plan::{plan, Plan, PlanOptions};
use crate::render::{render, WebhookRequest};
use crate::summary::{Outcome, Summary, Tally};

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Off,
    /// One line every few seconds (logs, CI).
    Lines,
    /// One line redrawn in place (a terminal).
    Redraw,
}

impl Progress {
    /// Redraw on a terminal, periodic lines otherwise.
    pub fn auto() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Redraw
        } else {
            Progress::Lines
        }
    }
}

/// When to retry and when to give up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per post, the first included.
    pub max_attempts: u32,
    /// No new attempt starts later than this after the first.
    pub retry_for: Duration,
    /// Bound on one attempt (connect, send, answer).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 12,
            retry_for: Duration::from_secs(120),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// What an answer means for an ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Accepted,
    Retry,
    Final,
}

pub fn disposition(status: u16) -> Disposition {
    match status {
        200..=299 => Disposition::Accepted,
        408 | 429 | 500..=599 => Disposition::Retry,
        _ => Disposition::Final,
    }
}

/// The wait before attempt `attempt + 1` (`attempt` ≥ 1): the server's `Retry-After`
/// (capped at a minute) when it gave one, else 250 ms doubling up to 10 s.
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(wait) => wait.min(Duration::from_secs(60)),
        None => Duration::from_millis(250u64 << attempt.saturating_sub(1).min(6))
            .min(Duration::from_secs(10)),
    }
}

/// Everything `mailpipe send-samples` takes.
#[derive(Debug, Clone)]
pub struct SendSamples {
    /// The receiver, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub count: usize,
    /// Requests per second, at most; 0 for as fast as `concurrency` allows.
    pub rate: f64,
    pub concurrency: usize,
    /// Sign every request before the first post (on every core), so posting costs only
    /// HTTP: for load tests, where signing (RSA above all) would otherwise make the sender
    /// the bottleneck. Timestamps are then as old as the rendering took.
    pub prerender: bool,
    pub providers: Vec<Provider>,
    pub duplicates: f64,
    pub seed: u64,
    pub bad: bool,
    pub sns_certificate_url: String,
    pub dev_keys_dir: PathBuf,
    pub summary_json: Option<PathBuf>,
    pub retry: RetryPolicy,
    pub progress: Progress,
}

impl SendSamples {
    /// The development keys of the chosen providers, as these options name them.
    pub fn dev_keys(&self, settings: &Settings) -> Result<DevKeys, SampleError> {
        DevKeys::load(
            settings,
            &self.dev_keys_dir,
            &self.providers,
            &self.sns_certificate_url,
        )
    }

    fn validate(&self) -> Result<reqwest::Url, SampleError> {
        let bad = |why: String| Err(SampleError::Option(why));
        if !(0.0..=1.0).contains(&self.duplicates) {
            return bad(format!(
                "--duplicates {} is not within 0..1",
                self.duplicates
            ));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return bad(format!("--rate {} is not a rate ≥ 0", self.rate));
        }
        if self.concurrency == 0 || self.retry.max_attempts == 0 {
            return bad("--concurrency and --max-attempts must be at least 1".into());
        }
        if self.providers.is_empty() {
            return bad("--providers names no provider".into());
        }
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| SampleError::Option(format!("--url {}: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return bad(format!("--url {} is not http(s)", self.url));
        }
        Ok(url)
    }
}

/// Plans, posts and counts; writes `summary_json` when asked. Stops dispatching when
/// `shutdown` is cancelled (posts in flight count as interrupted).
pub async fn run(
    settings: &Settings,
    options: &SendSamples,
    shutdown: CancellationToken,
) -> Result<Summary, SampleError> {
    let url = options.validate()?;
    let keys = options.dev_keys(settings)?;
    let plan = plan(&PlanOptions {
        seed: options.seed,
        count: options.count,
        providers: options.providers.clone(),
        duplicates: options.duplicates,
        bad: options.bad,
        now_ms: now_secs() * 1000,
    });
    let summary = send(&plan, &keys, &url, options, shutdown).await?;
    if let Some(path) = &options.summary_json {
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(path)?;
            serde_json::to_writer_pretty(&mut file, &summary)?;
            file.write_all(b"\n")
        };
        write().map_err(|e| SampleError::Write {
            path: path.clone(),
            problem: e.to_string(),
        })?;
    }
    Ok(summary)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Posts `plan` in schedule order. Each original is signed when it is dispatched (so a slow
/// `--rate` never sends stale timestamps), or all of them up front with `prerender`; its
/// duplicate reuses the same bytes.
pub async fn send(
    plan: &Plan,
    keys: &DevKeys,
    url: &reqwest::Url,
    options: &SendSamples,
    shutdown: CancellationToken,
) -> Result<Summary, SampleError> {
    let client = mailpipe_runtime::http::client(
        concat!("mailpipe-send-samples/", env!("CARGO_PKG_VERSION")),
        options.retry.attempt_timeout,
    )
    .map_err(|e| SampleError::Client(e.to_string()))?;
    let base = url.as_str().trim_end_matches('/').to_string();
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::new(
        options.seed,
        &base,
        options.bad,
        plan.batches.len(),
        plan.schedule.len(),
        plan.events(),
    )));
    let in_retry = Arc::new(AtomicUsize::new(0));
    let done = CancellationToken::new();
    let progress = tokio::spawn(show_progress(
        options.progress,
        tally.clone(),
        in_retry.clone(),
        done.clone(),
    ));
    let semaphore = Arc::new(Semaphore::new(options.concurrency));
    let interval = (options.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / options.rate));
    let mut next_at = tokio::time::Instant::now();
    // Rendering (RSA and ECDSA signing) runs on the blocking pool, in parallel; a duplicate
    // shares its original's rendering, so both posts carry the same bytes.
    let keys = Arc::new(keys.clone());
    let prerendered = if options.prerender {
        Some(prerender(plan, &keys).await?)
    } else {
        None
    };
    let mut shared: HashMap<usize, Rendering> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut failure = None;
    for slot in &plan.schedule {
        if let Some(interval) = interval {
            // On schedule, not on the timer's resolution: a sleep ends on the next
            // millisecond tick at the earliest, so sleeping before every request would cap
            // the rate near 1,000 requests/s. Requests that are due go out at once; the
            // schedule only restarts from now when it is a second behind (a slow
            // receiver), so a stall is not followed by a burst.
            let now = tokio::time::Instant::now();
            if next_at > now {
                tokio::select! {
                    _ = tokio::time::sleep_until(next_at) => {}
                    _ = shutdown.cancelled() => break,
                }
            } else if now - next_at > Duration::from_secs(1) {
                next_at = now;
            }
            next_at += interval;
        }
        let permit = tokio::select! {
            permit = semaphore.clone().acquire_owned() => permit.expect("never closed"),
            _ = shutdown.cancelled() => break,
        };
        let batch = &plan.batches[slot.batch];
        let rendering = match (&prerendered, batch.duplicate, slot.duplicate) {
            (Some(prerendered), _, _) => prerendered[slot.batch].clone(),
            (None, true, true) => match shared.remove(&slot.batch) {
                Some(rendering) => rendering,
                None => continue,
            },
            (None, true, false) => shared.entry(slot.batch).or_default().clone(),
            (None, false, _) => Rendering::default(),
        };
        let (batch, keys) = (batch.clone(), keys.clone());
        let (client, base) = (client.clone(), base.clone());
        let (tally, in_retry, shutdown) = (tally.clone(), in_retry.clone(), shutdown.clone());
        let (policy, duplicate) = (options.retry.clone(), slot.duplicate);
        tasks.spawn(async move {
            let request = rendering
                .get_or_try_init(|| async move {
                    tokio::task::spawn_blocking(move || render(&batch, &keys, now_secs()))
                        .await
                        .map_err(|e| SampleError::Render(e.to_string()))?
                        .map(Arc::new)
                })
                .await?
                .clone();
            let target = format!("{base}{}", request.path);
            let (outcome, attempts) =
                post(&client, &target, &request, &policy, &in_retry, &shutdown).await;
            lock(&tally).record(&request, duplicate, attempts, &outcome);
            drop(permit);
            Ok::<(), SampleError>(())
        });
        while let Some(joined) = tasks.try_join_next() {
            if let Ok(Err(e)) = joined {
                failure.get_or_insert(e);
            }
        }
        if failure.is_some() {
            break;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(e)) = joined {
            failure.get_or_insert(e);
        }
    }
    done.cancel();
    let _ = progress.await;
    if let Some(e) = failure {
        return Err(e);
    }
    let tally = Arc::try_unwrap(tally)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|shared| lock(&shared).clone());
    Ok(tally.finish(started.elapsed().as_millis() as u64))
}

/// A request rendered once, by whichever of its posts gets there first.
type Rendering = Arc<tokio::sync::OnceCell<Arc<WebhookRequest>>>;

/// Renders (signs) every batch of `plan`, in order, on as many blocking threads as there
/// are cores.
async fn prerender(plan: &Plan, keys: &Arc<DevKeys>) -> Result<Vec<Rendering>, SampleError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = plan.batches.len().div_ceil(threads).max(1);
    let now = now_secs();
    let mut parts = Vec::new();
    for chunk in plan.batches.chunks(per_thread) {
        let (chunk, keys) = (chunk.to_vec(), keys.clone());
        parts.push(tokio::task::spawn_blocking(move || {
            chunk
                .iter()
                .map(|batch| render(batch, &keys, now))
                .collect::<Result<Vec<_>, _>>()
        }));
    }
    let mut out = Vec::with_capacity(plan.batches.len());
    for part in parts {
        let rendered = part
            .await
            .map_err(|e| SampleError::Render(e.to_string()))??;
        out.extend(
            rendered
                .into_iter()
                .map(|request| Arc::new(tokio::sync::OnceCell::new_with(Some(Arc::new(request))))),
        );
    }
    Ok(out)
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    // A panic while recording leaves counts that are still the best we have.
    tally
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One post with its retries: the outcome and the number of attempts made.
async fn post(
    client: &reqwest::Client,
    url: &str,
    request: &WebhookRequest,
    policy: &RetryPolicy,
    in_retry: &AtomicUsize,
    shutdown: &CancellationToken,
) -> (Outcome, u32) {
    let first = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let answer = tokio::select! {
            answer = attempt_once(client, url, request) => answer,
            _ = shutdown.cancelled() => return (Outcome::Interrupted, attempt),
        };
        let (retry_after, last) = match answer {
            Ok((status, retry_after)) => match disposition(status) {
                Disposition::Accepted => return (Outcome::Accepted { status }, attempt),
                Disposition::Final => return (Outcome::Rejected { status }, attempt),
                Disposition::Retry => (retry_after, format!("HTTP {status}")),
            },
            Err(problem) => (None, problem),
        };
        let wait = backoff(attempt, retry_after);
        if attempt >= policy.max_attempts || first.elapsed() + wait > policy.retry_for {
            return (Outcome::GaveUp { last }, attempt);
        }
        in_retry.fetch_add(1, Ordering::Relaxed);
        let interrupted = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = shutdown.cancelled() => true,
        };
        in_retry.fetch_sub(1, Ordering::Relaxed);
        if interrupted {
            return (Outcome::Interrupted, attempt);
        }
    }
}

/// One attempt: the status and `Retry-After`, or why there was no answer.
async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    request: &WebhookRequest,
) -> Result<(u16, Option<Duration>), String> {
    let mut builder = client.post(url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder.send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Read the answer so the connection can be reused; its content does not matter.
    let _ = response.bytes().await;
    Ok((status, retry_after))
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused or failed".into()
    } else {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        text
    }
}

async fn show_progress(
    mode: Progress,
    tally: Arc<Mutex<Tally>>,
    in_retry: Arc<AtomicUsize>,
    done: CancellationToken,
) {
    let every = match mode {
        Progress::Off => return,
        Progress::Lines => Duration::from_secs(5),
        Progress::Redraw => Duration::from_millis(200),
    };
    let line = || {
        lock(&tally)
            .summary()
            .progress_line(in_retry.load(Ordering::Relaxed))
    };
    loop {
        let finished = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = done.cancelled() => true,
        };
        let mut stderr = std::io::stderr().lock();
        let _ = match mode {
            Progress::Redraw => write!(stderr, "\r\x1b[2K{}", line()),
            _ => writeln!(stderr, "{}", line()),
        };
        if finished {
            if mode == Progress::Redraw {
                let _ = writeln!(stderr);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_esp_retries() {
        assert_eq!(disposition(200), Disposition::Accepted);
        assert_eq!(disposition(204), Disposition::Accepted);
        for status in [408, 429, 500, 503] {
            assert_eq!(disposition(status), Disposition::Retry, "{status}");
        }
        for status in [400, 403, 404, 405, 413, 415, 431] {
            assert_eq!(disposition(status), Disposition::Final, "{status}");
        }
    }

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        assert_eq!(backoff(1, None), Duration::from_millis(250));
        assert_eq!(backoff(2, None), Duration::from_millis(500));
        assert_eq!(backoff(7, None), Duration::from_secs(10));
        assert_eq!(backoff(30, None), Duration::from_secs(10));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }
}
