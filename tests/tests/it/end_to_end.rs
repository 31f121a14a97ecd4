//! End to end: the receiver and every stage as separate processes (the built binaries)
//! against the real broker, registry, Redis and ClickHouse, fed by `mailpipe send-samples`
//! like ESPs would: correctly signed requests from all twelve providers with re-posted
//! copies, and forged, stale and malformed ones. Checks the invariants of design.md §2:
//! - every accepted event is in `email_events` exactly once (per provider and type, FINAL,
//!   and as a set of event ids) and counted once in `email_stats_1m`; `mail.events.unique`
//!   holds each of them exactly once; every row's `raw_request_id` is on `mail.raw`;
//! - forged and stale requests are on `mail.rejected` with their reason, malformed ones on
//!   `mail.dlq`, and none of them reaches ClickHouse;
//! - re-posted copies count once;
//! - the receiver's 2xx answers equal the records on `mail.raw`;
//! - every record's schema id is registered under its own topic's subject (topic name
//!   strategy), and Confluent's Python client, with its registry-backed Avro deserializer,
//!   decodes `mail.events.unique` to exactly what we decode (the other teams' check).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use mailpipe_avro::records::{DeadLetterRecord, RawRecord, RejectedRecord};
use mailpipe_avro::{schema_id, value_subject, AvroCodec};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_test_support::other_client::{python_decode_topic, subject_schema_ids};
use mailpipe_test_support::pipeline::Pipeline;
use mailpipe_test_support::{
    accepted_event_ids, consume_exactly, dev_settings, topic_record_count,
};

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Sum of the numbers in a JSON object (0 when absent).
fn sum_object(value: &serde_json::Value) -> u64 {
    value
        .as_object()
        .map(|o| o.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0)
}

