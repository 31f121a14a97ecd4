//! Fixtures as data: `tests/fixtures/<provider>/<case>.<ext>` is a request body written by
//! us in the provider's documented shape. The extension gives the content type (`.json`
//! application/json, `.txt` text/plain as SNS sends, `.form` urlencoded); an optional
//! `<case>.headers` file adds `Name: value` lines (multipart boundaries, `svix-id`…).
//! Cases named `invalid-*` must fail to parse.

#![allow(dead_code)] // each test binary uses part of this module

use std::path::{Path, PathBuf};

use mailpipe_normalize_core::{parse, EmailEvent, ParseError, ParseInput, Provider};

/// The receipt time every fixture is parsed with (2024-05-29T16:26:40Z).
pub const RECEIVED_AT: i64 = 1_717_000_000_000;

#[derive(Debug, Clone)]
pub struct Fixture {
    pub provider: Provider,
    /// `<provider>/<file name>`, for messages and snapshot names.
    pub name: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Fixture {
    pub fn input(&self) -> ParseInput<'_> {
        self.input_with_body(&self.body)
    }

    pub fn input_with_body<'a>(&'a self, body: &'a [u8]) -> ParseInput<'a> {
        ParseInput {
            source: "main",
            raw_request_id: "01900000-0000-7000-8000-000000000001",
            received_at_ms: RECEIVED_AT,
            headers: &self.headers,
            query: "",
            body,
        }
    }

    pub fn parse(&self) -> Result<Vec<EmailEvent>, ParseError> {
        parse(self.provider, &self.input())
    }

    pub fn expects_error(&self) -> bool {
        self.name
            .split('/')
            .nth(1)
            .is_some_and(|file| file.starts_with("invalid-"))
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture, sorted by provider then file name.
pub fn all() -> Vec<Fixture> {
    let mut fixtures = Vec::new();
    for provider in Provider::ALL {
        let dir = root().join(provider.as_str());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext != "headers"))
            .collect();
        files.sort();
        for path in files {
            fixtures.push(load(provider, &path));
        }
    }
    fixtures
}

fn load(provider: Provider, path: &Path) -> Fixture {
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Some("application/json"),
        Some("txt") => Some("text/plain; charset=UTF-8"),
        Some("form") => Some("application/x-www-form-urlencoded"),
        _ => None,
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let sidecar = path.with_extension("headers");
    if let Ok(text) = std::fs::read_to_string(&sidecar) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, value) = line.split_once(':').expect("Name: value");
            headers.push((
                name.trim().to_ascii_lowercase(),
                value.trim().as_bytes().to_vec(),
            ));
        }
    }
    if let Some(content_type) = content_type {
        if !headers.iter().any(|(name, _)| name == "content-type") {
            headers.push(("content-type".into(), content_type.as_bytes().to_vec()));
        }
    }
    Fixture {
        provider,
        name: format!("{provider}/{}", path.file_name().unwrap().to_string_lossy()),
        headers,
        body: std::fs::read(path).unwrap(),
    }
}
