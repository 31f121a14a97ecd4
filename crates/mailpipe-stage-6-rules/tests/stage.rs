//! The rules stage against the real broker, registry and Redis, run in process: the
//! default rules turn a stream of events into exactly the expected `mail.actions` and
//! `mail.suppressions` records (an undecodable record into a dead letter), and a
//! threshold over a recipient domain is exact across 4 partitions and 2 replicas: the
//! event whose count comes last sees them all, and the cooldown lets exactly one execute;
//! a rate rule fires once per cooldown and a limit lets exactly its count execute, both
//! across 4 partitions and 2 replicas.
//! Delayed actions survive a restart: scheduled by one instance that stops before they are
//! due, they fire once after their delay in the next.

use std::path::PathBuf;
use std::time::Duration;

use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{BounceClass, EmailEvent, EventType};
use mailpipe_settings::Settings;
use mailpipe_test_support::{consume_exactly, create_topic, dev_settings, unique_name};

mod common;
use common::{event, HOUR, T0};
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

const DOMAIN_RULE: &str = r#"
[[rule]]
id = "domain-bounce-storm"
priority = 5
respect_suppression = false
[rule.when]
event_types = ["bounced"]
threshold = { events = ["bounced"], per = "domain", within = "1h", at_least = 40 }
[rule.cooldown]
duration = "1h"
per = "domain"
[[rule.then]]
action = "segment"
segment = "storm-domains"
"#;

const DELAYED_RULE: &str = r#"
[[rule]]
id = "later"
priority = 1
[rule.when]
event_types = ["opened"]
[[rule.then]]
action = "segment"
segment = "opened-a-while-ago"
delay = "8s"
"#;

struct Setup {
    settings: Settings,
    names: TopicNames,
    _dir: PathBuf,
}

async fn setup(name: &str, extra_rules: &str) -> Setup {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name(name));
    settings.rules.redis_prefix = format!("{}:", unique_name(name));
    let dir = std::env::temp_dir().join(unique_name(name));
    std::fs::create_dir_all(&dir).unwrap();
    let defaults = include_str!("../../../config/rules.toml");
    let file = dir.join("rules.toml");
    std::fs::write(&file, format!("{defaults}\n{extra_rules}")).unwrap();
    settings.rules.file = file;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    create_topic(&names.name(Topic::EventsUnique), 4).await;
    create_topic(&names.name(Topic::Actions), 2).await;
    create_topic(&names.name(Topic::Suppressions), 1).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    Setup {
        settings,
        names,
        _dir: dir,
    }
}

