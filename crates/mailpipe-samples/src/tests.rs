//! The generator against the real verifier and parser, with the committed development
//! configuration and keys: every sample verifies and parses into exactly the events it
//! declares, every `--bad` sample fails where it says, and the same seed gives the same
//! bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mailpipe_model::{EventType, Provider};
use mailpipe_settings::Settings;
use mailpipe_verify_core::{
    required_certificate, CertificateCache, Context, Reason, Rejection, SourceConfig, Verified,
};

use crate::{generate, plan, Bad, DevKeys, PlanOptions, WebhookRequest, DEFAULT_SNS_CERT_URL};

/// 2027-01-15T08:00:00Z, for the tests that need no real clock.
const FIXED_NOW: i64 = 1_800_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn settings() -> Settings {
    Settings::load_from(Some(&repo().join("config/mailpipe.toml"))).unwrap()
}

fn dev_keys(settings: &Settings) -> DevKeys {
    DevKeys::load(
        settings,
        &repo().join("config/dev-keys"),
        &Provider::ALL,
        DEFAULT_SNS_CERT_URL,
    )
    .unwrap()
}

fn options(seed: u64, count: usize, now: i64) -> PlanOptions {
    PlanOptions {
        seed,
        count,
        providers: Provider::ALL.to_vec(),
        duplicates: 0.0,
        bad: false,
        now_ms: now * 1000,
    }
}

fn real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn headers(request: &WebhookRequest) -> Vec<(String, Vec<u8>)> {
    request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect()
}

/// Verifies `request` as the verify stage would, received at `now`: SES with the dev
/// certificate served on loopback (the test-only setting turned on, as the stage runs it).
fn verify(
    settings: &Settings,
    request: &WebhookRequest,
    index: usize,
    now: i64,
) -> Result<Verified, Rejection> {
    let (_, source) = settings
        .source(request.provider, Some(&request.source))
        .unwrap();
    let mut source = source.clone();
    source.sns_insecure_loopback = request.provider == Provider::Ses;
    let source = SourceConfig::from_settings(&source, &settings.verify);
    let raw = mailpipe_verify_core::Request {
        request_id: format!("request-{index}"),
        received_at_ms: now * 1000,
        method: "POST".into(),
        path: request.path.clone(),
        query: String::new(),
        headers: headers(request),
        body: request.body.clone(),
    };
    let mut certificates = CertificateCache::new(2);
    if let Some(url) = required_certificate(&raw, &source)? {
        let pem = std::fs::read(repo().join("config/dev-keys/sns-signing-cert.pem")).unwrap();
        certificates.insert_pem(url, &pem).unwrap();
    }
    mailpipe_verify_core::verify(
        raw,
        &source,
        &mut Context {
            certificates: &certificates,
        },
    )
    .map_err(|rejected| rejected.rejection)
}

fn parse(
    request: &WebhookRequest,
    now: i64,
) -> Result<Vec<mailpipe_normalize_core::EmailEvent>, mailpipe_normalize_core::ParseError> {
    let headers = headers(request);
    mailpipe_normalize_core::parse(
        request.provider,
        &mailpipe_normalize_core::ParseInput {
            source: &request.source,
            raw_request_id: "raw-1",
            received_at_ms: now * 1000,
            headers: &headers,
            query: "",
            body: &request.body,
        },
    )
}

#[test]
fn the_same_seed_gives_the_same_bytes_another_seed_other_ids() {
    let settings = settings();
    let keys = dev_keys(&settings);
    let first = generate(&options(7, 300, FIXED_NOW), &keys, FIXED_NOW).unwrap();
    let again = generate(&options(7, 300, FIXED_NOW), &keys, FIXED_NOW).unwrap();
    assert_eq!(first, again);
    let ids = |requests: &[WebhookRequest]| -> BTreeSet<String> {
        requests
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.id.clone()))
            .collect()
    };
    let other = generate(&options(8, 300, FIXED_NOW), &keys, FIXED_NOW).unwrap();
    assert!(ids(&first).is_disjoint(&ids(&other)));
    assert_eq!(ids(&first).len(), 300, "every event has its own id");
}

