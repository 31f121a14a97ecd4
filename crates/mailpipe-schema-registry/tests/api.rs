//! End-to-end tests of the DEVELOPMENT-ONLY schema registry over real HTTP.
//!
//! The registry is a local stand-in; production uses Confluent Schema Registry, Karapace,
//! Apicurio or Redpanda. These tests start it in-process on 127.0.0.1:0 and talk to it the way
//! mailpipe does (through `schema_registry_converter`) and with plain HTTP (reqwest), to check
//! the parts of the Confluent API our clients depend on.

use std::path::Path;

use mailpipe_schema_registry::{run, Registry};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const V1: &str = r#"{"type":"record","name":"Bounce","namespace":"mailpipe.events","fields":[{"name":"message_id","type":"string"}]}"#;
/// V1 plus a field with a default: new readers can still read V1 data, so BACKWARD allows it.
const V2: &str = r#"{"type":"record","name":"Bounce","namespace":"mailpipe.events","fields":[{"name":"message_id","type":"string"},{"name":"reason","type":"string","default":"unknown"}]}"#;
/// V2 plus a field without a default: V2 data lacks it, so BACKWARD must refuse.
const V3: &str = r#"{"type":"record","name":"Bounce","namespace":"mailpipe.events","fields":[{"name":"message_id","type":"string"},{"name":"reason","type":"string","default":"unknown"},{"name":"smtp_code","type":"int"}]}"#;

/// A registry served in-process on an ephemeral port.
struct Server {
    url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(data_file: &Path) -> Server {
        let registry = Registry::open(data_file).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(listener, registry, shutdown.clone()));
        Server {
            url,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Sends a request and returns status and JSON body, checking Confluent's content type.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request
                .header("content-type", CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["content-type"], CONTENT_TYPE, "{path}");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Registers a schema that must be accepted; returns its id.
    async fn register_id(&self, subject: &str, schema: &str) -> u64 {
        let (status, body) = self.register(subject, schema).await;
        assert_eq!(status, 200, "{subject}: {body}");
        body["id"].as_u64().unwrap()
    }

    /// A GET that must succeed; returns the JSON body.
    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Asserts a Confluent-style error: status, `error_code` and a `message` string.
    async fn expect_error(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
        code: u64,
    ) {
        let (got_status, error) = self.call(method, path, body).await;
        let got = (got_status, error["error_code"].as_u64());
        assert_eq!(got, (status, Some(code)), "{method} {path}: {error}");
        assert!(error["message"].is_string(), "{error}");
    }

    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        let path = format!("/subjects/{subject}/versions");
        self.call("POST", &path, Some(json!({ "schema": schema })))
            .await
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Delivered {
    message_id: String,
    recipient: String,
    attempts: i32,
    opened: bool,
}

#[tokio::test]
async fn converter_round_trips_a_struct() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("registry.json")).await;
    let schema = r#"{"type":"record","name":"Delivered","namespace":"mailpipe.events","fields":[
        {"name":"message_id","type":"string"},{"name":"recipient","type":"string"},
        {"name":"attempts","type":"int"},{"name":"opened","type":"boolean"}]}"#;
    let event = Delivered {
        message_id: "<abc@mail.example>".into(),
        recipient: "someone@example.com".into(),
        attempts: 2,
        opened: true,
    };

    let settings = SrSettings::new(server.url.clone());
    let supplied = SuppliedSchema::new(
        Some("mailpipe.events.Delivered".into()),
        SchemaType::Avro,
        schema.into(),
    );
    let strategy =
        SubjectNameStrategy::TopicNameStrategyWithSchema("email-delivered".into(), false, supplied);
    let bytes = AvroEncoder::new(settings.clone())
        .encode_struct(&event, &strategy)
        .await
        .unwrap();
    // Confluent wire format: magic byte 0, then the registry id big-endian.
    assert_eq!(bytes[..5], [0, 0, 0, 0, 1]);

    let decoded = AvroDecoder::new(settings)
        .decode(Some(&bytes))
        .await
        .unwrap();
    let back: Delivered = apache_avro::from_value(&decoded.value).unwrap();
    assert_eq!(back, event);

    let subjects = server.get("/subjects").await;
    assert_eq!(subjects, json!(["email-delivered-value"]));
    server.stop().await;
}

