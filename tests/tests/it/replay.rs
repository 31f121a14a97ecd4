//! `mailpipe replay` after a parser fix, against the real stack: ClickHouse holds what a
//! deliberately wrong mapping made of signed sample requests (opens counted as clicks,
//! SendGrid campaigns lost, one phantom event per request of one provider); a dry run
//! reports exactly what would change; the replay, SIGKILLed once and run again, leaves
//! `email_events` holding exactly the events the current parser gives, once each, the
//! one-minute windows equal to it, and the corrections marked on `mail.events.unique`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailpipe_avro::records::RawRecord;
use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA, RAW_REQUEST_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames, CORRECTION_HEADER};
use mailpipe_model::{EmailEvent, EventType, Provider};
use mailpipe_normalize_core::{parse, ParseInput};
use mailpipe_samples::{generate, DevKeys, PlanOptions};
use mailpipe_settings::Settings;
use mailpipe_stage::Stage;
use mailpipe_test_support::{
    committed_total, create_topic, dev_config_path, dev_settings, drop_clickhouse_database,
    kafka_brokers, migrate_clickhouse, raw_record, unique_name, workspace_binary,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 2;

/// The events the current parser gives for `raw`, enriched as the normalize stage (and so
/// the replay) does with the default `[enrichment]`.
fn events_of(raw: &RawRecord) -> Vec<EmailEvent> {
    let enricher = mailpipe_stage_3_normalize::enrich::Enricher::new(true, None);
    let headers: Vec<(String, Vec<u8>)> = raw
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let input = ParseInput {
        source: &raw.source,
        raw_request_id: &raw.request_id,
        received_at_ms: raw.received_at,
        headers: &headers,
        query: &raw.query,
        body: &raw.body,
    };
    let mut events = parse(raw.provider.parse::<Provider>().unwrap(), &input).unwrap();
    for event in &mut events {
        enricher.enrich(event);
    }
    events
}

/// The deliberately wrong mapping of the "old" parser.
fn wrong(mut e: EmailEvent) -> EmailEvent {
    if e.event_type == EventType::Opened {
        e.event_type = EventType::Clicked;
    }
    if e.provider == Provider::Sendgrid {
        e.campaign_id = None;
    }
    e
}

fn clickhouse(settings: &Settings) -> clickhouse::Client {
    mailpipe_clickhouse::client(&settings.clickhouse).with_database(&settings.clickhouse.database)
}

async fn count(settings: &Settings, sql: &str) -> u64 {
    clickhouse(settings).query(sql).fetch_one().await.unwrap()
}

#[derive(clickhouse::Row, serde::Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Stored {
    event_id: String,
    event_type: String,
    campaign_id: String,
}