#[test]
fn count_is_esp_events_spread_over_the_providers() {
    for (count, providers) in [
        (1, vec![Provider::Ses]),
        (7, vec![Provider::Sendgrid, Provider::Mandrill]),
        (500, Provider::ALL.to_vec()),
        (13, vec![Provider::Ses, Provider::Brevo, Provider::Generic]),
    ] {
        let plan = plan(&PlanOptions {
            providers: providers.clone(),
            ..options(3, count, FIXED_NOW)
        });
        assert_eq!(plan.events(), count, "{providers:?}");
        let per_provider = plan.batches.iter().fold(BTreeMap::new(), |mut m, b| {
            *m.entry(b.provider).or_insert(0) += b.events.len();
            m
        });
        let (least, most) = (
            per_provider.values().min().unwrap(),
            per_provider.values().max().unwrap(),
        );
        assert!(most - least <= 1, "{per_provider:?}");
    }
}

#[test]
fn duplicates_follow_their_original_in_the_schedule() {
    let plan = plan(&PlanOptions {
        duplicates: 0.3,
        ..options(5, 1000, FIXED_NOW)
    });
    let duplicated = plan.batches.iter().filter(|b| b.duplicate).count();
    let share = duplicated as f64 / plan.batches.len() as f64;
    assert!((0.2..0.4).contains(&share), "{share}");
    let mut seen = BTreeSet::new();
    for slot in &plan.schedule {
        if slot.duplicate {
            assert!(seen.contains(&slot.batch), "duplicate before its original");
        } else {
            assert!(seen.insert(slot.batch), "original twice");
        }
    }
    assert_eq!(plan.schedule.len(), plan.batches.len() + duplicated);
}

#[test]
fn every_provider_sends_every_event_type_it_has() {
    let plan = plan(&options(11, 600, FIXED_NOW));
    for provider in Provider::ALL {
        let sent: BTreeSet<&str> = plan
            .batches
            .iter()
            .filter(|b| b.provider == provider)
            .flat_map(|b| b.events.iter().map(|e| e.kind.name))
            .collect();
        let kinds: BTreeSet<&str> = crate::kinds(provider).iter().map(|k| k.name).collect();
        assert_eq!(sent, kinds, "{provider}");
    }
    // Between them the samples cover every canonical type.
    let covered: BTreeSet<EventType> = Provider::ALL
        .into_iter()
        .flat_map(crate::event_types)
        .collect();
    assert_eq!(covered, EventType::ALL.into_iter().collect());
    // Batching providers batch; SES fans a delivery out to several recipients sometimes.
    let largest = |p: Provider| {
        plan.batches
            .iter()
            .filter(|b| b.provider == p)
            .map(|b| b.events.len())
            .max()
            .unwrap()
    };
    for provider in [
        Provider::Sendgrid,
        Provider::Mandrill,
        Provider::Sparkpost,
        Provider::Brevo,
        Provider::Mailjet,
        Provider::Generic,
        Provider::Ses,
    ] {
        assert!(largest(provider) > 1, "{provider}");
    }
    assert_eq!(largest(Provider::Postmark), 1);
}

#[test]
fn every_sample_verifies_and_parses_into_its_declared_events() {
    let settings = settings();
    let keys = dev_keys(&settings);
    let now = real_now();
    let requests = generate(&options(1, 600, now), &keys, now).unwrap();
    let mut canonical_ids = BTreeSet::new();
    let mut parsed_total = 0;
    for (i, request) in requests.iter().enumerate() {
        let what = format!("{} request {i}", request.provider);
        verify(&settings, request, i, now).unwrap_or_else(|e| panic!("{what}: {e}"));
        let events = parse(request, now).unwrap_or_else(|e| panic!("{what}: {e}"));
        let parsed: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
        let declared: Vec<EventType> = request.events.iter().map(|e| e.event_type).collect();
        assert_eq!(parsed, declared, "{what}");
        // Providers with their own event id: it is the canonical event_id.
        if !matches!(
            request.provider,
            Provider::Mailgun
                | Provider::Postmark
                | Provider::Ses
                | Provider::Mandrill
                | Provider::Brevo
                | Provider::Mailjet
        ) {
            let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            let declared: Vec<&str> = request.events.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(ids, declared, "{what}");
        }
        for event in &events {
            assert!(event.recipient.is_some(), "{what}");
            assert!(
                canonical_ids.insert(event.event_id.clone()),
                "{what}: id twice"
            );
        }
        parsed_total += events.len();
    }
    assert_eq!(parsed_total, 600);
    let path_of = |p: Provider| {
        requests
            .iter()
            .find(|r| r.provider == p)
            .unwrap()
            .path
            .clone()
    };
    assert_eq!(path_of(Provider::Sendgrid), "/webhooks/sendgrid");
}

