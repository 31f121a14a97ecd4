//! The console's one error type, and how each kind answers over HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A parameter of the request is wrong: 400 with what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// ClickHouse failed or took longer than `[console] query_timeout_ms`: 503.
    #[error("clickhouse: {0}")]
    ClickHouse(String),
    /// Kafka failed or took too long: 503.
    #[error("kafka: {0}")]
    Kafka(String),
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::ClickHouse(_) | ConsoleError::Kafka(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<mailpipe_clickhouse::ClickHouseError> for ConsoleError {
    fn from(e: mailpipe_clickhouse::ClickHouseError) -> Self {
        ConsoleError::ClickHouse(e.to_string())
    }
}

impl From<rdkafka::error::KafkaError> for ConsoleError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        ConsoleError::Kafka(e.to_string())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "console request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}
