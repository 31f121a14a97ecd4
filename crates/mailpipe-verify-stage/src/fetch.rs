//! The stage's only outbound HTTP: GETs of SNS signing certificates and SubscribeURLs, whose
//! URLs the library already vetted (https, allowed host). Bounded in time and size, no
//! redirects (a redirect could leave the allowed hosts), no proxy from the environment.
//!
//! Errors are split in two: transient ones (network, timeout, 5xx, 408, 429) are retried
//! with backoff for as long as it takes, so an SNS outage delays requests instead of
//! rejecting them; permanent ones (any other status, an oversized answer) are reported to
//! the caller, since retrying them would stall the partition forever on a request whose
//! URL simply does not exist.

use std::time::Duration;

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

/// Why a GET failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// May succeed later: retry.
    Transient(String),
    /// Will not succeed: the answer says so.
    Permanent(String),
}

/// Whether an HTTP status other than 2xx is worth retrying.
pub fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Backoff between fetch retries: doubles from 200 ms up to 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((200u64 << attempt.min(8)).min(30_000))
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
    pub fn new(timeout: Duration, max_bytes: usize) -> anyhow::Result<Fetcher> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("mailpipe-verify/", env!("CARGO_PKG_VERSION")))
            .build()?;
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

    /// GETs `url`, retrying transient failures with backoff until it succeeds or fails
    /// permanently (the permanent reason is returned).
    pub async fn get_retrying(&self, url: &str, purpose: Purpose) -> Result<Vec<u8>, String> {
        let mut attempt = 0u32;
        loop {
            match self.get(url).await {
                Ok(body) => {
                    count(purpose, "ok");
                    return Ok(body);
                }
                Err(FetchError::Permanent(why)) => {
                    count(purpose, "failed");
                    tracing::warn!(purpose = purpose.as_str(), url = without_query(url), why = %why,
                        "fetch failed permanently");
                    return Err(why);
                }
                Err(FetchError::Transient(why)) => {
                    count(purpose, "retry");
                    let wait = backoff(attempt);
                    tracing::warn!(purpose = purpose.as_str(), url = without_query(url), why = %why,
                        attempt, ?wait,
                        "fetch failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
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