#[test]
fn bad_samples_fail_verification_or_parsing_as_declared() {
    let settings = settings();
    let keys = dev_keys(&settings);
    let now = real_now();
    let requests = generate(
        &PlanOptions {
            bad: true,
            ..options(2, 300, now)
        },
        &keys,
        now,
    )
    .unwrap();
    let mut seen = BTreeSet::new();
    for (i, request) in requests.iter().enumerate() {
        let bad = request.bad.expect("every request is spoiled");
        let what = format!("{} request {i} ({})", request.provider, bad.as_str());
        assert!(request.events.is_empty(), "{what}");
        seen.insert((request.provider, bad));
        match bad {
            Bad::Forged => assert_eq!(
                verify(&settings, request, i, now).unwrap_err().reason,
                Reason::BadSignature,
                "{what}"
            ),
            Bad::Stale => assert_eq!(
                verify(&settings, request, i, now).unwrap_err().reason,
                Reason::StaleTimestamp,
                "{what}"
            ),
            Bad::Malformed => {
                verify(&settings, request, i, now).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(parse(request, now).is_err(), "{what}");
            }
        }
    }
    for provider in Provider::ALL {
        for &bad in crate::bad_kinds(provider) {
            assert!(seen.contains(&(provider, bad)), "{provider} {bad:?}");
        }
    }
}

#[test]
fn a_source_not_named_like_its_provider_gets_its_path() {
    let mut settings = settings();
    let generic = settings.sources.remove("generic").unwrap();
    settings.sources.insert("crm".into(), generic);
    let keys = DevKeys::load(
        &settings,
        &repo().join("config/dev-keys"),
        &[Provider::Generic],
        DEFAULT_SNS_CERT_URL,
    )
    .unwrap();
    let requests = generate(
        &PlanOptions {
            providers: vec![Provider::Generic],
            ..options(1, 3, FIXED_NOW)
        },
        &keys,
        FIXED_NOW,
    )
    .unwrap();
    assert!(requests.iter().all(|r| r.path == "/webhooks/generic/crm"));
    let missing = DevKeys::load(
        &settings,
        &repo().join("config/dev-keys"),
        &[Provider::Sendgrid],
        DEFAULT_SNS_CERT_URL,
    );
    assert!(missing.is_ok());
    settings.sources.clear();
    let err = DevKeys::load(
        &settings,
        Path::new("/nonexistent"),
        &[Provider::Postal],
        "",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no source of provider postal"),
        "{err}"
    );
}

#[test]
fn canonical_event_ids_are_one_per_declared_event_and_do_not_depend_on_receipt_time() {
    let settings = settings();
    let keys = dev_keys(&settings);
    let requests = generate(&options(11, 600, FIXED_NOW), &keys, FIXED_NOW).unwrap();
    let mut all = BTreeSet::new();
    for request in &requests {
        let ids = request.canonical_event_ids();
        assert_eq!(ids.len(), request.events.len(), "{:?}", request.provider);
        // Parsed again as if received a day later: the same ids.
        let later: Vec<String> = parse(request, FIXED_NOW + 86_400)
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(ids, later, "{:?}", request.provider);
        all.extend(ids);
    }
    assert_eq!(all.len(), 600, "distinct events, distinct ids");
}