impl Setup {
    async fn produce(&self, events: &[EmailEvent], garbage: usize) {
        let topic = self.names.name(Topic::EventsUnique);
        let codec = AvroCodec::new(&self.settings.schema_registry.url).unwrap();
        let schema = codec
            .register(&TopicSchema::new(&topic, EMAIL_EVENT_SCHEMA).unwrap())
            .await
            .unwrap();
        let producer = mailpipe_kafka::create_producer(&self.settings.kafka).unwrap();
        for e in events {
            let payload = schema.encode(e, 512).unwrap();
            let key = e.recipient.clone().unwrap_or_default();
            let record = FutureRecord::to(&topic)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
        for _ in 0..garbage {
            let record = FutureRecord::to(&topic).key("x").payload("not avro");
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }

    /// Runs one replica of the stage (its own transactional id) until `shutdown`.
    fn replica(
        &self,
        instance: &str,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let mut settings = self.settings.clone();
        settings.kafka.instance_id = instance.to_string();
        tokio::spawn(mailpipe_stage_6_rules::run(settings, shutdown.clone()))
    }

    async fn decoded<T: for<'de> Deserialize<'de>>(&self, topic: Topic, n: usize) -> Vec<T> {
        let codec = AvroCodec::new(&self.settings.schema_registry.url).unwrap();
        let mut out = Vec::new();
        for (_, value) in consume_exactly(&self.names.name(topic), n).await {
            out.push(codec.decode(&value).await.unwrap());
        }
        out
    }
}

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    rule_id: String,
    decision: String,
    outcome: String,
    recipient: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Suppression {
    recipient: String,
    suppressed: bool,
    origin: String,
}

// The stage runs in this test's runtime: several threads, so the test's own waiting never
// starves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_rules_write_exactly_the_expected_actions_and_suppressions() {
    let setup = setup("rules-stage", "").await;
    let soft = Some(BounceClass::Soft);
    let events = vec![
        event(
            1,
            "hard@x.example",
            EventType::Bounced,
            Some(BounceClass::Hard),
            T0,
        ),
        event(2, "soft@x.example", EventType::Bounced, soft, T0),
        event(3, "angry@x.example", EventType::Complained, None, T0),
        event(4, "soft@x.example", EventType::Bounced, soft, T0 + HOUR),
        event(5, "fine@x.example", EventType::Delivered, None, T0),
        event(6, "soft@x.example", EventType::Bounced, soft, T0 + 2 * HOUR),
        event(7, "gone@x.example", EventType::Unsubscribed, None, T0),
    ];
    setup.produce(&events, 1).await;
    let shutdown = CancellationToken::new();
    let stage = setup.replica("a", &shutdown);

    let mut actions: Vec<Action> = setup.decoded(Topic::Actions, 4).await;
    actions.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
    let got: Vec<(&str, &str, &str, Option<&str>)> = actions
        .iter()
        .map(|a| {
            (
                a.rule_id.as_str(),
                a.decision.as_str(),
                a.outcome.as_str(),
                a.recipient.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "suppress-complaint",
                "executed",
                "applied",
                Some("angry@x.example")
            ),
            (
                "suppress-hard-bounce",
                "executed",
                "applied",
                Some("hard@x.example")
            ),
            (
                "suppress-repeated-soft-bounces",
                "executed",
                "applied",
                Some("soft@x.example")
            ),
            (
                "suppress-unsubscribe",
                "executed",
                "applied",
                Some("gone@x.example")
            ),
        ]
    );
    let mut suppressions: Vec<Suppression> = setup.decoded(Topic::Suppressions, 4).await;
    suppressions.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    let got: Vec<(&str, bool, &str)> = suppressions
        .iter()
        .map(|s| (s.recipient.as_str(), s.suppressed, s.origin.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("angry@x.example", true, "rule:suppress-complaint"),
            ("gone@x.example", true, "rule:suppress-unsubscribe"),
            ("hard@x.example", true, "rule:suppress-hard-bounce"),
            (
                "soft@x.example",
                true,
                "rule:suppress-repeated-soft-bounces"
            ),
        ]
    );
    assert_eq!(
        consume_exactly(&setup.names.name(Topic::Dlq), 1)
            .await
            .len(),
        1,
        "the undecodable record"
    );
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_domain_threshold_is_exact_across_four_partitions_and_two_replicas() {
    let setup = setup("rules-replicas", DOMAIN_RULE).await;
    let shutdown = CancellationToken::new();
    let replicas = [setup.replica("a", &shutdown), setup.replica("b", &shutdown)];
    // 40 bounces of 40 recipients of one domain (so over every partition) at one time, so
    // every event's window holds all 40 and the count made after the last increment sees
    // them all (with distinct times only the latest event's window could, and it may be
    // counted before the others arrive); classless so the default rules ignore them.
    let events: Vec<EmailEvent> = (0..40)
        .map(|i| {
            event(
                100 + i,
                &format!("u{i}@storm.example"),
                EventType::Bounced,
                None,
                T0,
            )
        })
        .collect();
    setup.produce(&events, 0).await;
    // Exactly one record is executed; the others that saw the full count are cooled down.
    let topic = setup.names.name(Topic::Actions);
    for _ in 0..30 {
        if record_count(&topic).await > 0 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = consume_all(&setup, Topic::Actions).await;
    assert!(
        all.iter().all(|a| a.rule_id == "domain-bounce-storm"),
        "{all:?}"
    );
    let executed = all.iter().filter(|a| a.decision == "executed").count();
    assert_eq!(executed, 1, "{all:?}");
    assert!(
        all.iter()
            .all(|a| a.decision == "executed" || a.decision == "cooled_down"),
        "{all:?}"
    );
    shutdown.cancel();
    for replica in replicas {
        replica.await.unwrap().unwrap();
    }
}

/// Records on `topic` now. The count blocks (a polling consumer): off the runtime's threads,
/// which run the stage.
async fn record_count(topic: &str) -> usize {
    let topic = topic.to_string();
    let count =
        tokio::task::spawn_blocking(move || mailpipe_test_support::topic_record_count(&topic));
    usize::try_from(count.await.unwrap()).unwrap_or(0)
}

/// Every record on `topic` now (read until the topic is quiet).
async fn consume_all(setup: &Setup, topic: Topic) -> Vec<Action> {
    let total = record_count(&setup.names.name(topic)).await;
    setup.decoded(topic, total).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delayed_actions_fire_after_their_delay_across_a_restart_of_the_stage() {
    let setup = setup("rules-restart", DELAYED_RULE).await;
    let topic = setup.names.name(Topic::Actions);
    // A delay counts from the event's time: these happen now, so they are due in 8 s.
    let now = std::time::Instant::now();
    let events: Vec<EmailEvent> = (0..20)
        .map(|i| {
            event(
                200 + i,
                &format!("o{i}@later.example"),
                EventType::Opened,
                None,
                mailpipe_stage::now_ms(),
            )
        })
        .collect();
    // The first instance decides (20 `scheduled` records) and stops before any is due.
    let shutdown = CancellationToken::new();
    let first = setup.replica("a", &shutdown);
    setup.produce(&events, 0).await;
    while record_count(&topic).await < 20 && now.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    first.await.unwrap().unwrap();
    assert!(
        now.elapsed() < Duration::from_secs(7),
        "the first instance must stop before the actions are due (took {:?})",
        now.elapsed()
    );
    let scheduled = consume_all(&setup, Topic::Actions).await;
    assert_eq!(scheduled.len(), 20, "{scheduled:?}");
    assert!(scheduled.iter().all(|a| a.outcome == "scheduled"));

    // Nothing runs while no instance does; the next one fires each action once.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(now.elapsed())).await;
    assert_eq!(record_count(&topic).await, 20);
    let shutdown = CancellationToken::new();
    let second = setup.replica("b", &shutdown);
    let restarted = std::time::Instant::now();
    while record_count(&topic).await < 40 && restarted.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Longer than a scheduler round: a second firing would show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    second.await.unwrap().unwrap();
    let all = consume_all(&setup, Topic::Actions).await;
    let applied: Vec<&Action> = all.iter().filter(|a| a.outcome == "applied").collect();
    assert_eq!(applied.len(), 20, "{all:?}");
    assert!(applied.iter().all(|a| a.decision == "executed"));
    let mut fired: Vec<&str> = applied.iter().map(|a| a.action_id.as_str()).collect();
    let mut decided: Vec<&str> = scheduled.iter().map(|a| a.action_id.as_str()).collect();
    fired.sort_unstable();
    decided.sort_unstable();
    assert_eq!(
        fired, decided,
        "each scheduled action fired once, under its own id"
    );
}

const RATE_AND_LIMIT_RULES: &str = r#"
[[rule]]
id = "campaign-complaint-rate"
priority = 5
respect_suppression = false
[rule.when]
event_types = ["complained"]
rate = { numerator = ["complained"], denominator = ["delivered"], per = "campaign", within = "1h", above_percent = 5.0, min_denominator = 50 }
[rule.cooldown]
duration = "1h"
per = "campaign"
[[rule.then]]
action = "segment"
segment = "complaint-storm-campaigns"

[[rule]]
id = "limited-opens"
priority = 4
respect_suppression = false
[rule.when]
event_types = ["opened"]
[rule.limit]
count = 7
window = "1h"
[[rule.then]]
action = "score"
add = 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_and_limit_rules_are_exact_across_four_partitions_and_two_replicas() {
    let setup = setup("rules-rate-limit", RATE_AND_LIMIT_RULES).await;
    let shutdown = CancellationToken::new();
    let replicas = [setup.replica("a", &shutdown), setup.replica("b", &shutdown)];
    let in_campaign = |mut e: EmailEvent| {
        e.campaign_id = Some("spring".into());
        e
    };
    // 100 deliveries of one campaign to 100 recipients (over every partition), processed
    // first: the rate's denominator.
    let delivered: Vec<EmailEvent> = (0..100)
        .map(|i| {
            in_campaign(event(
                300 + i,
                &format!("d{i}@rate.example"),
                EventType::Delivered,
                None,
                T0,
            ))
        })
        .collect();
    setup.produce(&delivered, 0).await;
    let group = mailpipe_stage::Stage::Rules.group_id(&setup.settings);
    let input = setup.names.name(Topic::EventsUnique);
    let started = std::time::Instant::now();
    loop {
        let (group, input) = (group.clone(), input.clone());
        let done = tokio::task::spawn_blocking(move || {
            mailpipe_test_support::committed_total(&group, &input, 4)
        })
        .await
        .unwrap();
        if done >= 100 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then 10 complaints (10 % > 5 % once enough are counted) and 20 opens at once.
    let mut burst: Vec<EmailEvent> = (0..10)
        .map(|i| {
            in_campaign(event(
                500 + i,
                &format!("d{i}@rate.example"),
                EventType::Complained,
                None,
                T0,
            ))
        })
        .collect();
    burst.extend((0..20).map(|i| {
        event(
            600 + i,
            &format!("o{i}@limit.example"),
            EventType::Opened,
            None,
            T0,
        )
    }));
    setup.produce(&burst, 0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = consume_all(&setup, Topic::Actions).await;
    let of = |rule: &str, decision: &str| {
        all.iter()
            .filter(|a| a.rule_id == rule && a.decision == decision)
            .count()
    };
    // The rate crossed 5 %: exactly one alert executed, whichever replica saw it first;
    // the complaints that also saw it were cooled down.
    assert_eq!(of("campaign-complaint-rate", "executed"), 1, "{all:?}");
    let rate_records = all
        .iter()
        .filter(|a| a.rule_id == "campaign-complaint-rate")
        .count();
    assert_eq!(
        rate_records,
        1 + of("campaign-complaint-rate", "cooled_down"),
        "{all:?}"
    );
    // 7 of the 20 opens executed within the hour's limit, 13 limited: exact across replicas.
    assert_eq!(of("limited-opens", "executed"), 7, "{all:?}");
    assert_eq!(of("limited-opens", "limited"), 13, "{all:?}");
    shutdown.cancel();
    for replica in replicas {
        replica.await.unwrap().unwrap();
    }
}

/// A correction written by `mailpipe replay` (the `mailpipe-correction` header) is passed
/// over: automation reacts to events as they happen, never to a re-derived old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrections_from_a_replay_are_not_evaluated() {
    let setup = setup("rules-corrections", "").await;
    let topic = setup.names.name(Topic::EventsUnique);
    let codec = AvroCodec::new(&setup.settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&topic, EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = mailpipe_kafka::create_producer(&setup.settings.kafka).unwrap();
    let hard = Some(BounceClass::Hard);
    let corrected = event(1, "old@x.example", EventType::Bounced, hard, T0);
    let live = event(2, "new@x.example", EventType::Bounced, hard, T0);
    for (e, correction) in [(&corrected, true), (&live, false)] {
        let payload = schema.encode(e, 512).unwrap();
        let mut record = FutureRecord::to(&topic)
            .key(e.recipient.as_deref().unwrap_or(""))
            .payload(payload.as_slice());
        if correction {
            record = record.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: mailpipe_kafka::CORRECTION_HEADER,
                    value: Some("1764690000000"),
                },
            ));
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let stage = setup.replica("a", &shutdown);
    // consume_exactly checks for 2 s that no second action arrives.
    let actions: Vec<Action> = setup.decoded(Topic::Actions, 1).await;
    assert_eq!(actions[0].recipient.as_deref(), Some("new@x.example"));
    shutdown.cancel();
    stage.await.unwrap().unwrap();
}
