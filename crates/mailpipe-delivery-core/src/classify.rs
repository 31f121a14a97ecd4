//! What one attempt's result means for the delivery: [`Verdict`]s from HTTP statuses and
//! transport failures, following the Standard Webhooks spec's status handling and the
//! issue's rules.
//!
//! | result | verdict | why |
//! |---|---|---|
//! | 2xx | delivered | the spec's definition of success |
//! | 408, 425, 429, 5xx | retry | the target is slow, busy or broken, not refusing this request |
//! | timeout, connection refused or cut, DNS, TLS | retry | the target may be back in an hour |
//! | 410 Gone | disable target | the target says it wants no more webhooks |
//! | other 4xx | fail | the same request would be refused again |
//! | 3xx | fail | redirects are not followed: the operator updates the URL |
//! | refused by the SSRF guard | fail | the address is forbidden; retrying cannot change that |
//! | request body too large | fail | the same body is too large next time |
//!
//! Every enum is closed and has `as_str()`: the values are metric labels and outcome
//! fields, so the set must be known and small.

use std::time::Duration;

/// The result of one attempt, as the worker observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The target answered. `retry_after` is its `Retry-After` header, already parsed and
    /// clamped ([`crate::parse_retry_after`]); it is used only with 429 and 503.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No usable answer.
    Transport(TransportFailure),
}

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportFailure {
    /// The connect or total timeout passed.
    Timeout,
    /// The target's host refused the connection (nothing listening).
    ConnectRefused,
    /// The connection failed otherwise, or was reset or closed before an answer.
    Connection,
    /// The name did not resolve.
    Dns,
    /// The TLS handshake failed (bad or expired certificate, protocol mismatch).
    Tls,
    /// The request body is over the size limit, so it was never sent. (A response over the
    /// size cap is not a transport failure: its status is classified, its body truncated.)
    BodyTooLarge,
    /// The SSRF guard refused the address the target resolved to.
    SsrfRefused,
    /// The request cannot be made at all (no or a non-http(s) URL, an invalid method, no
    /// signing secret configured): nothing was sent.
    InvalidRequest,
}

impl TransportFailure {
    pub const ALL: [TransportFailure; 8] = [
        TransportFailure::Timeout,
        TransportFailure::ConnectRefused,
        TransportFailure::Connection,
        TransportFailure::Dns,
        TransportFailure::Tls,
        TransportFailure::BodyTooLarge,
        TransportFailure::SsrfRefused,
        TransportFailure::InvalidRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransportFailure::Timeout => "timeout",
            TransportFailure::ConnectRefused => "connect_refused",
            TransportFailure::Connection => "connection",
            TransportFailure::Dns => "dns",
            TransportFailure::Tls => "tls",
            TransportFailure::BodyTooLarge => "body_too_large",
            TransportFailure::SsrfRefused => "ssrf_refused",
            TransportFailure::InvalidRequest => "invalid_request",
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again per the schedule; `retry_after` is the target's `Retry-After` (429, 503),
    /// which [`crate::RetrySchedule::next_with_retry_after`] honours.
    Retry {
        reason: RetryReason,
        retry_after: Option<Duration>,
    },
    /// Give up on this delivery now: a final `failed` outcome and a dead letter.
    Fail {
        reason: FailReason,
    },
    /// 410 Gone: give up on this delivery and stop sending to the target until an operator
    /// enables it again.
    DisableTarget,
}

/// Why an attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// 408 Request Timeout.
    RequestTimeout,
    /// 425 Too Early.
    TooEarly,
    /// 429 Too Many Requests.
    TooManyRequests,
    /// Any 5xx.
    ServerError,
    /// A status outside 100–599 or a 1xx as a final answer: not HTTP as we know it, so the
    /// cautious reading (the target is broken, for now) is taken.
    UnexpectedStatus,
    Transport(TransportFailure),
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::RequestTimeout => "request_timeout",
            RetryReason::TooEarly => "too_early",
            RetryReason::TooManyRequests => "too_many_requests",
            RetryReason::ServerError => "server_error",
            RetryReason::UnexpectedStatus => "unexpected_status",
            RetryReason::Transport(failure) => failure.as_str(),
        }
    }
}

