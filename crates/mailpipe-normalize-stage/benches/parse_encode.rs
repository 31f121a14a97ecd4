//! `make bench`: per provider, events/s of parse + Avro encode (the normalize stage's CPU
//! work per request) on one core, next to only `serde_json`-parsing the same bodies, and
//! their ratio (goal: parse + encode ≤ 3× the bare JSON parse). Reports, never asserts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apache_avro::writer::datum::GenericDatumWriter;
use mailpipe_model::Provider;
use mailpipe_normalize::{parse, ParseInput};

const RUN_FOR: Duration = Duration::from_millis(700);

struct Case {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn cases(provider: Provider) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mailpipe-normalize/tests/fixtures")
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

/// Runs `work` over all cases repeatedly for RUN_FOR; returns units of work per second.
fn rate(cases: &[Case], mut work: impl FnMut(&Case) -> usize) -> f64 {
    let started = Instant::now();
    let mut units = 0usize;
    while started.elapsed() < RUN_FOR {
        for case in cases {
            units += work(case);
        }
    }
    units as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let schema = mailpipe_avro::parse_schema(mailpipe_avro::EMAIL_EVENT_SCHEMA).unwrap();
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    println!(
        "normalize: parse + Avro encode vs bare serde_json parse, one core, {RUN_FOR:?} per figure"
    );
    println!(
        "{:<11} {:>8} {:>16} {:>14} {:>14} {:>7}",
        "provider", "events", "parse+encode/s", "parse-only/s", "json-only/s", "ratio"
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
        // Events/s including encoding each event as the stage does.
        let full = rate(&cases, |case| {
            let events = input(case);
            for event in &events {
                std::hint::black_box(writer.write_ser_to_vec(event).unwrap());
            }
            events.len()
        });
        // Parsing alone, to show where the time goes.
        let parse_only = rate(&cases, |case| input(case).len());
        // The same bodies' events/s if the only work were serde_json parsing them.
        let bodies_per_s = rate(&cases, |case| {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&case.body).ok());
            1
        });
        let json_events_per_s = bodies_per_s * events_per_pass as f64 / cases.len() as f64;
        println!(
            "{:<11} {:>8} {:>16.0} {:>14.0} {:>14.0} {:>6.2}x",
            provider.as_str(),
            events_per_pass,
            full,
            parse_only,
            json_events_per_s,
            json_events_per_s / full
        );
    }
    println!("(form-encoded bodies — mandrill, mailgun legacy — are not JSON: their json-only figure is a fast failure)");
}
