//! `mailpipe-schema-registry`: a DEVELOPMENT-ONLY schema registry speaking the Confluent
//! Schema Registry REST API.
//!
//! It exists so mailpipe can be run and tested on a laptop or in CI without a JVM. It is not
//! built for production: one process, one JSON file, Avro only, no auth, no references, no
//! clustering. Production uses Confluent Schema Registry, Karapace, Apicurio Registry or
//! Redpanda's built-in registry, all of which speak the same API, so clients need no changes.
//!
//! The pieces: [`compat`] parses schemas and applies compatibility rules, `state` holds the
//! data and its rules, [`store`] shares and persists it, [`api`] maps the REST API onto the
//! store, and this file has the error type shared by all of them plus [`run`] to serve it.

pub mod api;
pub mod compat;
mod state;
pub mod store;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::router;
pub use compat::CompatibilityLevel;
pub use store::Registry;

/// Every failure the registry can report. Each variant maps to the HTTP status and Confluent
/// `error_code` a Confluent client expects, so client-side error handling behaves the same as
/// against the real thing.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema not found: {0}")]
    SchemaNotFound(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("Unsupported schemaType '{0}': this development registry only supports AVRO")]
    UnsupportedSchemaType(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level '{0}'. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE")]
    InvalidCompatibilityLevel(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject '{subject}' ({level}): {details}")]
    Incompatible {
        subject: String,
        level: CompatibilityLevel,
        details: String,
    },
    #[error("Invalid request: {0}")]
    BadRequest(String),
    #[error("HTTP 404 Not Found")]
    RouteNotFound,
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
    #[error("cannot write data file {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load data file {path}: {reason}")]
    LoadDataFile { path: PathBuf, reason: String },
}

impl RegistryError {
    /// The HTTP status and Confluent error code, taken from Confluent's documented list.
    pub fn status_and_code(&self) -> (StatusCode, u32) {
        match self {
            Self::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            Self::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
            Self::SchemaNotFound(_) => (StatusCode::NOT_FOUND, 40403),
            Self::InvalidSchema(_) | Self::UnsupportedSchemaType(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, 42201)
            }
            Self::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            Self::InvalidCompatibilityLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            Self::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, 400),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, 404),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 405),
            Self::Storage { .. } | Self::LoadDataFile { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, 50001)
            }
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            // Client mistakes are the caller's business; a failing disk is ours, so log it.
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({ "error_code": code, "message": self.to_string() });
        api::json_response(status, &body)
    }
}

/// One version of a subject, serialised exactly like Confluent's
/// `GET /subjects/{subject}/versions/{version}`; `schemaType` is omitted because Confluent
/// omits it for AVRO, the only type supported here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

/// A `{version}` path segment: a number or `latest` (`-1` is Confluent's alias for latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    Latest,
    Number(u32),
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for VersionRef {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latest" | "-1" => Ok(Self::Latest),
            _ => match s.parse::<u32>() {
                Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(Self::Number(n)),
                _ => Err(RegistryError::InvalidVersion(s.to_string())),
            },
        }
    }
}

/// Serves the registry on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish (axum graceful shutdown). Tests call this with a `127.0.0.1:0` listener.
pub async fn run(
    listener: TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading listener address")?;
    tracing::info!(
        %addr,
        data_file = %registry.data_file().display(),
        "development schema registry listening (NOT for production use)"
    );
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving the schema registry HTTP API")?;
    tracing::info!("schema registry stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_render_as_confluent_json() {
        let response = RegistryError::SubjectNotFound("orders-value".into()).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()["content-type"],
            api::CONTENT_TYPE_SCHEMA_REGISTRY
        );
        let body = body_json(response).await;
        assert_eq!(body["error_code"], 40401);
        assert_eq!(body["message"], "Subject 'orders-value' not found.");
    }

    #[test]
    fn version_refs_parse_like_confluent() {
        assert_eq!("latest".parse::<VersionRef>().unwrap(), VersionRef::Latest);
        assert_eq!("-1".parse::<VersionRef>().unwrap(), VersionRef::Latest);
        assert_eq!("7".parse::<VersionRef>().unwrap(), VersionRef::Number(7));
        for bad in ["0", "abc", "-2", "4294967295"] {
            assert!(bad.parse::<VersionRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn incompatible_maps_to_409() {
        let error = RegistryError::Incompatible {
            subject: "s".into(),
            level: CompatibilityLevel::Backward,
            details: "field b has no default".into(),
        };
        assert_eq!(error.status_and_code(), (StatusCode::CONFLICT, 409));
        assert!(error.to_string().contains("BACKWARD"));
    }
}
