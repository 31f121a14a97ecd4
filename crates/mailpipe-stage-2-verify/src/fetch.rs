//! The stage's only outbound HTTP: GETs of SNS signing certificates and SubscribeURLs, whose
//! URLs the library already vetted (https, allowed host). Bounded in time and size, no
//! redirects (a redirect could leave the allowed hosts), no proxy from the environment.
//!
//! Errors are split in two: transient ones (network, DNS, timeout, 5xx, 408, 429) are
//! retried with backoff, but only within a time budget per URL (`[verify]
//! certificate_fetch_budget_ms`): a URL on an allowed-looking host that never answers (a
//! forged message can name one) must not stall the stage; permanent ones (any other status,
//! an oversized answer) are reported at once. [`RecentFailures`] remembers the URLs that
//! failed, so they are not fetched again for a while.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mailpipe_telemetry::names;

/// What one GET is for; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Certificate,
    SubscriptionConfirmation,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Certificate => "certificate",
            Purpose::SubscriptionConfirmation => "subscription_confirmation",
        }
    }
}

/// Why a GET failed, by what to do next: retry within the budget, or give up at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// May succeed later: retry.
    #[error("{0} (transient)")]
    Transient(String),
    /// Will not succeed: the answer says so.
    #[error("{0}")]
    Permanent(String),
    /// The client could not be built (a TLS or configuration problem): the stage cannot
    /// fetch at all and does not start.
    #[error("building the HTTP client: {0}")]
    Fatal(String),
}

/// Whether an HTTP status other than 2xx is worth retrying.
pub fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Backoff between fetch retries: doubles from 200 ms up to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((200u64 << attempt.min(8)).min(30_000))
}

/// Why a fetch within a budget gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchFailure {
    /// The answer says it will never succeed.
    #[error("{0}")]
    Permanent(String),
    /// Only transient failures, for the whole budget (the last one is described).
    #[error("out of time: {0}")]
    OutOfTime(String),
}

/// An HTTP client for vetted URLs.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_bytes: usize,
}

impl Fetcher {
    /// `timeout` bounds each whole GET (connect, headers and body); answers longer than
    /// `max_bytes` are refused.
    pub fn new(timeout: Duration, max_bytes: usize) -> Result<Fetcher, FetchError> {
        let user_agent = concat!("mailpipe-verify/", env!("CARGO_PKG_VERSION"));
        let client = mailpipe_runtime::http::client(user_agent, timeout)
            .map_err(|e| FetchError::Fatal(describe(&e)))?;
        Ok(Fetcher { client, max_bytes })
    }