/// The receiver's 2xx answers, summed over its `mailpipe_receiver_requests_total` series.
async fn receiver_2xx(receiver_url: &str) -> u64 {
    let text = reqwest::get(format!("{receiver_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("mailpipe_receiver_requests_total{") && l.contains("status=\"2"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn clickhouse_strings(database: &str, sql: &str) -> Vec<String> {
    let sql = sql.replace("{db}", database);
    mailpipe_clickhouse::client(&dev_settings().clickhouse)
        .query(&sql)
        .fetch_all::<String>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn clickhouse_u64(database: &str, sql: &str) -> u64 {
    let sql = sql.replace("{db}", database);
    mailpipe_clickhouse::client(&dev_settings().clickhouse)
        .query(&sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn every_accepted_event_once_every_bad_request_accounted_for() {
    let mut pipeline = Pipeline::new(
        "e2e",
        &[("MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK", "true")],
    );
    pipeline.prepare();
    let cert_url = pipeline.serve_dev_cert();
    pipeline.start_all();

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let bad = dir.path().join("bad.json");
    let sample_args = |extra: &[&str], summary: &Path| -> Vec<String> {
        let mut args: Vec<String> = [
            "send-samples",
            "--url",
            &pipeline.receiver_url,
            "--sns-cert-url",
            &cert_url,
            "--quiet",
            "--summary-json",
            summary.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let args = sample_args(
        &["--count", "600", "--duplicates", "0.1", "--seed", "7"],
        &good,
    );
    pipeline.mailpipe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = sample_args(&["--bad", "--count", "60", "--seed", "8"], &bad);
    pipeline.mailpipe(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Every accepted event reaches ClickHouse exactly once, per provider and type.
    let good_json = good.to_str().unwrap();
    let summary = pipeline.mailpipe(&["summary", "--expect", good_json, "--wait", "180"]);
    assert!(summary.contains("each once"), "{summary}");

    let good_summary = read_json(&good);
    let bad_summary = read_json(&bad);
    let expected_events: u64 = good_summary["accepted"]
        .as_object()
        .unwrap()
        .values()
        .map(sum_object)
        .sum();
    assert_eq!(
        expected_events, 600,
        "send-samples got all 600 events accepted"
    );
    let db = pipeline.database.clone();
    assert_eq!(
        clickhouse_u64(&db, "SELECT count() FROM {db}.email_events FINAL").await,
        expected_events
    );
    // The roll-up is written after the events: give it the last recompute.
    let started = Instant::now();
    let mut stats = 0;
    while started.elapsed() < Duration::from_secs(30) {
        stats = clickhouse_u64(
            &db,
            "SELECT toUInt64(sum(events)) FROM {db}.email_stats_1m FINAL",
        )
        .await;
        if stats == expected_events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        stats, expected_events,
        "email_stats_1m counts each event once"
    );
    // Not just as many: exactly the events sent (a lost and a spurious one in the same
    // provider and type would cancel out in the counts above).
    let expected_ids = accepted_event_ids(&good_summary);
    assert_eq!(expected_ids.len() as u64, expected_events);
    let stored_ids: BTreeSet<String> =
        clickhouse_strings(&db, "SELECT event_id FROM {db}.email_events FINAL")
            .await
            .into_iter()
            .collect();
    assert_eq!(
        stored_ids.len(),
        expected_ids.len(),
        "missing: {:?}; spurious: {:?}",
        expected_ids
            .difference(&stored_ids)
            .take(5)
            .collect::<Vec<_>>(),
        stored_ids
            .difference(&expected_ids)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(stored_ids, expected_ids);

    // Forged and stale → mail.rejected with the reason; Mailgun re-posts reuse their
    // one-time token → replayed; malformed → mail.dlq. Nothing else is rejected.
    let names = TopicNames::new(&pipeline.topic_prefix);
    let forged = sum_object(&bad_summary["bad_accepted"]["forged"]);
    let stale = sum_object(&bad_summary["bad_accepted"]["stale"]);
    let malformed = sum_object(&bad_summary["bad_accepted"]["malformed"]);
    let mailgun = &good_summary["accepted_requests"]["mailgun"];
    let replayed =
        mailgun["posts"].as_u64().unwrap_or(0) - mailgun["distinct"].as_u64().unwrap_or(0);
    assert!(forged > 0 && stale > 0 && malformed > 0, "{bad_summary}");
    let codec = AvroCodec::new(&dev_settings().schema_registry.url).unwrap();
    let rejected_topic = names.name(Topic::Rejected);
    let expected_rejected = (forged + stale + replayed) as usize;
    wait_for_records(&rejected_topic, expected_rejected as i64).await;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (_, payload) in consume_exactly(&rejected_topic, expected_rejected).await {
        let record: RejectedRecord = codec.decode(&payload).await.unwrap();
        *reasons.entry(record.reason).or_default() += 1;
    }
    let mut expected_reasons = BTreeMap::from([
        ("bad_signature".to_string(), forged),
        ("stale_timestamp".to_string(), stale),
    ]);
    if replayed > 0 {
        expected_reasons.insert("replayed".to_string(), replayed);
    }
    assert_eq!(reasons, expected_reasons);
    let dlq_topic = names.name(Topic::Dlq);
    wait_for_records(&dlq_topic, malformed as i64).await;
    for (_, payload) in consume_exactly(&dlq_topic, malformed as usize).await {
        let letter: DeadLetterRecord = codec.decode(&payload).await.unwrap();
        assert_eq!(letter.stage, "normalize", "{letter:?}");
        assert!(letter.raw_request_id.is_some(), "{letter:?}");
    }

    // The receiver's 2xx answers are exactly the raw records.
    let answered = receiver_2xx(&pipeline.receiver_url).await;
    let raw = topic_record_count(&names.name(Topic::Raw));
    let posted = good_summary["requests"]["accepted"].as_u64().unwrap()
        + bad_summary["requests"]["accepted"].as_u64().unwrap();
    assert_eq!(
        answered, posted,
        "receiver 2xx vs what send-samples saw accepted"
    );
    assert_eq!(raw, answered as i64, "mail.raw records vs receiver 2xx");

    // Every stored event points at a raw request the receiver actually wrote.
    let raw_topic = names.name(Topic::Raw);
    let mut raw_ids = BTreeSet::new();
    for (_, payload) in consume_exactly(&raw_topic, raw as usize).await {
        let record: RawRecord = codec.decode(&payload).await.unwrap();
        raw_ids.insert(record.request_id);
    }
    let pointed: BTreeSet<String> = clickhouse_strings(
        &db,
        "SELECT DISTINCT raw_request_id FROM {db}.email_events FINAL",
    )
    .await
    .into_iter()
    .collect();
    assert!(!pointed.is_empty());
    let unknown: Vec<&String> = pointed.difference(&raw_ids).take(5).collect();
    assert!(
        unknown.is_empty(),
        "raw_request_id not on {raw_topic}: {unknown:?}"
    );

    // Topic name strategy: each topic's records carry schema ids registered under the
    // topic's own subject, so a consumer that looks `<topic>-value` up finds them.
    for topic in [
        Topic::Raw,
        Topic::Verified,
        Topic::Rejected,
        Topic::Dlq,
        Topic::Events,
        Topic::EventsUnique,
    ] {
        let name = names.name(topic);
        let records = consume_exactly(&name, topic_record_count(&name) as usize).await;
        assert!(!records.is_empty(), "{name} has records");
        let ids: BTreeSet<u32> = records
            .iter()
            .map(|(_, payload)| schema_id(payload).expect("Confluent-framed"))
            .collect();
        let subject = value_subject(&name);
        let registered = subject_schema_ids(&subject).await;
        for id in ids {
            assert!(
                registered.contains(&id),
                "{name}: schema id {id} is not under subject {subject} ({registered:?})"
            );
        }
    }

    // The other teams' check: Confluent's Python client decodes every unique event, by the
    // schema id in each record, to exactly what our own decoder reads.
    let unique_topic = names.name(Topic::EventsUnique);
    let unique = topic_record_count(&unique_topic) as usize;
    let mut ours = BTreeMap::new();
    for (_, payload) in consume_exactly(&unique_topic, unique).await {
        let event: EmailEvent = codec.decode(&payload).await.unwrap();
        ours.insert(
            event.event_id.clone(),
            serde_json::to_value(&event).unwrap(),
        );
    }
    assert_eq!(
        unique,
        ours.len(),
        "each event once on {unique_topic}: dedupe drops the re-posted copies"
    );
    assert!(
        ours.keys().eq(expected_ids.iter()),
        "{unique_topic} holds exactly the events sent"
    );
    let topic = unique_topic.clone();
    let read = tokio::task::spawn_blocking(move || python_decode_topic(&topic, unique))
        .await
        .unwrap();
    assert_eq!(read.records.len(), unique);
    assert!(
        !read.subject_schema_ids.is_empty(),
        "{unique_topic}-value exists"
    );
    let mut theirs = BTreeMap::new();
    for record in read.records {
        assert!(
            read.subject_schema_ids.contains(&record.schema_id),
            "record {}:{} has schema id {}, not under its subject",
            record.partition,
            record.offset,
            record.schema_id
        );
        let event_id = record.value["event_id"].as_str().unwrap().to_string();
        theirs.insert(event_id, record.value);
    }
    assert_eq!(theirs.len(), ours.len());
    for (event_id, value) in &ours {
        assert_eq!(theirs.get(event_id), Some(value), "event {event_id}");
    }

    pipeline.stop_all();
    let _ = mailpipe_clickhouse::client(&dev_settings().clickhouse)
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await;
}

async fn wait_for_records(topic: &str, n: i64) {
    let started = Instant::now();
    while topic_record_count(topic) < n && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
