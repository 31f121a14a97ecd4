//! The table-driven tests: every `tests/cases/*.toml` holds rules, events and the expected
//! decisions; this one test runs them all and reports every mismatch with its case name.
//!
//! A case's state is given by name (counts per counter name, a score, segments, whether the
//! recipient is suppressed); the harness answers the engine's own plan from it, so each case
//! also exercises plan → fetch → evaluate → claim → decide as the stage will.

mod support;

use std::path::Path;

use mailpipe_rules_core::{load, ClaimResult};
use support::{answer_plan, CaseFile};

#[test]
fn every_case_file_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let (mut failures, mut ran) = (Vec::new(), 0);
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let file: CaseFile = toml::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = match &file.rules_file {
            Some(relative) => {
                std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative))
                    .unwrap()
            }
            None => file.rules.clone().unwrap_or_default(),
        };
        let rules =
            load(&text).unwrap_or_else(|errors| panic!("{name}: rules do not load: {errors:#?}"));
        for case in &file.case {
            ran += 1;
            let label = format!("{name} / {}", case.name);
            let event = case.event.to_event();
            let plan = rules.plan(&event);
            let state = answer_plan(&plan, &case.state);
            let evaluation = rules.evaluate(&event, &state);
            let matched: Vec<&str> = evaluation
                .rules
                .iter()
                .filter(|r| r.matched())
                .map(|r| r.rule_id.as_str())
                .collect();
            if matched != case.matched {
                failures.push(format!(
                    "{label}: matched {matched:?}, want {:?}",
                    case.matched
                ));
            }
            if let Some(want) = &case.increments {
                let got: Vec<&str> = plan
                    .increments
                    .iter()
                    .map(|i| i.key.counter.as_str())
                    .collect();
                if &got != want {
                    failures.push(format!("{label}: increments {got:?}, want {want:?}"));
                }
            }
            if let Some(want) = case.lookups {
                if plan.lookups.len() != want {
                    failures.push(format!(
                        "{label}: {} lookups, want {want}: {:?}",
                        plan.lookups.len(),
                        plan.lookups
                    ));
                }
            }
            let explanation = rules.explain(&event, &state);
            for expect in &case.rule {
                let Some(outcome) = explanation.rules.iter().find(|r| r.rule_id == expect.id)
                else {
                    failures.push(format!("{label}: no outcome for rule {}", expect.id));
                    continue;
                };
                let claim = expect.claim.as_deref().map(|c| match c {
                    "granted" => ClaimResult::Granted,
                    "cooled_down" => ClaimResult::CooledDown,
                    _ => ClaimResult::Limited,
                });
                failures.extend(support::check_rule(&label, outcome, expect, claim));
            }
        }
    }
    assert!(ran >= 40, "only {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