/// Why a delivery is given up at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// A 3xx: redirects are not followed.
    Redirect,
    /// A 4xx other than 408, 410, 425 and 429.
    ClientError,
    BodyTooLarge,
    SsrfRefused,
    InvalidRequest,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Redirect => "redirect",
            FailReason::ClientError => "client_error",
            FailReason::BodyTooLarge => "body_too_large",
            FailReason::SsrfRefused => "ssrf_refused",
            FailReason::InvalidRequest => "invalid_request",
        }
    }
}

impl Verdict {
    /// The verdict's metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Retry { .. } => "retry",
            Verdict::Fail { .. } => "fail",
            Verdict::DisableTarget => "disable_target",
        }
    }

    /// The reason's metric label, next to [`as_str`](Self::as_str).
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Delivered => "ok",
            Verdict::Retry { reason, .. } => reason.as_str(),
            Verdict::Fail { reason } => reason.as_str(),
            Verdict::DisableTarget => "gone",
        }
    }

    /// Whether the attempt says the target is unhealthy, i.e. counts as a failure for its
    /// circuit breaker: every retry verdict (including 429: the target asks for less load).
    /// A fail or a 410 is the target answering clearly, and an SSRF refusal never reached
    /// it; a delivered attempt is a success.
    pub fn trips_breaker(self) -> bool {
        matches!(self, Verdict::Retry { .. })
    }
}

/// The verdict on one attempt.
pub fn classify(result: AttemptResult) -> Verdict {
    match result {
        AttemptResult::Transport(failure) => match failure {
            TransportFailure::BodyTooLarge => Verdict::Fail {
                reason: FailReason::BodyTooLarge,
            },
            TransportFailure::SsrfRefused => Verdict::Fail {
                reason: FailReason::SsrfRefused,
            },
            TransportFailure::InvalidRequest => Verdict::Fail {
                reason: FailReason::InvalidRequest,
            },
            TransportFailure::Timeout
            | TransportFailure::ConnectRefused
            | TransportFailure::Connection
            | TransportFailure::Dns
            | TransportFailure::Tls => retry(RetryReason::Transport(failure), None),
        },
        AttemptResult::Response {
            status,
            retry_after,
        } => match status {
            200..=299 => Verdict::Delivered,
            300..=399 => Verdict::Fail {
                reason: FailReason::Redirect,
            },
            408 => retry(RetryReason::RequestTimeout, None),
            410 => Verdict::DisableTarget,
            425 => retry(RetryReason::TooEarly, None),
            // RFC 6585 and RFC 9110 give `Retry-After` a meaning with 429 and 503 only.
            429 => retry(RetryReason::TooManyRequests, retry_after),
            503 => retry(RetryReason::ServerError, retry_after),
            400..=499 => Verdict::Fail {
                reason: FailReason::ClientError,
            },
            500..=599 => retry(RetryReason::ServerError, None),
            _ => retry(RetryReason::UnexpectedStatus, None),
        },
    }
}

