//! The Confluent Schema Registry REST API of the DEVELOPMENT-ONLY schema registry.
//!
//! A stand-in for local runs and tests; production uses Confluent Schema Registry, Karapace,
//! Apicurio or Redpanda. Only the endpoints mailpipe and its clients (e.g.
//! `schema_registry_converter`) need are here, with Confluent's paths, JSON shapes and error
//! codes, so a client cannot tell the difference for those calls.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{CompatibilityLevel, Registry, RegistryError, VersionRef};

/// The media type Confluent answers with. Requests may use it, `application/json` or none.
pub const CONTENT_TYPE_SCHEMA_REGISTRY: &str = "application/vnd.schemaregistry.v1+json";

type ApiResult = Result<Response, RegistryError>;

/// All routes, with JSON errors for unknown paths and wrong methods as well.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_usages))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_compatibility),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
        .fallback(|| async { RegistryError::RouteNotFound })
        .method_not_allowed_fallback(|| async { RegistryError::MethodNotAllowed })
        .with_state(registry)
}

/// Serialises `body` with Confluent's content type; shared with the error responses.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, CONTENT_TYPE_SCHEMA_REGISTRY)],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn ok(body: &impl Serialize) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

/// Path parameters whose rejection is our JSON error rather than axum's plain-text one.
struct Params<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Params(value)),
            Err(rejection) => Err(RegistryError::BadRequest(rejection.body_text())),
        }
    }
}

/// Parses a JSON request body whatever its content type says: clients send Confluent's media
/// type, plain `application/json` or nothing, and all of them should work.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, RegistryError> {
    serde_json::from_slice(body)
        .map_err(|e| RegistryError::BadRequest(format!("request body: {e}")))
}

/// Body of register, lookup and compatibility requests.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

impl SchemaRequest {
    fn parse(body: &Bytes) -> Result<SchemaRequest, RegistryError> {
        let request: SchemaRequest = parse_body(body)?;
        // Refuse rather than ignore references: ignoring them would register a schema whose
        // named types cannot be resolved by anyone reading it back.
        if !request.references.is_empty() {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported by this development registry".to_string(),
            ));
        }
        Ok(request)
    }
}

/// Body of `PUT /config`. Confluent's docs use `compatibility`; accept the GET spelling too.
#[derive(Deserialize)]
struct ConfigRequest {
    #[serde(alias = "compatibilityLevel")]
    compatibility: String,
}

/// Confluent answers `{}` on `/`, which doubles as a health check.
async fn root() -> ApiResult {
    ok(&json!({}))
}

async fn list_subjects(State(registry): State<Registry>) -> ApiResult {
    ok(&registry.subjects().await)
}

async fn register(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    body: Bytes,
) -> ApiResult {
    let request = SchemaRequest::parse(&body)?;
    let schema_type = request.schema_type.as_deref();
    let id = registry
        .register(&subject, schema_type, &request.schema)
        .await?;
    ok(&json!({ "id": id }))
}

async fn lookup(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    body: Bytes,
) -> ApiResult {
    let request = SchemaRequest::parse(&body)?;
    let schema_type = request.schema_type.as_deref();
    ok(&registry
        .lookup(&subject, schema_type, &request.schema)
        .await?)
}

async fn delete_subject(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
) -> ApiResult {
    ok(&registry.delete_subject(&subject).await?)
}

async fn list_versions(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
) -> ApiResult {
    ok(&registry.versions(&subject).await?)
}

async fn get_version(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
) -> ApiResult {
    ok(&registry.version(&subject, version.parse()?).await?)
}

/// The schema itself as the body, as Confluent does for `.../schema`.
async fn get_version_schema(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
) -> ApiResult {
    let found = registry.version(&subject, version.parse()?).await?;
    let content_type = [(header::CONTENT_TYPE, CONTENT_TYPE_SCHEMA_REGISTRY)];
    Ok((content_type, found.schema).into_response())
}

async fn schema_by_id(State(registry): State<Registry>, Params(id): Params<u32>) -> ApiResult {
    ok(&json!({ "schema": registry.schema_by_id(id).await? }))
}

async fn schema_usages(State(registry): State<Registry>, Params(id): Params<u32>) -> ApiResult {
    let usages = registry.usages_of(id).await?;
    let body: Vec<_> = usages
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    ok(&body)
}

async fn check_compatibility(
    State(registry): State<Registry>,
    Params((subject, version)): Params<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let at: VersionRef = version.parse()?;
    let request = SchemaRequest::parse(&body)?;
    let schema_type = request.schema_type.as_deref();
    let compatible = registry
        .is_compatible(&subject, at, schema_type, &request.schema)
        .await?;
    ok(&json!({ "is_compatible": compatible }))
}

/// GET answers `compatibilityLevel`, PUT echoes `compatibility`: Confluent's own asymmetry.
async fn get_global_config(State(registry): State<Registry>) -> ApiResult {
    ok(&json!({ "compatibilityLevel": registry.global_level().await }))
}

async fn put_global_config(State(registry): State<Registry>, body: Bytes) -> ApiResult {
    let level: CompatibilityLevel = parse_body::<ConfigRequest>(&body)?.compatibility.parse()?;
    registry.set_global_level(level).await?;
    ok(&json!({ "compatibility": level }))
}

/// Returns the level in effect for the subject (its own or the global one). Confluent would
/// 404 without `defaultToGlobal=true` when the subject has no own level; the effective level
/// is more useful for a development tool and no client we use depends on the 404.
async fn get_subject_config(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
) -> ApiResult {
    ok(&json!({ "compatibilityLevel": registry.subject_level(&subject).await }))
}

async fn put_subject_config(
    State(registry): State<Registry>,
    Params(subject): Params<String>,
    body: Bytes,
) -> ApiResult {
    let level: CompatibilityLevel = parse_body::<ConfigRequest>(&body)?.compatibility.parse()?;
    registry.set_subject_level(&subject, level).await?;
    ok(&json!({ "compatibility": level }))
}