    /// One GET of `url`: the body of a 2xx answer, at most `max_bytes`.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let transient = |e: reqwest::Error| FetchError::Transient(describe(&e));
        let mut response = self.client.get(url).send().await.map_err(transient)?;
        let status = response.status();
        if !status.is_success() {
            let why = format!("answered HTTP {}", status.as_u16());
            return Err(if is_transient_status(status.as_u16()) {
                FetchError::Transient(why)
            } else {
                FetchError::Permanent(why)
            });
        }
        let too_large = || FetchError::Permanent(format!("answer over {} bytes", self.max_bytes));
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transient)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// GETs `url`, retrying transient failures with backoff until it succeeds, fails
    /// permanently, or `budget` is spent (each attempt is cut at the budget's end too).
    pub async fn get_within(
        &self,
        url: &str,
        purpose: Purpose,
        budget: Duration,
    ) -> Result<Vec<u8>, FetchFailure> {
        let deadline = Instant::now() + budget;
        let mut attempt = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = tokio::time::timeout(left, self.get(url))
                .await
                .unwrap_or_else(|_| Err(FetchError::Transient("timed out".into())));
            match result {
                Ok(body) => {
                    count(purpose, "ok");
                    return Ok(body);
                }
                Err(FetchError::Permanent(why) | FetchError::Fatal(why)) => {
                    count(purpose, "failed");
                    tracing::warn!(purpose = purpose.as_str(), url = without_query(url), why = %why,
                        "fetch failed permanently");
                    return Err(FetchFailure::Permanent(why));
                }
                Err(FetchError::Transient(why)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        count(purpose, "out_of_time");
                        tracing::warn!(purpose = purpose.as_str(), url = without_query(url), why = %why,
                            attempts = attempt + 1, ?budget, "fetch gave up: budget spent");
                        return Err(FetchFailure::OutOfTime(why));
                    }
                    count(purpose, "retry");
                    let wait = backoff(attempt).min(left);
                    tracing::warn!(purpose = purpose.as_str(), url = without_query(url), why = %why,
                        attempt, ?wait, "fetch failed; retrying within the budget");
                    tokio::time::sleep(wait).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

/// URLs whose fetch failed recently, with the rejection each one earned: such a URL is not
/// fetched again until `ttl` has passed, so a burst of messages naming it costs one budget,
/// not one each. Bounded: past `capacity`, the soonest-expiring entries go first.
#[derive(Debug)]
pub struct RecentFailures<T> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<String, (Instant, T)>,
}

impl<T: Clone> RecentFailures<T> {
    pub fn new(ttl: Duration, capacity: usize) -> RecentFailures<T> {
        RecentFailures {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// What `url` failed with, if that was less than `ttl` before `now`.
    pub fn get(&self, url: &str, now: Instant) -> Option<T> {
        let (until, what) = self.entries.get(url)?;
        (now < *until).then(|| what.clone())
    }

    pub fn insert(&mut self, url: &str, what: T, now: Instant) {
        self.entries.retain(|_, (until, _)| now < *until);
        while self.entries.len() >= self.capacity {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(url, _)| url.clone());
            match soonest {
                Some(url) => self.entries.remove(&url),
                None => break,
            };
        }
        self.entries.insert(url.to_string(), (now + self.ttl, what));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn count(purpose: Purpose, outcome: &'static str) {
    metrics::counter!(names::VERIFY_FETCHES, "purpose" => purpose.as_str(), "outcome" => outcome)
        .increment(1);
}

/// `url` without its query: a SubscribeURL's query carries the subscription token.
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// A short description of a client error: its kind and source chain, never a URL query
/// (a SubscribeURL carries the subscription token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_worth_retrying() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(is_transient_status(status), "{status}");
        }
        for status in [301, 302, 400, 401, 403, 404, 410] {
            assert!(!is_transient_status(status), "{status}");
        }
    }

    #[test]
    fn logged_urls_lose_their_query() {
        assert_eq!(
            without_query(
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t"
            ),
            "https://sns.us-east-1.amazonaws.com/"
        );
        assert_eq!(
            without_query("http://127.0.0.1:1/c.pem#x"),
            "http://127.0.0.1:1/c.pem"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(7), Duration::from_millis(25_600));
        assert_eq!(backoff(8), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn failures_are_remembered_for_their_ttl_and_bounded() {
        let t0 = Instant::now();
        let mut failures = RecentFailures::new(Duration::from_secs(60), 2);
        failures.insert("https://a/c.pem", "why a", t0);
        assert_eq!(failures.get("https://a/c.pem", t0), Some("why a"));
        assert_eq!(
            failures.get("https://a/c.pem", t0 + Duration::from_secs(59)),
            Some("why a")
        );
        assert_eq!(
            failures.get("https://a/c.pem", t0 + Duration::from_secs(60)),
            None
        );
        assert_eq!(failures.get("https://b/c.pem", t0), None);
        failures.insert("https://b/c.pem", "why b", t0 + Duration::from_secs(1));
        failures.insert("https://c/c.pem", "why c", t0 + Duration::from_secs(2));
        assert_eq!(failures.len(), 2, "bounded");
        assert_eq!(
            failures.get("https://a/c.pem", t0),
            None,
            "soonest expiry went first"
        );
        assert_eq!(
            failures.get("https://c/c.pem", t0 + Duration::from_secs(2)),
            Some("why c")
        );
        failures.insert("https://d/c.pem", "why d", t0 + Duration::from_secs(500));
        assert_eq!(failures.len(), 1, "expired entries dropped");
        assert!(!failures.is_empty());
    }

    /// Nothing listens on the port: every attempt fails at once (transient), and the fetch
    /// gives up once the budget is spent instead of retrying forever.
    #[tokio::test]
    async fn transient_failures_give_up_when_the_budget_is_spent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let fetcher = Fetcher::new(Duration::from_secs(2), 16).unwrap();
        let started = Instant::now();
        let err = fetcher
            .get_within(
                &format!("http://127.0.0.1:{port}/c.pem"),
                Purpose::Certificate,
                Duration::from_millis(1500),
            )
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, FetchFailure::OutOfTime(_)), "{err:?}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn unreachable_is_transient_and_status_decides_otherwise() {
        // A port nothing listens on: bind, note the port, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let fetcher = Fetcher::new(Duration::from_secs(2), 16).unwrap();
        let err = fetcher
            .get(&format!("http://127.0.0.1:{port}/c.pem"))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Transient(_)), "{err:?}");
    }
}