fn retry(reason: RetryReason, retry_after: Option<Duration>) -> Verdict {
    Verdict::Retry {
        reason,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Option<Duration> = Some(Duration::from_secs(90));

    fn response(status: u16, retry_after: Option<Duration>) -> Verdict {
        classify(AttemptResult::Response {
            status,
            retry_after,
        })
    }

    /// (status, verdict label, reason label, retry_after kept when the target sent one)
    #[test]
    fn statuses() {
        let cases = [
            (200, "delivered", "ok", None),
            (201, "delivered", "ok", None),
            (204, "delivered", "ok", None),
            (299, "delivered", "ok", None),
            (301, "fail", "redirect", None),
            (302, "fail", "redirect", None),
            (307, "fail", "redirect", None),
            (308, "fail", "redirect", None),
            (400, "fail", "client_error", None),
            (401, "fail", "client_error", None),
            (403, "fail", "client_error", None),
            (404, "fail", "client_error", None),
            (413, "fail", "client_error", None),
            (422, "fail", "client_error", None),
            (499, "fail", "client_error", None),
            (408, "retry", "request_timeout", None),
            (425, "retry", "too_early", None),
            (429, "retry", "too_many_requests", WAIT),
            (410, "disable_target", "gone", None),
            (500, "retry", "server_error", None),
            (502, "retry", "server_error", None),
            (503, "retry", "server_error", WAIT),
            (504, "retry", "server_error", None),
            (599, "retry", "server_error", None),
            (0, "retry", "unexpected_status", None),
            (100, "retry", "unexpected_status", None),
            (199, "retry", "unexpected_status", None),
            (600, "retry", "unexpected_status", None),
            (u16::MAX, "retry", "unexpected_status", None),
        ];
        for (status, verdict, reason, kept) in cases {
            // Every status is classified as if the target had sent `Retry-After: 90`.
            let got = response(status, WAIT);
            assert_eq!((got.as_str(), got.reason()), (verdict, reason), "{status}");
            let retry_after = match got {
                Verdict::Retry { retry_after, .. } => retry_after,
                _ => None,
            };
            assert_eq!(retry_after, kept, "{status}");
            // Without the header, the verdict is the same and carries no wait.
            let bare = response(status, None);
            assert_eq!(
                (bare.as_str(), bare.reason()),
                (verdict, reason),
                "{status}"
            );
            assert!(!matches!(
                bare,
                Verdict::Retry {
                    retry_after: Some(_),
                    ..
                }
            ));
        }
    }

    #[test]
    fn transport_failures() {
        let cases = [
            (TransportFailure::Timeout, "retry", "timeout"),
            (TransportFailure::ConnectRefused, "retry", "connect_refused"),
            (TransportFailure::Connection, "retry", "connection"),
            (TransportFailure::Dns, "retry", "dns"),
            (TransportFailure::Tls, "retry", "tls"),
            (TransportFailure::BodyTooLarge, "fail", "body_too_large"),
            (TransportFailure::SsrfRefused, "fail", "ssrf_refused"),
            (TransportFailure::InvalidRequest, "fail", "invalid_request"),
        ];
        assert_eq!(cases.len(), TransportFailure::ALL.len());
        for (failure, verdict, reason) in cases {
            let got = classify(AttemptResult::Transport(failure));
            assert_eq!(
                (got.as_str(), got.reason()),
                (verdict, reason),
                "{failure:?}"
            );
            assert_eq!(failure.as_str(), reason);
        }
    }

    #[test]
    fn only_retries_trip_the_breaker() {
        assert!(response(503, None).trips_breaker());
        assert!(response(429, WAIT).trips_breaker());
        assert!(classify(AttemptResult::Transport(TransportFailure::Timeout)).trips_breaker());
        assert!(!response(200, None).trips_breaker());
        assert!(!response(404, None).trips_breaker());
        assert!(!response(410, None).trips_breaker());
        assert!(!classify(AttemptResult::Transport(TransportFailure::SsrfRefused)).trips_breaker());
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let mut labels: Vec<&str> = TransportFailure::ALL.iter().map(|f| f.as_str()).collect();
        labels.extend(
            [
                RetryReason::RequestTimeout,
                RetryReason::TooEarly,
                RetryReason::TooManyRequests,
                RetryReason::ServerError,
                RetryReason::UnexpectedStatus,
            ]
            .map(RetryReason::as_str),
        );
        labels.extend([FailReason::Redirect, FailReason::ClientError].map(FailReason::as_str));
        labels.extend(["ok", "gone"]);
        for label in &labels {
            assert!(
                label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{label}"
            );
        }
        let count = labels.len();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), count);
    }
}
