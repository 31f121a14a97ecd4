//! A batch of events through the default rules (`config/rules.toml`) and the real local
//! Redis: what each event decides, that a redelivered batch decides the same and changes
//! nothing more, and that cooldowns and limits hold when two replicas race.

use mailpipe_model::{BounceClass, EmailEvent, EventType};
use mailpipe_rules_core::{load, RuleSet};
use mailpipe_stage_6_rules::process::{process, EventOutputs};
use mailpipe_stage_6_rules::Op;
use mailpipe_test_support::unique_name;

mod common;
use common::{config, event, state, HOUR};

fn default_rules() -> RuleSet {
    let text = include_str!("../../../config/rules.toml");
    load(text).expect("the default rules load")
}

fn decisions(outputs: &[EventOutputs]) -> Vec<Vec<(String, &'static str, &'static str)>> {
    outputs
        .iter()
        .map(|o| {
            o.actions
                .iter()
                .map(|a| (a.rule_id.clone(), a.decision.as_str(), a.outcome.as_str()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_default_rules_suppress_hard_bounces_complaints_and_the_third_soft_bounce() {
    let prefix = format!("{}:", unique_name("rules-process"));
    let mut state = state(&prefix).await;
    let rules = default_rules();
    let t0 = 1_717_000_000_000;
    let soft = Some(BounceClass::Soft);
    let events = vec![
        event(
            1,
            "hard@x.example",
            EventType::Bounced,
            Some(BounceClass::Hard),
            t0,
        ),
        event(2, "angry@x.example", EventType::Complained, None, t0),
        event(3, "soft@x.example", EventType::Bounced, soft, t0),
        event(4, "soft@x.example", EventType::Bounced, soft, t0 + HOUR),
        event(5, "happy@x.example", EventType::Delivered, None, t0),
    ];
    let first = process(&rules, &mut state, &config(), &events, t0)
        .await
        .unwrap();
    // The third soft bounce comes 71 h after the first: within 72 h.
    let third = vec![event(
        6,
        "soft@x.example",
        EventType::Bounced,
        soft,
        t0 + 71 * HOUR,
    )];
    let later = process(&rules, &mut state, &config(), &third, t0)
        .await
        .unwrap();

    let executed = |rule: &str| vec![(rule.to_string(), "executed", "applied")];
    assert_eq!(
        decisions(&first),
        vec![
            executed("suppress-hard-bounce"),
            executed("suppress-complaint"),
            vec![],
            vec![],
            vec![],
        ]
    );
    assert_eq!(
        decisions(&later),
        vec![executed("suppress-repeated-soft-bounces")]
    );
    let suppressed: Vec<(&str, bool)> = first
        .iter()
        .chain(&later)
        .flat_map(|o| &o.suppressions)
        .map(|s| (s.recipient.as_str(), s.suppressed))
        .collect();
    assert_eq!(
        suppressed,
        [
            ("hard@x.example", true),
            ("angry@x.example", true),
            ("soft@x.example", true)
        ]
    );
    let lookup = state
        .apply(&[Op::Suppressed {
            scope: "global".into(),
            recipient: "soft@x.example".into(),
        }])
        .await
        .unwrap();
    assert!(
        format!("{lookup:?}").contains("suppress-repeated-soft-bounces"),
        "{lookup:?}"
    );

    // A redelivery of the whole first batch and the third bounce decides exactly the same.
    let again = process(&rules, &mut state, &config(), &events, t0)
        .await
        .unwrap();
    assert_eq!(again, first);
    let again = process(&rules, &mut state, &config(), &third, t0)
        .await
        .unwrap();
    assert_eq!(again, later);
}

#[tokio::test]
async fn soft_bounces_spread_over_more_than_72_hours_do_not_suppress() {
    let prefix = format!("{}:", unique_name("rules-process"));
    let mut state = state(&prefix).await;
    let rules = default_rules();
    let t0 = 1_717_000_000_000;
    let soft = Some(BounceClass::Soft);
    let events: Vec<EmailEvent> = (0..3)
        .map(|i| {
            event(
                10 + i,
                "slow@x.example",
                EventType::Bounced,
                soft,
                t0 + (i as i64) * 40 * HOUR,
            )
        })
        .collect();
    let outputs = process(&rules, &mut state, &config(), &events, t0)
        .await
        .unwrap();
    assert!(outputs.iter().all(|o| o.actions.is_empty()), "{outputs:?}");
}

const LIMITED: &str = r#"
[[rule]]
id = "notify-complaint"
description = "tell the team, at most once per recipient per day and 3 times per hour"
priority = 10
cooldown = { per = "recipient", duration = "24h" }
limit = { count = 3, window = "1h" }
[rule.when]
event_types = ["complained"]
[[rule.then]]
action = "segment"
segment = "complainers"
"#;

#[tokio::test]
async fn cooldowns_and_limits_hold_when_two_replicas_race() {
    let rules = std::sync::Arc::new(load(LIMITED).expect("the test rule loads"));
    let prefix = format!("{}:", unique_name("rules-race"));
    let t0 = 1_717_000_000_000;
    // 20 complaints, 2 per recipient, spread over both replicas.
    let events: Vec<EmailEvent> = (0..20)
        .map(|i| {
            event(
                100 + i,
                &format!("r{}@x.example", i % 10),
                EventType::Complained,
                None,
                t0 + i as i64,
            )
        })
        .collect();
    let (a, b): (Vec<_>, Vec<_>) = events
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let mut tasks = Vec::new();
    for half in [a, b] {
        let (rules, prefix) = (rules.clone(), prefix.clone());
        let half: Vec<EmailEvent> = half.into_iter().map(|(_, e)| e).collect();
        tasks.push(tokio::spawn(async move {
            let mut state = state(&prefix).await;
            let mut outputs = Vec::new();
            for event in half {
                outputs.extend(
                    process(&rules, &mut state, &config(), &[event], t0)
                        .await
                        .unwrap(),
                );
            }
            outputs
        }));
    }
    let mut executed = 0;
    let mut decisions = std::collections::BTreeMap::new();
    for task in tasks {
        for output in task.await.unwrap() {
            for action in output.actions {
                *decisions.entry(action.decision.as_str()).or_insert(0) += 1;
                executed += usize::from(action.decision.as_str() == "executed");
            }
        }
    }
    assert_eq!(executed, 3, "the limit: 3 per hour ({decisions:?})");
    assert_eq!(decisions.values().sum::<usize>(), 20, "{decisions:?}");
}

const PUBLISH: &str = r#"
[[rule]]
id = "tell-crm"
priority = 1
[rule.when]
event_types = ["clicked"]
[[rule.then]]
action = "publish"
topic = "crm.events"
key = "{{ recipient }}"
value = "{\"clicked\": \"{{ recipient }}\"}"
[[rule.then]]
action = "publish"
topic = "mail.raw"
value = "{{ event_id }}"
"#;

#[tokio::test]
async fn publish_writes_only_to_the_allowed_topics() {
    let rules = load(PUBLISH).expect("the test rule loads");
    let prefix = format!("{}:", unique_name("rules-publish"));
    let mut state = state(&prefix).await;
    let click = event(
        200,
        "c@x.example",
        EventType::Clicked,
        None,
        1_717_000_000_000,
    );
    let out = process(&rules, &mut state, &config(), &[click], 0)
        .await
        .unwrap();
    let publishes: Vec<(&str, Option<&str>, &str)> = out[0]
        .publishes
        .iter()
        .map(|p| (p.topic.as_str(), p.key.as_deref(), p.value.as_str()))
        .collect();
    assert_eq!(
        publishes,
        [(
            "crm.events",
            Some("c@x.example"),
            r#"{"clicked": "c@x.example"}"#
        )]
    );
    let outcomes: Vec<(&str, &str)> = out[0]
        .actions
        .iter()
        .map(|a| (a.outcome.as_str(), a.detail.as_str()))
        .collect();
    assert_eq!(outcomes[0].0, "applied");
    assert_eq!(
        outcomes[1],
        ("skipped", "publish topic not in [rules] publish_topics")
    );
}

const SUPPRESS_THEN_PUBLISH: &str = r#"
[[rule]]
id = "suppress"
priority = 100
[rule.when]
event_types = ["complained"]
[[rule.then]]
action = "suppress"
reason = "complaint"

[[rule]]
id = "tell-crm"
priority = 10
[rule.when]
event_types = ["complained"]
[[rule.then]]
action = "publish"
topic = "crm.events"
value = "{{ recipient }}"
"#;

#[tokio::test]
async fn a_redelivered_event_is_not_held_back_by_the_suppression_it_made_itself() {
    let rules = load(SUPPRESS_THEN_PUBLISH).expect("the test rules load");
    let prefix = format!("{}:", unique_name("rules-own"));
    let mut state = state(&prefix).await;
    let complaint = [event(
        300,
        "own@x.example",
        EventType::Complained,
        None,
        1_717_000_000_000,
    )];
    let first = process(&rules, &mut state, &config(), &complaint, 0)
        .await
        .unwrap();
    let again = process(&rules, &mut state, &config(), &complaint, 0)
        .await
        .unwrap();
    assert_eq!(decisions(&first), decisions(&again));
    assert_eq!(again[0].publishes.len(), 1, "{again:?}");
    // Another event of the same recipient is held back by that suppression.
    let later = [event(
        301,
        "own@x.example",
        EventType::Complained,
        None,
        1_717_000_100_000,
    )];
    let later = process(&rules, &mut state, &config(), &later, 0)
        .await
        .unwrap();
    let held: Vec<&str> = later[0]
        .actions
        .iter()
        .map(|a| a.decision.as_str())
        .collect();
    assert_eq!(held, ["executed", "suppressed_recipient"]);
}
