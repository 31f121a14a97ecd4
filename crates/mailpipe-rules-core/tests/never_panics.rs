//! Property test: planning, evaluating, explaining and guard checks never panic, whatever
//! the event (extreme times, odd strings, no recipient, any metadata) and whatever the
//! state answers (missing, of the wrong kind, NaN scores), and are deterministic.

mod support;

use std::collections::BTreeMap;

use mailpipe_model::{BounceClass, EmailEvent, EventType, Geo, Provider, RejectReason};
use mailpipe_rules_core::{load, Answer, ClaimResult, DueAction, RuleSet, StateSnapshot};
use proptest::prelude::*;

/// Every condition kind and action kind, with templates and expressions that touch every
/// field (including arithmetic on times, which must not overflow into a panic).
const RULES: &str = r#"
[[rule]]
id = "everything"
[rule.when]
at_least = 2
event_types = ["bounced", "opened", "clicked", "unknown"]
providers = ["sendgrid", "ses", "generic"]
sources = ["main"]
campaign_ids = ["c"]
tags = ["t"]
metadata = { k = "v" }
bounce_classes = ["soft"]
reject_reasons = ["invalid"]
recipient_matches = ['^a', '(?i)ÉTÉ']
recipient_domain_matches = ['\.org$']
time_window = { zone = "Pacific/Chatham", from = "22:00", to = "06:15", days = ["mon", "sun"] }
expression = "occurred_at + received_at > 0 || size(metadata) > 2 || (recipient != null && recipient.contains('@')) || event_time / 1000 < 0"
in_segment = "s"
score = { at_least = -1.5, below = 100.0 }
threshold = { events = ["bounced", "deferred"], bounce_classes = ["soft"], per = "domain", within = "3d", at_least = 2 }
rate = { numerator = ["complained"], denominator = ["delivered"], per = "source", within = "1h", above_percent = 0.1 }
[rule.cooldown]
duration = "1h"
per = "campaign"
[rule.limit]
count = 5
window = "1d"
[[rule.then]]
action = "suppress"
reason = "{{ provider_event }} {{ mta_response }} {{ geo.country }} {{ occurred_at + 1 }} {{ occurred_at * 1000 }}"
[[rule.then]]
action = "publish"
topic = "x.y"
key = "{{ recipient_domain }}"
value = "{{ metadata | tojson }} {{ tags | join(',') }} {{ raw_event }} {{ metadata.k | default('') }}"
delay = "2w"
[rule.then.guard]
match = "any"
not_in_segment = "s"
threshold = { events = ["clicked"], per = "recipient", within = "366d", at_most = 0 }
[[rule.then]]
action = "webhook"
url = "https://h.example/{{ event_id | urlencode if false else event_id }}"
body = "{{ description }}{{ url }}{{ user_agent }}{{ ip }}{{ reject_reason }}{{ bounce_class }}{{ rule.version }}"
[[rule.then]]
action = "segment"
segment = "{{ campaign_id or 'none' }}"
[[rule.then]]
action = "score"
add = -0.5

[[rule]]
id = "any-stop"
priority = 5
stop = true
[rule.when]
match = "any"
expression = "metadata.k == 'v'"
recipient_matches = ['x{2,5}']
[[rule.then]]
action = "unsuppress"
reason = "{{ metadata.k }}"
"#;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        ".{0,12}",
        "[a-z]{1,4}@[a-z]{1,4}\\.org",
        Just("{{ }}\u{0}\u{202e}".to_string())
    ]
}

fn event() -> impl Strategy<Value = EmailEvent> {
    let times = prop_oneof![
        Just(0i64),
        Just(i64::MIN),
        Just(i64::MAX),
        any::<i64>(),
        1_700_000_000_000i64..1_900_000_000_000
    ];
    let optional = || proptest::option::of(text());
    (
        (
            text(),
            proptest::sample::select(EventType::ALL.to_vec()),
            proptest::sample::select(Provider::ALL.to_vec()),
            text(),
            times.clone(),
            times,
        ),
        (
            optional(),
            optional(),
            optional(),
            proptest::collection::vec(text(), 0..3),
        ),
        (
            proptest::collection::btree_map(text(), text(), 0..3),
            proptest::option::of(proptest::sample::select(RejectReason::ALL.to_vec())),
            proptest::option::of(proptest::sample::select(BounceClass::ALL.to_vec())),
        ),
        (
            optional(),
            optional(),
            proptest::option::of((optional(), optional())),
            text(),
        ),
    )
        .prop_map(
            |(
                (event_id, event_type, provider, source, occurred_at, received_at),
                (recipient, domain, campaign_id, tags),
                (metadata, reject_reason, bounce_class),
                (url, ip, geo, raw_event),
            )| EmailEvent {
                event_id,
                event_type,
                provider_event: event_type.as_str().into(),
                provider,
                source,
                occurred_at,
                received_at,
                recipient,
                recipient_domain: domain,
                message_id: None,
                campaign_id,
                tags,
                metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
                reject_reason,
                bounce_class,
                url,
                user_agent: None,
                ip,
                geo: geo.map(|(country, city)| Geo {
                    country,
                    region: None,
                    city,
                }),
                mta_response: None,
                description: None,
                raw_request_id: String::new(),
                raw_event,
                client_name: None,
                client_os: None,
                device_class: None,
                machine_open: None,
                machine_reason: None,
                geo_source: None,
            },
        )
}

