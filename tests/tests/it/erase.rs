//! `mailpipe erase` against the real stack: after traffic for a recipient (events, rule
//! executions, the suppression list, a rejected body and a dead letter in ClickHouse;
//! counters, score, segment, suppression and a delayed action in Redis; a record on the
//! compacted `mail.suppressions`), no table, no Redis key and no live suppression record
//! holds the address, another recipient's data is untouched, the windows still equal the
//! events, the audit entry names only the hash, and a later lookup still finds them
//! suppressed (by hash).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use mailpipe_avro::records::{DeadLetterRecord, RejectedRecord};
use mailpipe_avro::SUPPRESSION_SCHEMA;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::privacy::recipient_hash;
use mailpipe_model::EventType;
use mailpipe_settings::Settings;
use mailpipe_stage_5_aggregate::actions::ActionRow;
use mailpipe_stage_5_aggregate::problems::{DeadLetterRow, RejectionRow};
use mailpipe_stage_5_aggregate::row::EventRow;
use mailpipe_stage_5_aggregate::windows::{recompute_statements, window_ranges};
use mailpipe_stage_6_rules::handler::connect_state;
use mailpipe_stage_6_rules::records::SuppressionRecord;
use mailpipe_stage_6_rules::{Answer, Op, RulesState};
use mailpipe_test_support::{
    create_topic, dev_config_path, dev_settings, drop_clickhouse_database, kafka_brokers,
    migrate_clickhouse, produce_avro, unique_name, workspace_binary, EventBuilder,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

/// A rule that tells the CRM about complaints, for a later event of the erased recipient.
const NOTIFY_CRM: &str = r#"
[[rule]]
id = "notify-crm"
[rule.when]
event_types = ["complained"]
[[rule.then]]
action = "publish"
topic = "crm.events"
value = "{{ recipient }}"
"#;

const ERASED: &str = "erase-me@x.example";
/// Ends with the erased address: a substring match would take it for the erased one.
const KEPT: &str = "joerase-me@x.example";

fn clickhouse(settings: &Settings) -> clickhouse::Client {
    mailpipe_clickhouse::client(&settings.clickhouse).with_database(&settings.clickhouse.database)
}

/// Whether `text` holds the erased address as a whole token (not inside [`KEPT`]).
fn holds_erased(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.match_indices(ERASED).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + ERASED.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
    })
}

/// The erased address as a whole token, for ClickHouse's `match` (and the kept
/// recipients' `!=`, which ignores the pattern's anchors: see the call sites).
const ERASED_PATTERN: &str = r"(?i)(^|[^a-z0-9._%+-])erase-me@x\.example($|[^a-z0-9.-])";

async fn count(settings: &Settings, sql: &str) -> u64 {
    let bound = if sql.contains("match(") {
        ERASED_PATTERN
    } else {
        ERASED
    };
    clickhouse(settings)
        .query(sql)
        .bind(bound)
        .fetch_one()
        .await
        .unwrap()
}

