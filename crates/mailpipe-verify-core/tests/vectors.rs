//! The providers' published (or independently derived) test vectors, as data: every
//! `vectors/<provider>/*.toml` file lists cases — secrets, time of receipt, headers, body,
//! provider settings — and the verdict each must get. One function runs them all, so a
//! vector is added by adding a case, and the files can be read by anyone checking our
//! claims against the providers' documentation.
//!
//! A case: `name`, `secrets`, `received_at` (Unix seconds), `headers` (name = value),
//! `body`, optionally `webhook_url` / `sns_topic_arns`, and `expect` (`verified` or a
//! rejection reason such as `bad_signature`); a verified case may also pin `scheme`,
//! `signed_at` and `key_index`, and `body_len` guards a body against mangling. A file's
//! `certificate` (a PEM file beside the folders) serves every SNS certificate URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailpipe_verify_core::{
    required_certificate, verify, CertificateCache, Context, Provider, Request, SourceConfig,
    SourceOptions,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    provider: Provider,
    certificate: Option<String>,
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    secrets: Vec<String>,
    received_at: i64,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: String,
    body_len: Option<usize>,
    webhook_url: Option<String>,
    #[serde(default)]
    sns_topic_arns: Vec<String>,
    expect: String,
    scheme: Option<String>,
    signed_at: Option<i64>,
    key_index: Option<usize>,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for provider in std::fs::read_dir(vectors_dir()).unwrap() {
        let provider = provider.unwrap().path();
        if provider.is_dir() {
            for file in std::fs::read_dir(&provider).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_some_and(|e| e == "toml") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    files
}

/// How a verified case was verified: scheme name, signed timestamp, key index.
type How = (String, Option<i64>, Option<usize>);

/// What verification answered, in the words the files use.
fn verdict(file: &VectorFile, case: &Case) -> (String, Option<How>) {
    let options = SourceOptions {
        webhook_url: case.webhook_url.clone(),
        sns_topic_arns: case.sns_topic_arns.clone(),
        ..SourceOptions::default()
    };
    let source = SourceConfig::new(file.provider, &case.secrets, options);
    let request = Request {
        request_id: "vector".into(),
        received_at_ms: case.received_at * 1000,
        method: "POST".into(),
        path: format!("/webhooks/{}", file.provider),
        query: String::new(),
        headers: case
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect(),
        body: case.body.as_bytes().to_vec(),
    };
    let mut certificates = CertificateCache::new(4);
    if let (Some(pem), Ok(Some(url))) = (&file.certificate, required_certificate(&request, &source))
    {
        let pem = std::fs::read(vectors_dir().join(pem)).unwrap();
        certificates.insert_pem(url, &pem).unwrap();
    }
    let context = &mut Context {
        certificates: &certificates,
    };
    match verify(request, &source, context) {
        Ok(v) => (
            "verified".into(),
            Some((v.scheme().as_str().into(), v.signed_at(), v.key_index())),
        ),
        Err(rejected) => (rejected.rejection.reason.as_str().into(), None),
    }
}

#[test]
fn every_vector_gets_its_verdict() {
    let mut cases = 0;
    let mut failures = Vec::new();
    for path in files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let file: VectorFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for case in &file.case {
            cases += 1;
            let at = format!("{} / {}", path.display(), case.name);
            if let Some(len) = case.body_len {
                assert_eq!(case.body.len(), len, "{at}: body length");
            }
            let (got, how) = verdict(&file, case);
            if got != case.expect {
                failures.push(format!("{at}: expected {}, got {got}", case.expect));
                continue;
            }
            if let Some((scheme, signed_at, key_index)) = how {
                let pinned = [
                    case.scheme
                        .as_ref()
                        .map(|s| (s != &scheme, format!("scheme {scheme}"))),
                    case.signed_at
                        .map(|t| (Some(t) != signed_at, format!("signed_at {signed_at:?}"))),
                    case.key_index
                        .map(|i| (Some(i) != key_index, format!("key_index {key_index:?}"))),
                ];
                for (wrong, what) in pinned.into_iter().flatten() {
                    if wrong {
                        failures.push(format!("{at}: got {what}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(cases >= 40, "only {cases} vectors found");
}