fn answer() -> impl Strategy<Value = Option<Answer>> {
    proptest::option::of(prop_oneof![
        any::<u64>().prop_map(Answer::Count),
        prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY)].prop_map(Answer::Score),
        any::<bool>().prop_map(Answer::Flag),
    ])
}

fn rules() -> &'static RuleSet {
    static RULES_SET: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
    RULES_SET.get_or_init(|| load(RULES).unwrap_or_else(|e| panic!("{e:#?}")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluation_never_panics_and_is_deterministic(event in event(), answers in proptest::collection::vec(answer(), 16)) {
        let rules = rules();
        let plan = rules.plan(&event);
        let state: StateSnapshot = plan
            .lookups
            .iter()
            .zip(answers.iter().cycle())
            .filter_map(|(lookup, answer)| Some((lookup.clone(), (*answer)?)))
            .collect();
        let first = rules.evaluate(&event, &state);
        let second = rules.evaluate(&event, &state);
        prop_assert_eq!(format!("{first:?}"), format!("{second:?}"));
        // The stage's evaluation is the matched rules of this one, unchanged.
        let (open_plan, open) = rules.plan_open(&event);
        prop_assert_eq!(&open_plan, &plan);
        let matched = rules.evaluate_matched(&event, &state, &open);
        let mut want = first.clone();
        want.rules.retain(|r| r.matched());
        prop_assert_eq!(format!("{matched:?}"), format!("{want:?}"));
        for outcome in &first.rules {
            for claim in [None, Some(ClaimResult::Granted), Some(ClaimResult::Limited)] {
                let _ = outcome.decide(claim);
            }
            for action in outcome.actions.iter().filter(|a| a.guarded) {
                let due = DueAction {
                    rule_id: outcome.rule_id.clone(),
                    rule_version: outcome.rule_version.clone(),
                    action_index: action.index,
                    due_at_ms: action.due_at_ms,
                    event: event.clone(),
                };
                let _ = rules.guard_lookups(&due);
                let _ = rules.check_guard(&due, &state);
            }
        }
        let explanation = rules.explain(&event, &state);
        let _ = explanation.to_text();
        prop_assert!(serde_json::to_string(&explanation).is_ok());
    }
}

/// The property test's rules do match and render on an ordinary event, so the property
/// covers actions and guards, not only conditions.
#[test]
fn the_rules_under_test_match_and_render() {
    let event = toml::from_str::<support::EventSpec>(
        "event_type = 'opened'\ncampaign_id = 'c'\nmetadata = { k = 'w' }",
    )
    .unwrap()
    .to_event();
    let rules = rules();
    let state = support::answer_plan(&rules.plan(&event), &support::StateSpec::default());
    let evaluation = rules.evaluate(&event, &state);
    let everything = evaluation
        .rules
        .iter()
        .find(|r| r.rule_id == "everything")
        .unwrap();
    assert!(everything.matched());
    assert_eq!(everything.actions.len(), 5);
    for action in &everything.actions {
        assert!(action.params.is_ok(), "{action:?}");
    }
    assert!(everything.actions[1].guarded);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Loading reports errors, never panics, whatever the text, the expression, the
    /// pattern or the template.
    #[test]
    fn loading_never_panics(
        text in ".{0,200}",
        expression in "[a-z_. ()'\"=<>!&|+*/%\\[\\]{},?:0-9-]{0,40}",
        pattern in ".{0,20}",
        template in "[a-z_ {}%#|.()'\"]{0,40}",
    ) {
        let _ = load(&text);
        let rule = format!(
            "[[rule]]\nid = \"p\"\n[rule.when]\nexpression = {expression:?}\nrecipient_matches = [{pattern:?}]\n[[rule.then]]\naction = \"publish\"\ntopic = \"t\"\nvalue = {template:?}\n"
        );
        let _ = load(&rule);
    }
}
