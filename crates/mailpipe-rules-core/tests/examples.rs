//! The README's worked examples (`tests/fixtures/readme_examples.toml`) load, and do what
//! the README says: the delayed, guarded re-engagement; the bounce-rate alert; the dry-run
//! soft-bounce suppression; the complaint notification. Also `explain`'s output.

mod support;

use mailpipe_model::EmailEvent;
use mailpipe_rules_core::{
    load, Answer, ClaimResult, Decision, DueAction, Lookup, Pending, RuleSet, StateSnapshot,
};
use support::{answer_plan, EventSpec, StateSpec};

fn examples() -> RuleSet {
    let text = include_str!("fixtures/readme_examples.toml");
    load(text).unwrap_or_else(|errors| panic!("README examples do not load: {errors:#?}"))
}

fn event(toml_spec: &str) -> EmailEvent {
    toml::from_str::<EventSpec>(toml_spec).unwrap().to_event()
}

#[test]
fn all_four_load_in_priority_order() {
    let ids: Vec<String> = examples().rules().into_iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "soft-bounces-dry-run",
            "campaign-bounce-spike",
            "complaint-to-chat",
            "re-engage-openers"
        ]
    );
}

#[test]
fn re_engage_openers_who_did_not_click_within_48h() {
    let rules = examples();
    let open = event("event_id = 'o-1'\nevent_type = 'opened'\ncampaign_id = 'spring-sale'");
    let plan = rules.plan(&open);
    let evaluation = rules.evaluate(&open, &answer_plan(&plan, &StateSpec::default()));
    let outcome = evaluation
        .rules
        .iter()
        .find(|r| r.rule_id == "re-engage-openers")
        .unwrap();
    let Some(Pending::Claim { claim }) = &outcome.pending else {
        panic!("{outcome:#?}")
    };
    assert_eq!(claim.cooldown.as_ref().unwrap().value, "ann@example.org");
    let action = &outcome.actions[0];
    assert_eq!((action.delay_ms, action.guarded), (48 * 3_600_000, true));
    assert_eq!(action.due_at_ms, open.occurred_at + 48 * 3_600_000);
    assert_eq!(
        outcome.decide(Some(ClaimResult::Granted))[0].1,
        Decision::Executed
    );

    // 48 h later the stage brings the action back and checks the guard.
    let due = DueAction {
        rule_id: outcome.rule_id.clone(),
        rule_version: outcome.rule_version.clone(),
        action_index: 0,
        due_at_ms: action.due_at_ms,
        event: open.clone(),
    };
    let lookups = rules.guard_lookups(&due);
    let [Lookup::Count {
        key,
        from_ms,
        until_ms,
    }, Lookup::Suppressed { recipient }] = &lookups[..]
    else {
        panic!("{lookups:?}")
    };
    assert_eq!(Some(recipient), open.recipient.as_ref());
    assert_eq!(
        (key.counter.as_str(), *from_ms, *until_ms),
        ("clicked/recipient", open.occurred_at, due.due_at_ms)
    );
    let state = |n, suppressed| -> StateSnapshot {
        lookups
            .iter()
            .map(|l| match l {
                Lookup::Suppressed { .. } => (l.clone(), Answer::Flag(suppressed)),
                _ => (l.clone(), Answer::Count(n)),
            })
            .collect()
    };
    let clicks = |n| state(n, false);
    assert!(rules.check_guard(&due, &clicks(0)).run);
    // Suppressed meanwhile (a complaint after the open): the nudge is not sent.
    let suppressed = rules.check_guard(&due, &state(0, true));
    assert!(!suppressed.run && suppressed.suppressed, "{suppressed:?}");
    let clicked = rules.check_guard(&due, &clicks(1));
    assert!(!clicked.run);
    assert!(
        clicked.reason.contains("1 clicked/recipient within 2d"),
        "{}",
        clicked.reason
    );

    // An edited rule drops what the old version scheduled.
    let stale = DueAction {
        rule_version: "old".into(),
        ..due
    };
    let verdict = rules.check_guard(&stale, &clicks(0));
    assert!(
        !verdict.run && verdict.reason.contains("changed"),
        "{verdict:?}"
    );
}

