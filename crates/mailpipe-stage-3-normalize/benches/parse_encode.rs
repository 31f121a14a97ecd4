//! `make bench`: per provider, events/s of parse + enrich + Avro encode (the normalize
//! stage's CPU work per request; enrichment with user agents, no IP database) on one core, next to only `serde_json`-parsing the same bodies, and
//! their ratio (goal: parse + encode ≤ 3× the bare JSON parse). Reports, never asserts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailpipe_avro::event_datum::EventEncoder;
use mailpipe_avro::RegisteredSchema;
use mailpipe_model::Provider;
use mailpipe_normalize_core::{parse, ParseInput};

/// Each figure is the best of ROUNDS runs of RUN_FOR / ROUNDS, the three figures taking
/// turns: other processes on the machine can only slow a run down, and taking turns exposes
/// all three figures to the same conditions, so their ratio stays meaningful under load.
const RUN_FOR: Duration = Duration::from_millis(700);
const ROUNDS: u32 = 5;

struct Case {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn cases(provider: Provider) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mailpipe-normalize-core/tests/fixtures")
        .join(provider.as_str());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            let content_type = match path.extension()?.to_str()? {
                "json" => "application/json",
                "txt" => "text/plain",
                "form" => "application/x-www-form-urlencoded",
                _ => return None,
            };
            if name.starts_with("invalid-") || path.with_extension("headers").exists() {
                return None;
            }
            Some(Case {
                headers: vec![("content-type".into(), content_type.as_bytes().to_vec())],
                body: std::fs::read(&path).ok()?,
            })
        })
        .collect()
}

/// Runs `work` over all cases repeatedly for `run_for`; returns units of work per second.
fn rate(cases: &[Case], run_for: Duration, mut work: impl FnMut(&Case) -> usize) -> f64 {
    let started = Instant::now();
    let mut units = 0usize;
    while started.elapsed() < run_for {
        for case in cases {
            units += work(case);
        }
    }
    units as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let schema = mailpipe_avro::parse_schema(mailpipe_avro::EMAIL_EVENT_SCHEMA).unwrap();
    // Encoded as the stage encodes, Confluent framing included.
    let encoder = EventEncoder::new(RegisteredSchema::new(1, schema).unwrap()).unwrap();
    let enricher = mailpipe_stage_3_normalize::enrich::Enricher::new(true, None);
    println!(
        "normalize: parse + enrich + Avro encode vs bare serde_json parse, one core, best of {ROUNDS} × {:?} per figure",
        RUN_FOR / ROUNDS
    );
    println!(
        "{:<11} {:>8} {:>16} {:>14} {:>14} {:>7}",
        "provider", "events", "parse+enr+enc/s", "parse-only/s", "json-only/s", "ratio"
    );
    for provider in Provider::ALL {
        let cases = cases(provider);
        let input = |case: &'_ Case| -> Vec<mailpipe_model::EmailEvent> {
            let input = ParseInput {
                source: "bench",
                raw_request_id: "bench",
                received_at_ms: 1_717_000_000_000,
                headers: &case.headers,
                query: "",
                body: &case.body,
            };
            parse(provider, &input).unwrap_or_default()
        };
        let events_per_pass: usize = cases.iter().map(|c| input(c).len()).sum();
        // Events/s including enriching and encoding each event as the stage does.
        let mut parse_and_encode = |case: &Case| {
            let mut events = input(case);
            for event in &mut events {
                enricher.enrich(event);
                std::hint::black_box(encoder.encode(event));
            }
            events.len()
        };
        // Parsing alone, to show where the time goes.
        let mut parse_only = |case: &Case| input(case).len();
        // The same bodies' events/s if the only work were serde_json parsing them.
        let mut json_only = |case: &Case| {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&case.body).ok());
            1
        };
        let (mut full, mut parsed, mut bodies_per_s) = (0f64, 0f64, 0f64);
        for _ in 0..ROUNDS {
            full = full.max(rate(&cases, RUN_FOR / ROUNDS, &mut parse_and_encode));
            parsed = parsed.max(rate(&cases, RUN_FOR / ROUNDS, &mut parse_only));
            bodies_per_s = bodies_per_s.max(rate(&cases, RUN_FOR / ROUNDS, &mut json_only));
        }
        let json_events_per_s = bodies_per_s * events_per_pass as f64 / cases.len() as f64;
        println!(
            "{:<11} {:>8} {:>16.0} {:>14.0} {:>14.0} {:>6.2}x",
            provider.as_str(),
            events_per_pass,
            full,
            parsed,
            json_events_per_s,
            json_events_per_s / full
        );
    }
    println!("(form-encoded bodies — mandrill, mailgun legacy — are not JSON: their json-only figure is a fast failure)");
}
