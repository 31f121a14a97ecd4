//! Delayed actions against the real local Redis: scheduled when decided, fired when due
//! (not before), their guard re-checked at the due time, kept until unscheduled so a crash
//! before their outputs were written fires them again under the same action id.

use mailpipe_model::{EmailEvent, EventType};
use mailpipe_rules_core::load;
use mailpipe_stage_6_rules::process::{fire_due, process};
use mailpipe_stage_6_rules::Op;
use mailpipe_test_support::unique_name;

mod common;
use common::{config, state, HOUR, T0};

fn event(seq: usize, recipient: &str, event_type: EventType, at: i64) -> EmailEvent {
    common::event(seq, recipient, event_type, None, at)
}

const NUDGE: &str = r#"
[[rule]]
id = "nudge"
priority = 1
[rule.when]
event_types = ["opened"]
[[rule.then]]
action = "publish"
delay = "48h"
topic = "marketing.reengage"
value = "{{ recipient }}"
[rule.then.guard]
threshold = { events = ["clicked"], per = "recipient", within = "48h", at_most = 0 }
"#;

#[tokio::test]
async fn a_delayed_action_fires_when_due_unless_its_guard_failed() {
    let rules = load(NUDGE).expect("the test rule loads");
    let prefix = format!("{}:", unique_name("rules-delayed"));
    let mut state = state(&prefix).await;
    let config = config();
    let opens = [
        event(1, "quiet@x.example", EventType::Opened, T0),
        event(2, "clicker@x.example", EventType::Opened, T0),
        event(4, "complainer@x.example", EventType::Opened, T0),
    ];
    let decided = process(&rules, &mut state, &config, &opens, T0)
        .await
        .unwrap();
    let outcomes: Vec<_> = decided
        .iter()
        .map(|o| {
            (
                o.actions[0].decision.as_str(),
                o.actions[0].outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("executed", "scheduled"),
            ("executed", "scheduled"),
            ("executed", "scheduled")
        ]
    );
    assert!(
        decided.iter().all(|o| o.publishes.is_empty()),
        "nothing is published before it is due"
    );
    // The clicker clicks a day later; the click is counted like any event.
    let click = [event(
        3,
        "clicker@x.example",
        EventType::Clicked,
        T0 + 24 * HOUR,
    )];
    process(&rules, &mut state, &config, &click, T0)
        .await
        .unwrap();
    // Another opener is suppressed before the nudge is due (a complaint, say).
    let suppress = Op::Suppress {
        scope: mailpipe_stage_6_rules::process::GLOBAL_SCOPE.to_string(),
        recipient: "complainer@x.example".to_string(),
        record: "{}".to_string(),
    };
    state.apply(&[suppress]).await.unwrap();

    let early = fire_due(&rules, &mut state, &config, T0 + 47 * HOUR, 100)
        .await
        .unwrap();
    assert!(early.is_empty(), "not due before 48 h: {early:?}");

    let due = fire_due(&rules, &mut state, &config, T0 + 48 * HOUR, 100)
        .await
        .unwrap();
    let mut fired: Vec<(String, &str, &str, usize)> = due
        .iter()
        .map(|f| {
            let a = &f.outputs.actions[0];
            (
                a.recipient.clone().unwrap(),
                a.decision.as_str(),
                a.outcome.as_str(),
                f.outputs.publishes.len(),
            )
        })
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            (
                "clicker@x.example".to_string(),
                "guard_failed",
                "skipped",
                0
            ),
            (
                "complainer@x.example".to_string(),
                "suppressed_recipient",
                "skipped",
                0
            ),
            ("quiet@x.example".to_string(), "executed", "applied", 1),
        ]
    );
    // Until unscheduled (outputs written) they come again, under the same ids: a crash
    // between firing and writing repeats the action id, never a new one.
    let again = fire_due(&rules, &mut state, &config, T0 + 49 * HOUR, 100)
        .await
        .unwrap();
    let ids = |f: &[mailpipe_stage_6_rules::process::Fired]| {
        let mut ids: Vec<String> = f.iter().map(|f| f.action_id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&again), ids(&due));
    let unschedule: Vec<Op> = due
        .iter()
        .map(|f| Op::Unschedule {
            id: f.action_id.clone(),
            now_ms: T0 + 49 * HOUR,
        })
        .collect();
    state.apply(&unschedule).await.unwrap();
    let after = fire_due(&rules, &mut state, &config, T0 + 50 * HOUR, 100)
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:?}");

    // A redelivered open schedules nothing new (same id, NX).
    process(&rules, &mut state, &config, &opens, T0)
        .await
        .unwrap();
    let redelivered = fire_due(&rules, &mut state, &config, T0 + 50 * HOUR, 100)
        .await
        .unwrap();
    assert_eq!(
        redelivered.len(),
        0,
        "the schedule keeps an id once: {redelivered:?}"
    );
}