#[tokio::test]
async fn evolution_is_checked_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("registry.json");
    let server = Server::start(&data_file).await;

    assert_eq!(server.register_id("bounce-value", V1).await, 1);
    assert_eq!(server.register_id("bounce-value", V2).await, 2);
    let (status, error) = server.register("bounce-value", V3).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error_code"], 409);
    assert!(
        error["message"].as_str().unwrap().contains("smtp_code"),
        "{error}"
    );
    // Same schema again: same id. Same schema under another subject: same global id.
    assert_eq!(server.register_id("bounce-value", V1).await, 1);
    assert_eq!(server.register_id("bounce-key", V2).await, 2);
    server.stop().await;

    let server = Server::start(&data_file).await;
    let versions = server.get("/subjects/bounce-value/versions").await;
    assert_eq!(versions, json!([1, 2]));
    let latest = server.get("/subjects/bounce-value/versions/latest").await;
    assert_eq!(
        latest,
        json!({"subject": "bounce-value", "version": 2, "id": 2, "schema": V2})
    );
    assert_eq!(server.register_id("bounce-value", V2).await, 2);
    // The next new schema continues after the persisted ids instead of reusing them.
    let (_, relaxed) = server
        .call(
            "PUT",
            "/config/bounce-value",
            Some(json!({"compatibility": "NONE"})),
        )
        .await;
    assert_eq!(relaxed, json!({"compatibility": "NONE"}));
    assert_eq!(server.register_id("bounce-value", V3).await, 3);
    server.stop().await;
}

#[tokio::test]
async fn read_endpoints_answer_like_confluent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("registry.json")).await;
    server.register_id("bounce-value", V1).await;
    server.register_id("bounce-value", V2).await;

    let by_id = server.get("/schemas/ids/1").await;
    assert_eq!(by_id, json!({ "schema": V1 }));
    let usages = server.get("/schemas/ids/2/versions").await;
    assert_eq!(usages, json!([{"subject": "bounce-value", "version": 2}]));
    let subjects = server.get("/subjects").await;
    assert_eq!(subjects, json!(["bounce-value"]));
    let v1 = server.get("/subjects/bounce-value/versions/1").await;
    assert_eq!(v1["id"], 1);
    assert!(
        v1.get("schemaType").is_none(),
        "AVRO omits schemaType: {v1}"
    );
    let raw = server.get("/subjects/bounce-value/versions/2/schema").await;
    assert_eq!(raw, serde_json::from_str::<Value>(V2).unwrap());

    // Lookup finds the version of a registered schema.
    let (status, found) = server
        .call(
            "POST",
            "/subjects/bounce-value",
            Some(json!({ "schema": V2 })),
        )
        .await;
    assert_eq!(
        (status, found["version"].clone(), found["id"].clone()),
        (200, json!(2), json!(2))
    );

    let compat = "/compatibility/subjects/bounce-value/versions/latest";
    let (_, ok) = server
        .call("POST", compat, Some(json!({ "schema": V2 })))
        .await;
    assert_eq!(ok, json!({"is_compatible": true}));
    let (_, bad) = server
        .call("POST", compat, Some(json!({ "schema": V3 })))
        .await;
    assert_eq!(bad, json!({"is_compatible": false}));

    let config = server.get("/config").await;
    assert_eq!(config, json!({"compatibilityLevel": "BACKWARD"}));
    server.stop().await;
}

#[tokio::test]
async fn errors_use_confluent_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("registry.json")).await;
    server.register_id("bounce-value", V1).await;

    let not_found = [
        ("/subjects/nope/versions", 404, 40401),
        ("/subjects/bounce-value/versions/9", 404, 40402),
        ("/subjects/bounce-value/versions/zero", 422, 42202),
        ("/schemas/ids/99", 404, 40403),
        ("/no/such/route", 404, 404),
    ];
    for (path, status, code) in not_found {
        server.expect_error("GET", path, None, status, code).await;
    }
    let proto = json!({ "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF" });
    let refused = [
        (
            "/subjects/bounce-value",
            json!({ "schema": V2 }),
            404,
            40403,
        ),
        ("/subjects/x/versions", json!({ "schema": "{" }), 422, 42201),
        ("/subjects/x/versions", proto, 422, 42201),
    ];
    for (path, body, status, code) in refused {
        server
            .expect_error("POST", path, Some(body), status, code)
            .await;
    }

    // Plain JSON and a missing content type are accepted too.
    let client = reqwest::Client::new();
    let url = format!("{}/subjects/other-value/versions", server.url);
    let body = json!({ "schema": V1 });
    let plain = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    let bare = client.post(&url).body(body.to_string()).send().await;
    assert_eq!(
        bare.unwrap().json::<Value>().await.unwrap(),
        json!({"id": 1})
    );
    server.stop().await;
}
