//! From a signed request to canonical events, with no IO: for every provider, the first
//! request `mailpipe-samples` signs (fixed seed and clock, the committed development config
//! and keys) goes through `mailpipe_verify_core::verify`, which strips its credentials as it
//! makes the `Verified` request, as the verify stage does, then `mailpipe_normalize_core::parse`
//! of that request, as the normalize stage does; the verification and the events are compared with the reviewed
//! snapshot of that provider (`tests/snapshots/`).
//!
//! The requests are the same bytes on every run (seed and clock fixed), so the events are
//! too; still, what a change of the samples' wording or of a signature would move without
//! the pipeline's meaning changing is redacted: `raw_event` is shown as its size (the
//! provider's input, pinned by normalize's fixtures) and header values are not shown.
//!
//! Updating after an intended change: `INSTA_UPDATE=always cargo test -p mailpipe-samples
//! --test signed_to_events`, then review the diff before committing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mailpipe_model::{EmailEvent, Provider};
use mailpipe_samples::{generate, DevKeys, PlanOptions, WebhookRequest, DEFAULT_SNS_CERT_URL};
use mailpipe_settings::Settings;
use mailpipe_verify_core::{required_certificate, CertificateCache, Context, SourceConfig};

/// 2027-01-15T08:00:00Z: the requests' clock, and the receiver's at their receipt.
const FIXED_NOW: i64 = 1_800_000_000;
const SEED: u64 = 17;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first request of a two-event plan of `provider` only.
fn signed_request(settings: &Settings, provider: Provider) -> WebhookRequest {
    let keys = DevKeys::load(
        settings,
        &repo().join("config/dev-keys"),
        &[provider],
        DEFAULT_SNS_CERT_URL,
    )
    .expect("development keys load");
    let options = PlanOptions {
        seed: SEED,
        count: 2,
        providers: vec![provider],
        duplicates: 0.0,
        bad: false,
        now_ms: FIXED_NOW * 1000,
    };
    let mut requests = generate(&options, &keys, FIXED_NOW).expect("samples render");
    requests.remove(0)
}

/// The request verified and parsed as the two stages do it; the snapshot text.
fn through_verify_and_normalize(settings: &Settings, request: &WebhookRequest) -> String {
    let (_, source) = settings
        .source(request.provider, Some(&request.source))
        .expect("the sample's source is configured");
    let mut source = source.clone();
    // The SES samples are signed with the development certificate, which the verify
    // stage accepts from a loopback URL only with this test-only setting.
    source.sns_insecure_loopback = request.provider == Provider::Ses;
    let source = SourceConfig::from_settings(&source, &settings.verify);
    let raw = mailpipe_verify_core::Request {
        request_id: "raw-1".into(),
        received_at_ms: FIXED_NOW * 1000,
        method: "POST".into(),
        path: request.path.clone(),
        query: String::new(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect(),
        body: request.body.clone(),
    };

    let mut certificates = CertificateCache::new(2);
    if let Some(url) = required_certificate(&raw, &source).expect("certificate URL allowed") {
        let pem = std::fs::read(repo().join("config/dev-keys/sns-signing-cert.pem")).unwrap();
        certificates.insert_pem(url, &pem).unwrap();
    }
    let mut context = Context {
        certificates: &certificates,
    };
    let verified = mailpipe_verify_core::verify(raw, &source, &mut context)
        .unwrap_or_else(|rejected| panic!("{}: {rejected:?}", request.provider));
    let stripped = verified.request();

    let mut out = String::new();
    writeln!(out, "provider: {}", request.provider).unwrap();
    writeln!(out, "scheme: {:?}", verified.scheme()).unwrap();
    writeln!(out, "key_index: {:?}", verified.key_index()).unwrap();
    writeln!(out, "signed_at: {:?}", verified.signed_at()).unwrap();
    let names: Vec<&str> = stripped
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    writeln!(out, "headers after stripping: {names:?}").unwrap();

    let input = mailpipe_normalize_core::ParseInput {
        source: &request.source,
        raw_request_id: &stripped.request_id,
        received_at_ms: stripped.received_at_ms,
        headers: &stripped.headers,
        query: &stripped.query,
        body: &stripped.body,
    };
    let events = mailpipe_normalize_core::parse(request.provider, &input)
        .unwrap_or_else(|e| panic!("{}: {e}", request.provider));
    let shown: Vec<EmailEvent> = events
        .into_iter()
        .map(|event| EmailEvent {
            raw_event: format!("<{} bytes>", event.raw_event.len()),
            ..event
        })
        .collect();
    out + &serde_json::to_string_pretty(&shown).unwrap() + "\n"
}

#[test]
fn every_providers_signed_request_verifies_and_parses_as_its_snapshot() {
    let settings = Settings::load_from(Some(&repo().join("config/mailpipe.toml")))
        .expect("the development config loads");
    for provider in Provider::ALL {
        let request = signed_request(&settings, provider);
        let snapshot = through_verify_and_normalize(&settings, &request);
        insta::assert_snapshot!(provider.as_str(), snapshot, &request.path);
    }
}

#[test]
fn the_same_seed_and_clock_give_the_same_snapshot() {
    let settings = Settings::load_from(Some(&repo().join("config/mailpipe.toml"))).unwrap();
    for provider in [Provider::Sendgrid, Provider::Ses, Provider::Mailgun] {
        let first = through_verify_and_normalize(&settings, &signed_request(&settings, provider));
        let again = through_verify_and_normalize(&settings, &signed_request(&settings, provider));
        assert_eq!(first, again, "{provider}");
    }
}