async fn insert<T: clickhouse::RowOwned + clickhouse::RowWrite>(
    settings: &Settings,
    table: &str,
    rows: &[T],
) {
    let mut insert = clickhouse(settings).insert::<T>(table).await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

fn event(i: usize, recipient: &str, at_s: i64) -> EventRow {
    let t = [EventType::Delivered, EventType::Opened, EventType::Bounced][i % 3];
    let mut row = EventRow::from_event(
        EventBuilder::new(format!("{recipient}-ev-{i}"))
            .event_type(t)
            .recipient(recipient)
            .at(at_s * 1000)
            .mta_response(format!("250 ok for <{}>", recipient.to_uppercase()))
            .build(),
    );
    row.raw_event = format!("{{\"email\":\"{recipient}\"}}");
    row
}

fn action(id: &str, recipient: &str, at_s: i64) -> ActionRow {
    ActionRow {
        action_id: id.into(),
        rule_id: "hard-bounce".into(),
        rule_version: "v1".into(),
        action_index: 0,
        action: "suppress".into(),
        parameter_keys: vec!["recipient".into()],
        parameter_values: vec![recipient.into()],
        decision: "executed".into(),
        outcome: "applied".into(),
        event_id: format!("{id}-ev"),
        event_type: "bounced".into(),
        provider: "sendgrid".into(),
        source: "main".into(),
        recipient: recipient.into(),
        campaign_id: String::new(),
        occurred_at: at_s as u32,
        occurred_at_ms: at_s * 1000,
        decided_at: at_s as u32,
        decided_at_ms: at_s * 1000,
        due_at: at_s as u32,
        due_at_ms: at_s * 1000,
        detail: String::new(),
    }
}

/// Every key under `prefix` with its whole content, as text.
async fn redis_dump(settings: &Settings, prefix: &str) -> BTreeMap<String, String> {
    let client = redis::Client::open(settings.redis.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    // SCAN, not KEYS: a shared development Redis may hold millions of other keys.
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        let content = match kind.as_str() {
            "set" => format!(
                "{:?}",
                redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async::<Vec<String>>(&mut c)
                    .await
                    .unwrap()
            ),
            "hash" => format!(
                "{:?}",
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async::<BTreeMap<String, String>>(&mut c)
                    .await
                    .unwrap()
            ),
            "zset" => format!(
                "{:?}",
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(&mut c)
                    .await
                    .unwrap()
            ),
            "string" => redis::cmd("GET")
                .arg(&key)
                .query_async::<String>(&mut c)
                .await
                .unwrap(),
            other => format!("<{other}>"),
        };
        out.insert(key, content);
    }
    out
}

async fn suppressed(state: &mut RulesState, recipient: &str) -> Option<String> {
    let op = Op::Suppressed {
        scope: "global".into(),
        recipient: recipient.into(),
    };
    match state.apply(&[op]).await.unwrap().remove(0) {
        Answer::Suppression(s) => s,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_recipient_is_nowhere_and_still_suppressed() {
    let name = unique_name("erase");
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{name}.");
    settings.clickhouse.database = name.clone();
    settings.rules.redis_prefix = format!("{name}:rules:");
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let suppressions_topic = names.name(Topic::Suppressions);
    create_topic(&suppressions_topic, 1).await;
    migrate_clickhouse(&settings).await;
    let now = mailpipe_stage::now_ms() / 1000;

    // ClickHouse: 9 events of the erased recipient, 6 of the kept one, and the rest.
    let mut events: Vec<EventRow> = (0..9)
        .map(|i| event(i, ERASED, now - 600 + i as i64 * 30))
        .collect();
    events.extend((0..6).map(|i| event(i, KEPT, now - 600 + i as i64 * 30)));
    insert(&settings, "email_events", &events).await;
    let minutes = events
        .iter()
        .map(|e| e.occurred_at - e.occurred_at % 60)
        .collect();
    for sql in recompute_statements(&settings.clickhouse.database, &window_ranges(&minutes)) {
        mailpipe_clickhouse::client(&settings.clickhouse)
            .query(&sql)
            .execute()
            .await
            .unwrap();
    }
    insert(
        &settings,
        "rule_executions",
        &[
            action("a1", ERASED, now - 500),
            action("a2", KEPT, now - 500),
        ],
    )
    .await;
    let rejected = RejectionRow::from(RejectedRecord {
        request_id: "req-1".into(),
        received_at: now * 1000,
        provider: "mailgun".into(),
        source: "mailgun".into(),
        method: "POST".into(),
        path: "/webhooks/mailgun".into(),
        query: String::new(),
        headers: Vec::new(),
        remote_addr: None,
        body: format!("{{\"recipient\":\"{ERASED}\"}}").into_bytes(),
        rejected_at: now * 1000,
        reason: "bad_signature".into(),
        detail: "test".into(),
    });
    insert(&settings, "rejected_requests", &[rejected]).await;
    let letter = DeadLetterRow::new(
        DeadLetterRecord {
            stage: "normalize".into(),
            reason: "not_json".into(),
            detail: "test".into(),
            failed_at: now * 1000,
            topic: names.name(Topic::Verified),
            partition: 0,
            offset: 1,
            raw_request_id: None,
            provider: None,
            source: None,
            payload: format!("to={ERASED}").into_bytes(),
        },
        &names.name(Topic::Raw),
    );
    insert(&settings, "dead_letters", &[letter]).await;

    // The suppression list: on the topic (which the aggregate stage would load) and as rows.
    let record = |recipient: &str| SuppressionRecord {
        recipient: recipient.into(),
        scope: "global".into(),
        suppressed: true,
        reason: "hard_bounce".into(),
        origin: "rule:hard-bounce".into(),
        event_id: None,
        at: now * 1000,
    };
    produce_avro(
        &settings,
        &suppressions_topic,
        SUPPRESSION_SCHEMA,
        &[
            (record(ERASED).key(), record(ERASED)),
            (record(KEPT).key(), record(KEPT)),
        ],
    )
    .await;
    let rows: Vec<_> = [ERASED, KEPT]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            mailpipe_stage_5_aggregate::actions::SuppressionRow::new(
                mailpipe_stage_5_aggregate::actions::SuppressionRecord {
                    recipient: r.to_string(),
                    scope: "global".into(),
                    suppressed: true,
                    reason: "hard_bounce".into(),
                    origin: "rule:hard-bounce".into(),
                    event_id: None,
                    at: now * 1000,
                },
                0,
                i as i64,
            )
        })
        .collect();
    insert(&settings, "suppressions", &rows).await;

    // Redis: the rules' state for both recipients.
    let mut state = connect_state(&settings).unwrap();
    let mut ops = Vec::new();
    for r in [ERASED, KEPT] {
        ops.push(Op::Increment {
            series: format!("soft-bounces|recipient|{r}"),
            member: format!("{r}-ev-1"),
            at_ms: now * 1000,
            retain_ms: 86_400_000,
        });
        ops.push(Op::ScoreAdd {
            recipient: r.into(),
            contribution: format!("open-score/{r}-ev-1/0"),
            delta: 2.0,
            at_ms: now * 1000,
            window_ms: 86_400_000,
        });
        ops.push(Op::SegmentAdd {
            segment: "engaged".into(),
            recipient: r.into(),
        });
        ops.push(Op::Suppress {
            scope: "global".into(),
            recipient: r.into(),
            record: format!("{{\"reason\":\"hard_bounce\",\"recipient\":\"{r}\"}}"),
        });
        ops.push(Op::Schedule {
            id: format!("re-engage/{r}-ev-2/0"),
            due_at_ms: (now + 3_600) * 1000,
            payload: format!("{{\"recipient\":\"{r}\"}}"),
        });
    }
    state.apply(&ops).await.unwrap();
    let prefix = settings.rules.redis_prefix.clone();
    let before = redis_dump(&settings, &prefix).await;
    assert!(before.iter().any(|(k, v)| holds_erased(&(k.clone() + v))));

    // Erase. First with the aggregate stage behind on mail.suppressions (its group has
    // committed 0 of the 2 records): erase waits, then refuses, having changed nothing.
    let erase = |wait: &str| {
        let bin = workspace_binary("mailpipe", "cargo build -p mailpipe");
        Command::new(bin)
            .current_dir(dev_config_path().parent().unwrap().parent().unwrap())
            .env("MAILPIPE_KAFKA__TOPIC_PREFIX", &settings.kafka.topic_prefix)
            .env(
                "MAILPIPE_CLICKHOUSE__DATABASE",
                &settings.clickhouse.database,
            )
            .env("MAILPIPE_RULES__REDIS_PREFIX", &prefix)
            .args(["erase", ERASED, "--by", "ticket-4711", "--wait", wait])
            .output()
            .unwrap()
    };
    let aggregate = mailpipe_stage::Stage::Aggregate.group_id(&settings);
    let commit = |offset: i64| {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("group.id", &aggregate)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&suppressions_topic, 0, rdkafka::Offset::Offset(offset))
            .unwrap();
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .unwrap();
    };
    commit(0);
    let out = erase("2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("has not caught up"), "{stderr}");
    assert_eq!(
        count(
            &settings,
            "SELECT count() FROM email_events WHERE recipient = ?"
        )
        .await,
        9,
        "nothing deleted while a loader is behind"
    );
    assert_eq!(
        redis_dump(&settings, &prefix).await,
        before,
        "nothing changed in Redis"
    );
    // Caught up: the erasure goes through.
    commit(2);
    let out = erase("60");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains(ERASED),
        "the output names only the hash: {stdout}"
    );

    // ClickHouse: nothing of the erased recipient, everything of the kept one.
    for (table, columns) in [
        ("email_events", "recipient; raw_event; mta_response"),
        (
            "rule_executions",
            "recipient, arrayStringConcat(parameter_values, ' ')",
        ),
        ("suppressions", "recipient"),
        ("rejected_requests", "body_excerpt"),
        ("dead_letters", "payload_excerpt"),
        (
            "privacy_erasures",
            "operator, recipient_hash, recipient_domain, removed",
        ),
    ] {
        let sql = format!(
            "SELECT count() FROM {table} WHERE match(concat({}), ?)",
            columns.replace("; ", ", ' ', ") + ", ''"
        );
        assert_eq!(
            count(&settings, &sql).await,
            0,
            "{table} still holds the address"
        );
    }
    let kept = |table: &str| format!("SELECT count() FROM {table} FINAL WHERE recipient != ?");
    assert_eq!(count(&settings, &kept("email_events")).await, 6);
    assert_eq!(count(&settings, &kept("rule_executions")).await, 1);
    assert_eq!(count(&settings, &kept("suppressions")).await, 1);
    let sum = count(
        &settings,
        "SELECT toUInt64(sum(events)) FROM email_stats_1m FINAL WHERE ? != ''",
    )
    .await;
    assert_eq!(sum, 6, "the windows were rebuilt without the erased events");

    // Redis: no key, member, field or value holds the address; the kept one's all remain.
    let after = redis_dump(&settings, &prefix).await;
    for (key, content) in &after {
        assert!(!holds_erased(key), "key {key}");
        assert!(!holds_erased(content), "{key}: {content}");
    }
    let kept_entries = |dump: &BTreeMap<String, String>| {
        dump.iter()
            .filter(|(k, v)| k.contains(KEPT) || v.contains(KEPT))
            .count()
    };
    assert_eq!(kept_entries(&after), kept_entries(&before));

    // Still suppressed, by hash: the stage's lookup (with the key) finds them, a lookup by
    // address alone does not.
    let hash = recipient_hash(settings.privacy.hash_key.as_bytes(), ERASED);
    assert!(
        suppressed(&mut state, ERASED).await.is_some(),
        "a later event is still suppressed"
    );
    let mut without_key = settings.clone();
    without_key.privacy.hash_key = String::new();
    let mut by_address_only = connect_state(&without_key).unwrap();
    assert_eq!(suppressed(&mut by_address_only, ERASED).await, None);
    assert!(suppressed(&mut state, KEPT).await.is_some());
    // A later event of theirs, through the rules as the stage evaluates it: a rule that
    // would publish their complaint is held back as suppressed_recipient.
    let rules = mailpipe_rules_core::load(NOTIFY_CRM).expect("the test rule loads");
    let config = mailpipe_stage_6_rules::process::ProcessConfig {
        score_window_ms: 86_400_000,
        publish_topics: vec!["crm.events".into()],
    };
    let later = EventBuilder::new("erased-later-complaint")
        .event_type(EventType::Complained)
        .recipient(ERASED)
        .at((now + 60) * 1000)
        .build();
    let out = mailpipe_stage_6_rules::process::process(&rules, &mut state, &config, &[later], 0)
        .await
        .unwrap();
    let decisions: Vec<&str> = out[0].actions.iter().map(|a| a.decision.as_str()).collect();
    assert_eq!(decisions, ["suppressed_recipient"]);
    assert!(out[0].publishes.is_empty());

    // mail.suppressions: the erased key's latest record is a tombstone.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique_name("erase-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[suppressions_topic.as_str()]).unwrap();
    let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut idle = 0;
    while idle < 6 {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                latest.insert(m.key().unwrap().to_vec(), m.payload().map(<[u8]>::to_vec));
                idle = 0;
            }
            Some(Err(e)) => panic!("{e}"),
            None => idle += 1,
        }
    }
    assert_eq!(
        latest.get(format!("global:{ERASED}").as_bytes()),
        Some(&None)
    );
    assert!(matches!(
        latest.get(format!("global:{KEPT}").as_bytes()),
        Some(Some(_))
    ));

    // The audit entry: who, when, what, by hash.
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Audit {
        operator: String,
        recipient_hash: String,
        recipient_domain: String,
        was_suppressed: u8,
        removed: String,
    }
    let audit: Vec<Audit> = clickhouse(&settings)
        .query("SELECT operator, recipient_hash, recipient_domain, was_suppressed, removed FROM privacy_erasures")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    let a = &audit[0];
    assert_eq!(
        (
            a.operator.as_str(),
            a.recipient_hash.as_str(),
            a.recipient_domain.as_str(),
            a.was_suppressed
        ),
        ("ticket-4711", hash.as_str(), "x.example", 1)
    );
    let removed: serde_json::Value = serde_json::from_str(&a.removed).unwrap();
    assert_eq!(removed["clickhouse"]["email_events"], 9);
    assert_eq!(removed["clickhouse"]["rejected_requests"], 1);
    assert_eq!(removed["suppression_tombstones"], 1);

    drop_clickhouse_database(&settings).await;
}