#[test]
fn campaign_bounce_spike_alerts_once_per_cooldown() {
    let rules = examples();
    let bounce =
        event("event_type = 'bounced'\nbounce_class = 'hard'\ncampaign_id = 'c9'\nsource = 'eu'");
    let plan = rules.plan(&bounce);
    let counters: Vec<&str> = plan
        .increments
        .iter()
        .map(|i| i.key.counter.as_str())
        .collect();
    assert_eq!(counters, ["bounced/campaign"]);
    let spec = |bounced, delivered| StateSpec {
        counts: [
            ("bounced/campaign".to_string(), bounced),
            ("delivered/campaign".to_string(), delivered),
        ]
        .into(),
        ..StateSpec::default()
    };
    let outcome = |bounced, delivered| {
        let evaluation = rules.evaluate(&bounce, &answer_plan(&plan, &spec(bounced, delivered)));
        evaluation
            .rules
            .into_iter()
            .find(|r| r.rule_id == "campaign-bounce-spike")
            .unwrap()
    };
    assert!(!outcome(30, 600).matched(), "5% is not above 5%");
    let spike = outcome(31, 600);
    assert!(spike.matched());
    let body = serde_json::to_value(spike.actions[0].params.as_ref().unwrap()).unwrap();
    assert_eq!(body["headers"]["X-Campaign"], "c9");
    assert_eq!(
        body["body"],
        r#"{"alert": "bounce rate spike", "campaign": "c9", "source": "eu"}"#
    );
    assert_eq!(
        spike.decide(Some(ClaimResult::CooledDown))[0].1,
        Decision::CooledDown
    );
    assert!(!outcome(100, 499).matched(), "too few delivered to judge");
}

#[test]
fn soft_bounces_in_dry_run_and_complaints_to_chat() {
    let rules = examples();
    let soft = event("event_type = 'deferred'\nbounce_class = 'soft'");
    let spec = StateSpec {
        counts: [("bounced+deferred:soft/recipient".to_string(), 2)].into(),
        ..StateSpec::default()
    };
    let evaluation = rules.evaluate(&soft, &answer_plan(&rules.plan(&soft), &spec));
    let dry = &evaluation.rules[0];
    assert_eq!(dry.rule_id, "soft-bounces-dry-run");
    assert_eq!(dry.decide(None)[0].1, Decision::DryRun);

    let complaint = event("event_type = 'complained'\nprovider = 'mailgun'");
    let evaluation = rules.evaluate(
        &complaint,
        &answer_plan(&rules.plan(&complaint), &StateSpec::default()),
    );
    let chat = evaluation.rules.iter().find(|r| r.matched()).unwrap();
    assert_eq!(chat.rule_id, "complaint-to-chat");
    let Some(Pending::Claim { claim }) = &chat.pending else {
        panic!()
    };
    assert_eq!(
        (claim.limit.unwrap().count, claim.cooldown.is_none()),
        (20, true)
    );
    let params = serde_json::to_value(chat.actions[0].params.as_ref().unwrap()).unwrap();
    assert_eq!(
        params["body"],
        r#"{"text": "Complaint from ann@example.org on campaign none (mailgun/main)"}"#
    );
}

#[test]
fn explain_shows_every_rule_and_what_decided() {
    let rules = examples();
    let open = event("event_type = 'opened'\ncampaign_id = 'other'");
    let explanation = rules.explain(&open, &StateSnapshot::new());
    assert_eq!(explanation.rules.len(), 4);
    let reengage = explanation
        .rules
        .iter()
        .find(|r| r.rule_id == "re-engage-openers")
        .unwrap();
    let decided = reengage.when.as_ref().unwrap().decided_by.as_ref().unwrap();
    assert_eq!((decided.condition, decided.passed), ("campaign_ids", false));
    assert_eq!(
        decided.detail,
        "campaign_ids is other (want one of spring-sale, autumn-sale)"
    );
    let text = explanation.to_text();
    assert!(text.contains("rule re-engage-openers"), "{text}");
    assert!(text.contains("[fail] campaign_ids: campaign_ids is other (want one of spring-sale, autumn-sale) <- decided"), "{text}");
    let json = serde_json::to_value(&explanation).unwrap();
    assert_eq!(json["rules"][3]["rule_id"], "re-engage-openers");
    assert_eq!(json["rules"][0]["when"]["matched"], false);
}
