//! The "other team" consumer: Confluent's Python client with its schema-registry Avro
//! deserializer (`tests/python/decode_topic.py`), and the registry's subjects read over
//! plain HTTP. Checks that our records and schemas work with clients we did not write.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::{env_or, kafka_brokers, schema_registry_url};

/// One record as the Python client decoded it.
#[derive(Debug, Deserialize)]
pub struct PythonRecord {
    pub partition: i32,
    pub offset: i64,
    pub schema_id: u32,
    /// The decoded value, timestamp-millis fields as UTC milliseconds.
    pub value: serde_json::Value,
}

/// What the Python client read from a topic.
#[derive(Debug)]
pub struct PythonRead {
    pub records: Vec<PythonRecord>,
    /// Schema ids of the versions under the topic's own subject (`<topic>-value`).
    pub subject_schema_ids: Vec<u32>,
}

/// The virtualenv's python (`tests/python/install.sh` makes it; `make test` runs that).
pub fn python() -> PathBuf {
    let venv = env_or(
        "MAILPIPE_TEST_VENV",
        format!(
            "{}/.cache/mailpipe/python-venv",
            env_or("HOME", String::new())
        ),
    );
    let python = Path::new(&venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/python/install.sh (make test does)",
        python.display()
    );
    python
}

/// Reads `count` records of `topic` from its start with the Python client. Panics with the
/// script's stderr when it fails (a record that does not decode, too few records, or no
/// end within 4 minutes).
pub fn python_decode_topic(topic: &str, count: usize) -> PythonRead {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/decode_topic.py");
    let stdout = tempfile::NamedTempFile::new().expect("a temporary file");
    let stderr = tempfile::NamedTempFile::new().expect("a temporary file");
    let mut child = Command::new(python())
        .arg(&script)
        .args([
            &kafka_brokers(),
            &schema_registry_url(),
            topic,
            &count.to_string(),
            "120",
        ])
        // Files, not pipes: a full pipe nobody reads would block the script.
        .stdout(stdout.reopen().expect("stdout file"))
        .stderr(stderr.reopen().expect("stderr file"))
        .spawn()
        .expect("running the Python client");
    // The script gives up after 120 s of waiting for records; this bounds everything else
    // (a registry or broker that never answers).
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the Python client") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(stdout.path()).expect("the Python client's output");
    let errors = std::fs::read_to_string(stderr.path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "the Python client failed on {topic} ({}):\n{errors}",
        status.map_or("killed after 240 s".to_string(), |s| s.to_string())
    );
    let mut lines: Vec<&str> = stdout.lines().collect();
    let last = lines.pop().expect("the Python client's subject line");
    #[derive(Deserialize)]
    struct Subject {
        subject_schema_ids: Vec<u32>,
    }
    let subject: Subject = serde_json::from_str(last).expect("subject line");
    let records = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    PythonRead {
        records,
        subject_schema_ids: subject.subject_schema_ids,
    }
}

/// Schema ids of every version registered under `subject` (empty when it does not exist),
/// straight from the registry's Confluent-compatible REST API.
pub async fn subject_schema_ids(subject: &str) -> Vec<u32> {
    let base = schema_registry_url();
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{base}/subjects/{subject}/versions"))
        .send()
        .await
        .expect("registry answers");
    if response.status() == 404 {
        return Vec::new();
    }
    let versions: Vec<u32> = response.json().await.expect("a list of versions");
    let mut ids = Vec::new();
    for version in versions {
        #[derive(Deserialize)]
        struct Version {
            id: u32,
        }
        let v: Version = http
            .get(format!("{base}/subjects/{subject}/versions/{version}"))
            .send()
            .await
            .expect("registry answers")
            .json()
            .await
            .expect("a subject version");
        ids.push(v.id);
    }
    ids.sort_unstable();
    ids
}
