//! The one error type of the HTTP edge. Every way a webhook request can fail is a variant;
//! [`IntoResponse`] turns it into the status the contract (design.md §3.1) promises.
//!
//! Client faults become 4xx and are not logged as errors (the access log has them); server
//! faults become a generic 5xx (never a 4xx: a 4xx would stop the ESP's retries) and their
//! cause is logged here, once.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mailpipe_telemetry::names;

use crate::sink::SinkError;

/// Why a request was not answered 2xx.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("no such route")]
    UnknownRoute,
    #[error("unknown provider")]
    UnknownProvider,
    #[error("unknown source")]
    UnknownSource,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("client address not allowed for this source")]
    IpNotAllowed,
    #[error("content type not sent by this provider")]
    UnsupportedContentType,
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request body not received within {0:?}")]
    BodyTimeout(Duration),
    #[error("request body incomplete")]
    BodyIncomplete,
    #[error("rate limited")]
    RateLimited {
        scope: &'static str,
        retry_after: Duration,
    },
    #[error("over capacity")]
    OverCapacity { retry_after_secs: u32 },
    #[error("raw record not acknowledged by kafka: {cause}")]
    Unavailable {
        cause: SinkError,
        retry_after_secs: u32,
    },
}

impl ReceiverError {
    pub fn status(&self) -> StatusCode {
        match self {
            ReceiverError::UnknownRoute
            | ReceiverError::UnknownProvider
            | ReceiverError::UnknownSource => StatusCode::NOT_FOUND,
            ReceiverError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ReceiverError::IpNotAllowed => StatusCode::FORBIDDEN,
            ReceiverError::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ReceiverError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ReceiverError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ReceiverError::BodyIncomplete => StatusCode::BAD_REQUEST,
            ReceiverError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ReceiverError::OverCapacity { .. } | ReceiverError::Unavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The `reason` label of `mailpipe_receiver_rejections_total`: a closed set.
    pub fn reason(&self) -> &'static str {
        match self {
            ReceiverError::UnknownRoute => "unknown_route",
            ReceiverError::UnknownProvider => "unknown_provider",
            ReceiverError::UnknownSource => "unknown_source",
            ReceiverError::MethodNotAllowed => "method_not_allowed",
            ReceiverError::IpNotAllowed => "ip_not_allowed",
            ReceiverError::UnsupportedContentType => "unsupported_content_type",
            ReceiverError::BodyTooLarge { .. } => "body_too_large",
            ReceiverError::BodyTimeout(_) => "body_timeout",
            ReceiverError::BodyIncomplete => "body_incomplete",
            ReceiverError::RateLimited { scope, .. } => scope,
            ReceiverError::OverCapacity { .. } => "over_capacity",
            ReceiverError::Unavailable { cause, .. } => cause.reason(),
        }
    }

    /// Seconds for `Retry-After`, on the statuses that carry one.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ReceiverError::RateLimited { retry_after, .. } => {
                // Round up: retrying before the bucket has a token would be refused again.
                Some(retry_after.as_millis().div_ceil(1000).max(1) as u64)
            }
            ReceiverError::OverCapacity { retry_after_secs }
            | ReceiverError::Unavailable {
                retry_after_secs, ..
            } => Some(u64::from(*retry_after_secs)),
            _ => None,
        }
    }
}

impl IntoResponse for ReceiverError {
    fn into_response(self) -> Response {
        let status = self.status();
        metrics::counter!(names::RECEIVER_REJECTIONS, "reason" => self.reason()).increment(1);
        let message = match &self {
            ReceiverError::Unavailable { cause, .. } => {
                // The one place a server fault is logged; the client gets no internals.
                tracing::error!(reason = cause.reason(), error = %cause, "raw record not acknowledged; answering 503");
                "service unavailable, retry later".to_string()
            }
            ReceiverError::OverCapacity { .. } => {
                tracing::warn!("over capacity; answering 503");
                "over capacity, retry later".to_string()
            }
            client_fault => client_fault.to_string(),
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ReceiverError::MethodNotAllowed) {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST, GET, HEAD"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_are_5xx_with_retry_after_and_no_internals() {
        let err = ReceiverError::Unavailable {
            cause: SinkError::Timeout(Duration::from_secs(5)),
            retry_after_secs: 7,
        };
        assert_eq!(err.reason(), "produce_timeout");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn rate_limit_retry_after_rounds_up_to_whole_seconds() {
        let err = ReceiverError::RateLimited {
            scope: "rate_limited_ip",
            retry_after: Duration::from_millis(1200),
        };
        assert_eq!(err.retry_after_secs(), Some(2));
        let err = ReceiverError::RateLimited {
            scope: "rate_limited_ip",
            retry_after: Duration::from_millis(3),
        };
        assert_eq!(err.retry_after_secs(), Some(1));
    }

    #[test]
    fn client_faults_are_4xx() {
        for err in [
            ReceiverError::UnknownSource,
            ReceiverError::IpNotAllowed,
            ReceiverError::UnsupportedContentType,
            ReceiverError::BodyTooLarge { limit: 1 },
            ReceiverError::BodyTimeout(Duration::from_secs(1)),
        ] {
            assert!(err.status().is_client_error(), "{err:?}");
        }
    }
}