async fn stored(settings: &Settings) -> BTreeSet<Stored> {
    clickhouse(settings)
        .query("SELECT event_id, event_type, campaign_id FROM email_events FINAL")
        .fetch_all::<Stored>()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn as_stored(e: &EmailEvent) -> Stored {
    Stored {
        event_id: e.event_id.clone(),
        event_type: e.event_type.as_str().into(),
        campaign_id: e.campaign_id.clone().unwrap_or_default(),
    }
}

fn replay_command(
    settings: &Settings,
    state: &PathBuf,
    from: i64,
    to: i64,
    extra: &[&str],
) -> Command {
    let bin = workspace_binary("mailpipe", "cargo build -p mailpipe");
    let mut cmd = Command::new(bin);
    cmd.current_dir(dev_config_path().parent().unwrap().parent().unwrap())
        .env("MAILPIPE_KAFKA__TOPIC_PREFIX", &settings.kafka.topic_prefix)
        .env(
            "MAILPIPE_CLICKHOUSE__DATABASE",
            &settings.clickhouse.database,
        )
        .args([
            "replay",
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ])
        .arg("--state")
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_after_a_parser_fix_corrects_clickhouse_exactly() {
    let name = unique_name("replay");
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{name}.");
    settings.clickhouse.database = name.clone();
    settings.aggregate.max_wait_ms = 200;
    settings.aggregate.retention_months = 0;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    for topic in [Topic::Raw, Topic::EventsUnique] {
        create_topic(&names.name(topic), PARTITIONS).await;
    }
    for topic in [
        Topic::Actions,
        Topic::Suppressions,
        Topic::Deliveries,
        Topic::Rejected,
        Topic::Dlq,
    ] {
        create_topic(&names.name(topic), 1).await;
    }
    migrate_clickhouse(&settings).await;

    // Signed sample requests of every provider but SES (its certificate is served by a
    // process of the stack, not here), received 10 minutes ago.
    let now = mailpipe_stage::now_ms() / 1000;
    let received_at = (now - 600) * 1000;
    let providers: Vec<Provider> = Provider::ALL
        .into_iter()
        .filter(|p| *p != Provider::Ses)
        .collect();
    let keys_dir = dev_config_path().parent().unwrap().join("dev-keys");
    let keys = DevKeys::load(
        &settings,
        &keys_dir,
        &providers,
        "http://127.0.0.1:9/cert.pem",
    )
    .unwrap();
    let options = PlanOptions {
        seed: 0x7265_706c_6179,
        count: 300,
        providers,
        duplicates: 0.0,
        bad: false,
        now_ms: received_at,
    };
    let requests = generate(&options, &keys, received_at / 1000).unwrap();
    let mut raws: Vec<RawRecord> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| raw_record(format!("req-{i:04}"), r, received_at + i as i64))
        .collect();
    // One SendGrid request no longer verifies (as after a key rotation): its body changed
    // after signing. What it gave once stays as it is.
    let stale = raws.iter().position(|r| r.provider == "sendgrid").unwrap();
    raws[stale].body.push(b' ');
    let stale_id = raws[stale].request_id.clone();
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let raw_schema = codec
        .register(&TopicSchema::new(&names.name(Topic::Raw), RAW_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    for r in &raws {
        let payload = raw_schema.encode(r, 4096).unwrap();
        producer
            .send(
                FutureRecord::to(&names.name(Topic::Raw))
                    .key(&r.request_id)
                    .payload(&payload)
                    .timestamp(r.received_at),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    // What the fixed parser gives, and what the wrong one put in ClickHouse: every event
    // mapped wrongly, plus one phantom event per Mailgun request.
    let mut correct: BTreeMap<String, EmailEvent> = BTreeMap::new();
    let mut written_wrong: Vec<EmailEvent> = Vec::new();
    // What ClickHouse must hold afterwards: the fixed events, and the stale request's as
    // they were.
    let mut expected_after: BTreeMap<String, EmailEvent> = BTreeMap::new();
    for r in &raws {
        for e in events_of(r) {
            if correct.contains_key(&e.event_id) {
                continue;
            }
            correct.insert(e.event_id.clone(), e.clone());
            let kept = if r.request_id == stale_id {
                wrong(e.clone())
            } else {
                e.clone()
            };
            expected_after.insert(e.event_id.clone(), kept);
            written_wrong.push(wrong(e));
        }
        if r.provider == "mailgun" {
            let mut phantom = events_of(r).remove(0);
            phantom.event_id = format!("phantom-{}", r.request_id);
            written_wrong.push(phantom);
        }
    }
    let changed = correct
        .values()
        .filter(|e| e.raw_request_id != stale_id && **e != wrong((*e).clone()))
        .count() as u64;
    let stale_events = correct
        .values()
        .filter(|e| e.raw_request_id == stale_id)
        .count() as u64;
    let phantoms = raws.iter().filter(|r| r.provider == "mailgun").count() as u64;
    assert!(
        changed > 20 && phantoms > 2,
        "the bug touches enough: {changed} {phantoms}"
    );
    let unique = names.name(Topic::EventsUnique);
    let event_schema = codec
        .register(&TopicSchema::new(&unique, EMAIL_EVENT_SCHEMA).unwrap())
        .await
        .unwrap();
    for e in &written_wrong {
        let payload = event_schema.encode(e, 1024).unwrap();
        producer
            .send(
                FutureRecord::to(&unique)
                    .key(e.recipient.as_deref().unwrap_or(""))
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_5_aggregate::run(
        settings.clone(),
        shutdown.clone(),
    ));
    let group = Stage::Aggregate.group_id(&settings);
    let wait_loaded = |n: i64| {
        let (group, unique) = (group.clone(), unique.clone());
        async move {
            let started = Instant::now();
            while committed_total(&group, &unique, PARTITIONS) < n {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "aggregate too slow"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_loaded(written_wrong.len() as i64).await;
    let before = stored(&settings).await;
    assert_eq!(
        before.len(),
        written_wrong.len(),
        "the wrong mapping is in ClickHouse"
    );

    // A dry run reports what would change and changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("replay.json");
    let (from, to) = (now - 3_600, now + 60);
    let out = replay_command(&settings, &state, from, to, &["--dry-run"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected_line = format!(
        "would change {} ({changed} corrected, 0 new, {phantoms} removed), {} unchanged",
        changed + phantoms,
        correct.len() as u64 - changed - stale_events
    );
    assert!(
        stdout.contains(&format!("{} raw requests (1 rejected,", raws.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&expected_line),
        "{stdout}\nexpected: {expected_line}"
    );
    assert!(!state.exists(), "a dry run keeps no state");
    assert_eq!(stored(&settings).await, before);

    // The replay, SIGKILLed once it has saved progress, then run again to the end.
    let mut child = replay_command(&settings, &state, from, to, &["--batch", "20"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let progressed = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|s| s["counts"]["requests"].as_u64().unwrap_or(0) >= 40);
        if progressed {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the replay ended before it could be killed: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress saved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = replay_command(&settings, &state, from, to, &["--batch", "20"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("resuming from"), "{stderr}");
    assert!(
        stderr.contains("raw requests,") && stderr.contains("ETA"),
        "progress: {stderr}"
    );

    // ClickHouse holds exactly the fixed parser's events, once each; the windows agree.
    let expected: BTreeSet<Stored> = expected_after.values().map(as_stored).collect();
    assert_eq!(stored(&settings).await, expected);
    let rows = count(&settings, "SELECT count() FROM email_events FINAL").await;
    assert_eq!(rows, correct.len() as u64);
    let distinct = count(
        &settings,
        "SELECT uniqExact(event_id) FROM email_events FINAL",
    )
    .await;
    assert_eq!(distinct, rows);
    let windows = count(
        &settings,
        "SELECT toUInt64(sum(events)) FROM email_stats_1m FINAL",
    )
    .await;
    assert_eq!(windows, rows, "email_stats_1m equals email_events");

    // The corrections reached mail.events.unique marked as such (at least the changed
    // events: the killed run may have written a batch twice).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique_name("replay-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[unique.as_str()]).unwrap();
    let mut corrections = BTreeSet::new();
    let mut plain = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let marked = m
                    .headers()
                    .is_some_and(|h| h.iter().any(|h| h.key == CORRECTION_HEADER));
                if marked {
                    corrections.insert(m.payload().unwrap().to_vec());
                } else {
                    plain += 1;
                }
            }
            Some(Err(e)) => panic!("{e}"),
            None if plain >= written_wrong.len() && corrections.len() as u64 >= changed => break,
            None => {}
        }
    }
    assert_eq!(plain, written_wrong.len());
    assert_eq!(
        corrections.len() as u64,
        changed,
        "one distinct correction per changed event"
    );

    shutdown.cancel();
    stage.await.unwrap().unwrap();
    drop_clickhouse_database(&settings).await;
}
