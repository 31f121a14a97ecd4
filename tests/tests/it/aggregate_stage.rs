//! The aggregate stage against the real broker, registry and ClickHouse: distinct events
//! (with copies in the input, as dedupe writes after a crash) give exact `count() FINAL`
//! and `sum(events) FINAL`, per event type too; a late event is counted in its own minute;
//! the migrations apply on a fresh database and a second run is a no-op; and a ClickHouse
//! outage of 15 s holds the stream and loses nothing. Records of another (compatible) writer
//! schema are read the generic way; undecodable ones become dead letters. The rules stage's
//! records load into `rule_executions` (a copy collapses, a delayed action keeps both its
//! rows) and `suppressions` (the newest change of a key is its state), the deliver stage's
//! into `delivery_attempts` (one row per attempt).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailpipe_avro::records::{DeadLetterRecord, RejectedRecord};
use mailpipe_avro::{
    AvroCodec, RegisteredSchema, TopicSchema, DEAD_LETTER_SCHEMA, DELIVERY_ATTEMPT_SCHEMA,
    EMAIL_EVENT_SCHEMA, REJECTED_REQUEST_SCHEMA, RULE_ACTION_SCHEMA, SUPPRESSION_SCHEMA,
};
use mailpipe_clickhouse::{load_migrations, migrate};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{EmailEvent, EventType, Provider};
use mailpipe_settings::Settings;
use mailpipe_stage::Stage;
use mailpipe_test_support::records::{action_record, ActionRecord, Symbol};
use mailpipe_test_support::{
    committed_total, consume_exactly, create_topic, dev_settings, free_port, unique_name,
    EventBuilder,
};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 3;
/// 2026-11-26T10:00:00Z: event times of the stream start here, 100 ms apart.
const BASE_MS: i64 = 1_795_687_200_000;
const TYPES: [EventType; 5] = [
    EventType::Delivered,
    EventType::Opened,
    EventType::Clicked,
    EventType::Bounced,
    EventType::Complained,
];

fn event(seq: usize, occurred_at: i64) -> EmailEvent {
    let domain = ["example.com", "example.org", "example.net"][seq % 3];
    let provider = if seq.is_multiple_of(2) {
        Provider::Sendgrid
    } else {
        Provider::Mailgun
    };
    EventBuilder::new(format!("ev-{seq}"))
        .event_type(TYPES[seq % TYPES.len()])
        .provider_event("x")
        .provider(provider)
        .source(provider.as_str())
        .at(occurred_at)
        .received_at(occurred_at + 1_500)
        .recipient(format!("user{}@{domain}", seq % 23))
        .message_id(format!("msg-{seq}"))
        .campaign_id(seq.is_multiple_of(4).then_some("spring"))
        .tag("t")
        .metadata("seq", seq.to_string())
        .raw_request_id(format!("req-{seq}"))
        .raw_event(format!("{{\"id\":{seq}}}"))
        .build()
}

/// Events `first..first+n`, each 5th one written twice (a copy right behind or later).
fn stream(first: usize, n: usize) -> Vec<EmailEvent> {
    let mut out = Vec::new();
    for seq in first..first + n {
        let e = event(seq, BASE_MS + seq as i64 * 100);
        if seq.is_multiple_of(5) {
            out.push(e.clone());
        }
        out.push(e);
    }
    out
}

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/clickhouse")
}

struct Setup {
    settings: Settings,
    codec: AvroCodec,
    input: String,
}

async fn setup(name: &str) -> Setup {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name(name));
    settings.clickhouse.database = unique_name(name);
    settings.clickhouse.timeout_ms = 5_000;
    settings.aggregate.max_rows = 700;
    settings.aggregate.max_wait_ms = 300;
    settings.aggregate.retention_months = 0;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let input = names.name(Topic::EventsUnique);
    create_topic(&input, PARTITIONS).await;
    create_topic(&names.name(Topic::Actions), PARTITIONS).await;
    create_topic(&names.name(Topic::Suppressions), PARTITIONS).await;
    create_topic(&names.name(Topic::Deliveries), PARTITIONS).await;
    create_topic(&names.name(Topic::Rejected), PARTITIONS).await;
    create_topic(&names.name(Topic::Dlq), 1).await;
    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    Setup {
        settings,
        codec,
        input,
    }
}

impl Setup {
    async fn migrate(&self) {
        let migrations = load_migrations(&migrations_dir()).unwrap();
        migrate(&self.settings.clickhouse, &migrations)
            .await
            .unwrap();
    }

    async fn schema(&self) -> RegisteredSchema {
        self.codec
            .register(&TopicSchema::new(&self.input, EMAIL_EVENT_SCHEMA).unwrap())
            .await
            .unwrap()
    }

    async fn produce(&self, events: &[EmailEvent]) {
        let schema = self.schema().await;
        let records: Vec<(String, Vec<u8>)> = events
            .iter()
            .map(|e| (e.recipient.clone().unwrap(), schema.encode(e, 512).unwrap()))
            .collect();
        self.produce_payloads(&records).await;
    }

    async fn produce_payloads(&self, records: &[(String, Vec<u8>)]) {
        self.produce_to(&self.input, records).await;
    }

    /// Encodes `values` with `schema` for `topic` and writes them there, in order.
    async fn produce_records<T: serde::Serialize>(
        &self,
        topic: Topic,
        schema: &str,
        values: &[(String, T)],
    ) {
        let topic = TopicNames::new(&self.settings.kafka.topic_prefix).name(topic);
        mailpipe_test_support::produce_avro(&self.settings, &topic, schema, values).await;
    }

    async fn produce_to(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        let producer = mailpipe_kafka::create_producer(&self.settings.kafka).unwrap();
        let mut deliveries = Vec::new();
        for (key, payload) in records {
            let record = FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for d in deliveries {
            d.await.unwrap().unwrap();
        }
    }

    fn start_stage(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let shutdown = CancellationToken::new();
        let run = mailpipe_stage_5_aggregate::run(self.settings.clone(), shutdown.clone());
        let stage = tokio::spawn(async move { run.await.expect("aggregate stage") });
        (shutdown, stage)
    }

    fn committed(&self) -> i64 {
        self.committed_of(&self.input)
    }

    fn committed_of(&self, topic: &str) -> i64 {
        committed_total(
            &Stage::Aggregate.group_id(&self.settings),
            topic,
            PARTITIONS,
        )
    }

    async fn wait_committed(&self, expected: i64, limit: Duration) -> i64 {
        let started = Instant::now();
        loop {
            let committed = self.committed();
            if committed >= expected || started.elapsed() > limit {
                return committed;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn count(&self, sql: &str) -> u64 {
        let sql = sql.replace("{db}", &self.settings.clickhouse.database);
        mailpipe_clickhouse::client(&self.settings.clickhouse)
            .query(&sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn per_type(&self, sql: &str) -> BTreeMap<String, u64> {
        #[derive(serde::Deserialize, clickhouse::Row)]
        struct TypeCount {
            event_type: String,
            n: u64,
        }
        let sql = sql.replace("{db}", &self.settings.clickhouse.database);
        let rows: Vec<TypeCount> = mailpipe_clickhouse::client(&self.settings.clickhouse)
            .query(&sql)
            .fetch_all()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| (r.event_type, r.n)).collect()
    }

    /// Both exactness checks of the issue: overall and per event type.
    async fn assert_exact(&self, distinct: &[EmailEvent]) {
        let n = distinct.len() as u64;
        assert_eq!(
            self.count("SELECT count() FROM {db}.email_events FINAL")
                .await,
            n
        );
        assert_eq!(
            self.count("SELECT toUInt64(sum(events)) FROM {db}.email_stats_1m FINAL")
                .await,
            n
        );
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for e in distinct {
            *expected
                .entry(e.event_type.as_str().to_string())
                .or_default() += 1;
        }
        let events = self
            .per_type(
                "SELECT event_type, count() AS n FROM {db}.email_events FINAL GROUP BY event_type",
            )
            .await;
        let stats = self
            .per_type("SELECT event_type, toUInt64(sum(events)) AS n FROM {db}.email_stats_1m FINAL GROUP BY event_type")
            .await;
        assert_eq!(events, expected);
        assert_eq!(stats, expected);
    }

    async fn drop_database(&self) {
        let sql = format!(
            "DROP DATABASE IF EXISTS {}",
            self.settings.clickhouse.database
        );
        let _ = mailpipe_clickhouse::client(&self.settings.clickhouse)
            .query(&sql)
            .execute()
            .await;
    }
}

#[tokio::test]
async fn the_migrations_apply_on_a_fresh_database_and_again_are_a_no_op() {
    let s = setup("agg_migrate").await;
    let migrations = load_migrations(&migrations_dir()).unwrap();
    assert!(migrations.len() >= 2);
    let first = migrate(&s.settings.clickhouse, &migrations).await.unwrap();
    let versions: Vec<String> = migrations.iter().map(|m| m.version.clone()).collect();
    assert_eq!(first.applied, versions);
    let second = migrate(&s.settings.clickhouse, &migrations).await.unwrap();
    assert!(
        second.applied.is_empty(),
        "second run applied {:?}",
        second.applied
    );
    assert_eq!(second.already_applied, versions);
    s.drop_database().await;
}

#[tokio::test]
async fn copies_and_a_late_event_give_exact_counts() {
    let s = setup("agg_exact").await;
    s.migrate().await;
    let mut input = stream(0, 3_000);
    let mut distinct: Vec<EmailEvent> = stream(0, 3_000);
    distinct.dedup_by(|a, b| a.event_id == b.event_id);
    // Ten minutes before the newest event time: late, in a minute nothing else is in.
    let newest = BASE_MS + 2_999 * 100;
    let late = event(900_000, newest - 10 * 60 * 1000 - 5 * 60 * 1000);
    input.push(late.clone());
    distinct.push(late.clone());
    // An event whose provider gave no time (occurred_at 0), and a copy of it that arrived
    // 30 days later (past dedupe's TTL): one row, counted once.
    let unknown_time = event(900_001, mailpipe_normalize_core::UNKNOWN_TIME);
    let mut much_later_copy = unknown_time.clone();
    much_later_copy.received_at += 30 * 86_400_000;
    much_later_copy.raw_request_id = "a-later-request".into();
    input.push(unknown_time.clone());
    input.push(much_later_copy);
    distinct.push(unknown_time);
    s.produce(&input).await;

    let (shutdown, stage) = s.start_stage();
    let committed = s
        .wait_committed(input.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(committed, input.len() as i64, "every input committed");
    s.assert_exact(&distinct).await;

    let late_minute = late.occurred_at / 60_000 * 60;
    let in_its_minute = s
        .count(&format!(
            "SELECT toUInt64(sum(events)) FROM {{db}}.email_stats_1m FINAL \
             WHERE window_start = toDateTime({late_minute})"
        ))
        .await;
    assert_eq!(in_its_minute, 1, "the late event counts in its own minute");

    // The whole input again (a replay of the topic, as after a reset of the group's
    // offsets): nothing counts twice.
    s.produce(&input).await;
    let committed = s
        .wait_committed(2 * input.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(committed, 2 * input.len() as i64);
    s.assert_exact(&distinct).await;
    shutdown.cancel();
    stage.await.unwrap();
    s.drop_database().await;
}

#[tokio::test]
async fn another_writer_schema_is_read_and_undecodable_records_are_dead_letters() {
    let s = setup("agg_schemas").await;
    s.migrate().await;
    let ours = s.schema().await;
    // A newer writer schema: ours plus an optional field at the end. Avro writes a record's
    // fields one after the other, so its datum is ours followed by the new field.
    let mut evolved: serde_json::Value = serde_json::from_str(EMAIL_EVENT_SCHEMA).unwrap();
    evolved["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "extra", "type": ["null", "string"], "default": null}
        ));
    let evolved = s
        .codec
        .register(&TopicSchema::new(&format!("{}-evolved", s.input), &evolved.to_string()).unwrap())
        .await
        .unwrap();
    assert_ne!(evolved.id(), ours.id());
    let events = stream(0, 200);
    let mut records = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let key = e.recipient.clone().unwrap();
        let payload = ours.encode(e, 512).unwrap();
        if i % 2 == 0 {
            records.push((key, payload));
        } else {
            let mut payload = evolved.encode_with(512, |out| out.extend_from_slice(&payload[5..]));
            payload.extend_from_slice(&[2, 2, b'x']);
            records.push((key, payload));
        }
    }
    // Undecodable: garbage under our schema id, a valid datum with a byte too many, and an
    // id the registry does not know.
    let mut garbage = ours.encode_with(8, |out| out.extend_from_slice(&[0x7f; 8]));
    let mut trailing = ours.encode(&events[0], 512).unwrap();
    trailing.push(0);
    let unknown_id = [0, 0x7f, 0xff, 0xff, 0xf0, 2, b'a'].to_vec();
    for payload in [&mut garbage, &mut trailing] {
        records.push(("bad".into(), std::mem::take(payload)));
    }
    records.push(("bad".into(), unknown_id));
    s.produce_payloads(&records).await;

    let (shutdown, stage) = s.start_stage();
    let committed = s
        .wait_committed(records.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(committed, records.len() as i64, "every input committed");
    let mut distinct = events.clone();
    distinct.dedup_by(|a, b| a.event_id == b.event_id);
    s.assert_exact(&distinct).await;
    let dlq = TopicNames::new(&s.settings.kafka.topic_prefix).name(Topic::Dlq);
    let dead = consume_exactly(&dlq, 3).await;
    for (_, payload) in &dead {
        let letter: DeadLetterRecord = s.codec.decode(payload).await.unwrap();
        assert_eq!(letter.reason, "undecodable");
        assert_eq!(letter.stage, "aggregate");
    }
    shutdown.cancel();
    stage.await.unwrap();
    s.drop_database().await;
}

/// A private ClickHouse (own ports and data directory) the test can stop and restart.
struct PrivateClickHouse {
    dir: tempfile::TempDir,
    child: Option<Child>,
    http_port: u16,
}

impl PrivateClickHouse {
    fn start(dir: tempfile::TempDir, http_port: u16, tcp_port: u16) -> PrivateClickHouse {
        let template_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/clickhouse");
        let data = dir.path().join("data");
        let config = std::fs::read_to_string(template_dir.join("config.xml"))
            .unwrap()
            .replace("@CH_DATA_DIR@", data.to_str().unwrap())
            .replace("@CH_LOG@", dir.path().join("ch.log").to_str().unwrap())
            .replace(
                "@CH_ERRLOG@",
                dir.path().join("ch.err.log").to_str().unwrap(),
            )
            .replace("@CLICKHOUSE_HTTP_PORT@", &http_port.to_string())
            .replace("@CLICKHOUSE_TCP_PORT@", &tcp_port.to_string());
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(dir.path().join("config.xml"), config).unwrap();
        std::fs::copy(template_dir.join("users.xml"), dir.path().join("users.xml")).unwrap();
        let binary = ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("clickhouse-server");
        let child = Command::new(binary)
            .arg(format!(
                "--config-file={}",
                dir.path().join("config.xml").display()
            ))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server (make install)");
        let server = PrivateClickHouse {
            dir,
            child: Some(child),
            http_port,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "private clickhouse did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(mut self, tcp_port: u16) -> PrivateClickHouse {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        PrivateClickHouse::start(dir, self.http_port, tcp_port)
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_clickhouse_outage_holds_the_stream_and_loses_nothing() {
    let mut s = setup("agg_outage").await;
    let tcp_port = free_port();
    let mut clickhouse =
        PrivateClickHouse::start(tempfile::tempdir().unwrap(), free_port(), tcp_port);
    s.settings.clickhouse.url = clickhouse.url();
    s.settings.clickhouse.timeout_ms = 2_000;
    s.migrate().await;
    let first = stream(0, 1_000);
    let second = stream(1_000, 1_000);
    let mut distinct: Vec<EmailEvent> = first.iter().chain(&second).cloned().collect();
    distinct.dedup_by(|a, b| a.event_id == b.event_id);

    let (shutdown, stage) = s.start_stage();
    s.produce(&first).await;
    let committed = s
        .wait_committed(first.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(committed, first.len() as i64);

    // ClickHouse goes away for 15 s while the second half arrives.
    clickhouse.stop();
    let down_at = Instant::now();
    s.produce(&second).await;
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(down_at.elapsed())).await;
    let while_down = s.committed();
    assert_eq!(
        while_down,
        first.len() as i64,
        "nothing is committed while ClickHouse is down"
    );
    clickhouse = clickhouse.restart(tcp_port);

    let total = (first.len() + second.len()) as i64;
    let committed = s.wait_committed(total, Duration::from_secs(60)).await;
    assert_eq!(committed, total, "the stage resumed by itself");
    s.assert_exact(&distinct).await;
    shutdown.cancel();
    stage.await.unwrap();
    drop(clickhouse);
}

/// A `mail.suppressions` record (schemas/suppression.avsc).
#[derive(Debug, Clone, serde::Serialize)]
struct SuppressionRecord {
    recipient: String,
    scope: String,
    suppressed: bool,
    reason: String,
    origin: String,
    event_id: Option<String>,
    at: i64,
}

/// A `mail.deliveries` record (schemas/delivery_attempt.avsc).
#[derive(Debug, Clone, serde::Serialize)]
struct AttemptRecord {
    action_id: String,
    webhook_id: String,
    rule_id: String,
    event_id: String,
    target: String,
    attempt: i32,
    at: i64,
    status: Option<i32>,
    latency_ms: i64,
    verdict: String,
    reason: String,
    error: String,
    next_attempt_at: i64,
}

fn attempt(seq: usize, n: i32, status: Option<i32>, verdict: &str) -> (String, AttemptRecord) {
    let id = format!("notify/ev-{seq}/0");
    let record = AttemptRecord {
        action_id: id.clone(),
        webhook_id: id.clone(),
        rule_id: "notify".into(),
        event_id: format!("ev-{seq}"),
        target: "https://crm.example.com:443".into(),
        attempt: n,
        at: BASE_MS + i64::from(n) * 5_000,
        status,
        latency_ms: 12,
        verdict: verdict.into(),
        reason: String::new(),
        error: String::new(),
        next_attempt_at: 0,
    };
    (id, record)
}

fn action(seq: usize, outcome: Symbol, decided_at: i64) -> ActionRecord {
    let recipient = format!("user{seq}@example.com");
    let parameters = [("reason", "complaint"), ("recipient", recipient.as_str())];
    let event = format!("ev-{seq}");
    let mut a = action_record(
        "suppress-complainers",
        &event,
        Symbol::Suppress,
        &parameters,
        outcome,
        decided_at,
    );
    a.recipient = Some(recipient.clone());
    a.occurred_at = BASE_MS + seq as i64;
    a
}

fn suppression(recipient: &str, suppressed: bool, at: i64) -> (String, SuppressionRecord) {
    let record = SuppressionRecord {
        recipient: recipient.to_string(),
        scope: "all".into(),
        suppressed,
        reason: if suppressed { "complaint" } else { "operator" }.into(),
        origin: "rule:suppress-complainers".into(),
        event_id: None,
        at,
    };
    (format!("all:{recipient}"), record)
}

#[tokio::test]
async fn rules_records_load_into_rule_executions_and_suppressions() {
    let s = setup("agg_rules").await;
    s.migrate().await;
    // 300 actions, each 3rd written twice (a redelivery: the same record again, with a later
    // decision time, as an at-least-once rules stage would write it); the first 10 are
    // delayed, so each also has its `scheduled` record before the `applied` one.
    let mut actions = Vec::new();
    for seq in 0..300 {
        if seq < 10 {
            actions.push(action(seq, Symbol::Scheduled, BASE_MS));
        }
        actions.push(action(seq, Symbol::Applied, BASE_MS + 1_000));
        if seq % 3 == 0 {
            actions.push(action(seq, Symbol::Applied, BASE_MS + 2_000));
        }
    }
    let keyed: Vec<(String, ActionRecord)> = actions
        .iter()
        .map(|a| (a.action_id.clone(), a.clone()))
        .collect();
    s.produce_records(Topic::Actions, RULE_ACTION_SCHEMA, &keyed)
        .await;
    // 100 recipients suppressed; of them every 4th is lifted afterwards, and every 8th
    // suppressed again after that (a later record of the same key wins, whatever its time).
    let mut changes = Vec::new();
    for i in 0..100 {
        changes.push(suppression(
            &format!("s{i}@example.com"),
            true,
            BASE_MS + 10,
        ));
    }
    for i in (0..100).step_by(4) {
        changes.push(suppression(
            &format!("s{i}@example.com"),
            false,
            BASE_MS + 5,
        ));
    }
    for i in (0..100).step_by(8) {
        changes.push(suppression(&format!("s{i}@example.com"), true, BASE_MS + 1));
    }
    s.produce_records(Topic::Suppressions, SUPPRESSION_SCHEMA, &changes)
        .await;
    // 20 deliveries: a timeout (no status), a 503, then a 200 each; the 200 written twice.
    let mut attempts = Vec::new();
    for seq in 0..20 {
        attempts.push(attempt(seq, 1, None, "retry"));
        attempts.push(attempt(seq, 2, Some(503), "retry"));
        attempts.push(attempt(seq, 3, Some(200), "delivered"));
        attempts.push(attempt(seq, 3, Some(200), "delivered"));
    }
    s.produce_records(Topic::Deliveries, DELIVERY_ATTEMPT_SCHEMA, &attempts)
        .await;

    let (shutdown, stage) = s.start_stage();
    let names = TopicNames::new(&s.settings.kafka.topic_prefix);
    let (actions_topic, suppressions_topic, deliveries_topic) = (
        names.name(Topic::Actions),
        names.name(Topic::Suppressions),
        names.name(Topic::Deliveries),
    );
    let started = Instant::now();
    while (s.committed_of(&actions_topic) < actions.len() as i64
        || s.committed_of(&suppressions_topic) < changes.len() as i64
        || s.committed_of(&deliveries_topic) < attempts.len() as i64)
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(s.committed_of(&actions_topic), actions.len() as i64);
    assert_eq!(s.committed_of(&suppressions_topic), changes.len() as i64);

    let rows = s
        .count("SELECT count() FROM {db}.rule_executions FINAL")
        .await;
    assert_eq!(
        rows, 310,
        "300 applied actions and 10 scheduled ones, copies collapsed"
    );
    let scheduled = s
        .count("SELECT count() FROM {db}.rule_executions FINAL WHERE outcome = 'scheduled'")
        .await;
    assert_eq!(scheduled, 10);
    let with_params = s
        .count(
            "SELECT count() FROM {db}.rule_executions FINAL \
             WHERE parameter_values[indexOf(parameter_keys, 'reason')] = 'complaint' \
             AND recipient = parameter_values[indexOf(parameter_keys, 'recipient')]",
        )
        .await;
    assert_eq!(with_params, 310, "parameters kept as parallel arrays");

    let keys = s.count("SELECT count() FROM {db}.suppressions FINAL").await;
    assert_eq!(keys, 100, "one row per (scope, recipient)");
    let suppressed = s
        .count("SELECT count() FROM {db}.suppressions FINAL WHERE suppressed = 1")
        .await;
    // 100 - 25 lifted + 13 suppressed again (0, 8, ..., 96).
    assert_eq!(suppressed, 88);
    let lifted_then_again = s
        .count(
            "SELECT count() FROM {db}.suppressions FINAL \
             WHERE recipient = 's8@example.com' AND suppressed = 1",
        )
        .await;
    assert_eq!(lifted_then_again, 1, "the newest change of a key wins");

    let attempt_rows = s
        .count("SELECT count() FROM {db}.delivery_attempts FINAL")
        .await;
    assert_eq!(attempt_rows, 60, "one row per attempt, the copy collapsed");
    let unanswered = s
        .count("SELECT count() FROM {db}.delivery_attempts FINAL WHERE status = 0")
        .await;
    assert_eq!(unanswered, 20);

    // Retention covers rule_executions (partitioned by the event's month), never the list.
    let forty_days_later = BASE_MS / 1000 + 40 * 86_400;
    let droppable = mailpipe_clickhouse::retention::drop_expired(
        &s.settings.clickhouse,
        1,
        forty_days_later,
        true,
    )
    .await
    .unwrap();
    let droppable: Vec<(String, u32)> = droppable
        .into_iter()
        .map(|p| (p.table, p.partition))
        .collect();
    assert_eq!(
        droppable,
        [
            ("delivery_attempts".to_string(), 202611),
            ("rule_executions".to_string(), 202611)
        ]
    );
    shutdown.cancel();
    stage.await.unwrap();
    s.drop_database().await;
}

/// The console's sources of "what went wrong": rejected requests and dead letters land in
/// their tables, a replayed record collapses, and a dead letter of `mail.raw` (whose
/// headers hold credentials) keeps no excerpt.
#[tokio::test(flavor = "multi_thread")]
async fn rejections_and_dead_letters_load_for_the_console() {
    let s = setup("agg_problems").await;
    s.migrate().await;
    let names = TopicNames::new(&s.settings.kafka.topic_prefix);
    let (raw, verified) = (names.name(Topic::Raw), names.name(Topic::Verified));
    let mut rejections = Vec::new();
    for i in 0..30 {
        let reason = if i % 3 == 0 {
            "stale_timestamp"
        } else {
            "bad_signature"
        };
        let record = RejectedRecord {
            request_id: format!("req-{i}"),
            received_at: BASE_MS + i,
            provider: "mailgun".into(),
            source: "mailgun".into(),
            method: "POST".into(),
            path: "/webhooks/mailgun".into(),
            query: String::new(),
            headers: Vec::new(),
            remote_addr: Some("127.0.0.1".into()),
            body: format!("{{\"n\":{i}}}").into_bytes(),
            rejected_at: BASE_MS + 1_000 + i,
            reason: reason.into(),
            detail: "test".into(),
        };
        rejections.push((record.request_id.clone(), record));
    }
    // The first five again: a redelivery.
    let again: Vec<_> = rejections[..5].to_vec();
    rejections.extend(again);
    s.produce_records(Topic::Rejected, REJECTED_REQUEST_SCHEMA, &rejections)
        .await;
    let letter = |offset: i64, topic: &str| DeadLetterRecord {
        stage: if topic == raw { "verify" } else { "normalize" }.into(),
        reason: if topic == raw {
            "undecodable"
        } else {
            "not_json"
        }
        .into(),
        detail: "test".into(),
        failed_at: BASE_MS + 2_000 + offset,
        topic: topic.to_string(),
        partition: 0,
        offset,
        raw_request_id: None,
        provider: Some("sendgrid".into()),
        source: None,
        payload: b"authorization: secret-of-the-sender".to_vec(),
    };
    let mut letters = Vec::new();
    for offset in 0..8 {
        letters.push((format!("l{offset}"), letter(offset, &raw)));
        letters.push((format!("v{offset}"), letter(offset, &verified)));
    }
    letters.push(("v0".to_string(), letter(0, &verified)));
    s.produce_records(Topic::Dlq, DEAD_LETTER_SCHEMA, &letters)
        .await;

    let (shutdown, stage) = s.start_stage();
    let (rejected_topic, dlq_topic) = (names.name(Topic::Rejected), names.name(Topic::Dlq));
    let started = Instant::now();
    while (s.committed_of(&rejected_topic) < rejections.len() as i64
        || s.committed_of(&dlq_topic) < letters.len() as i64)
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(s.committed_of(&dlq_topic), letters.len() as i64);
    let by_reason = |reason: &str| {
        format!("SELECT count() FROM {{db}}.rejected_requests FINAL WHERE reason = '{reason}'")
    };
    assert_eq!(s.count(&by_reason("stale_timestamp")).await, 10);
    assert_eq!(s.count(&by_reason("bad_signature")).await, 20);
    assert_eq!(
        s.count("SELECT count() FROM {db}.dead_letters FINAL").await,
        16,
        "the replayed letter collapses"
    );
    assert_eq!(
        s.count(
            "SELECT count() FROM {db}.dead_letters FINAL \
             WHERE stage = 'verify' AND payload_excerpt = '' AND payload_bytes > 0"
        )
        .await,
        8,
        "no excerpt of mail.raw payloads"
    );
    assert_eq!(
        s.count(
            "SELECT count() FROM {db}.dead_letters FINAL \
             WHERE stage = 'normalize' AND payload_excerpt LIKE 'authorization:%'"
        )
        .await,
        8
    );
    shutdown.cancel();
    stage.await.unwrap();
    s.drop_database().await;
}

/// `[privacy] hash_recipients`: the tables hold `h:<keyed hash>@<domain>` instead of each
/// address, and the per-domain and per-recipient figures stay exact.
#[tokio::test(flavor = "multi_thread")]
async fn with_hash_recipients_no_address_is_stored_and_counts_stay_exact() {
    let mut s = setup("agg_hashed").await;
    s.settings.privacy.hash_recipients = true;
    s.migrate().await;
    let input = stream(0, 300);
    let mut distinct = input.clone();
    distinct.dedup_by(|a, b| a.event_id == b.event_id);
    s.produce(&input).await;
    let (shutdown, stage) = s.start_stage();
    let committed = s
        .wait_committed(input.len() as i64, Duration::from_secs(60))
        .await;
    assert_eq!(committed, input.len() as i64);
    let key = s.settings.privacy.hash_key.as_bytes().to_vec();
    let rows = s.count("SELECT count() FROM {db}.email_events FINAL").await;
    assert_eq!(rows, distinct.len() as u64);
    let hashed = s
        .count("SELECT count() FROM {db}.email_events FINAL WHERE recipient LIKE 'h:%@%'")
        .await;
    assert_eq!(
        hashed, rows,
        "every recipient is a keyed hash with its domain"
    );
    for e in distinct.iter().take(20) {
        let address = e.recipient.clone().unwrap();
        let local = address.split('@').next().unwrap().to_string();
        let holding = s
            .count(&format!(
                "SELECT count() FROM {{db}}.email_events FINAL \
                 WHERE positionCaseInsensitive(concat(recipient, ' ', raw_event), '{local}@') > 0"
            ))
            .await;
        assert_eq!(holding, 0, "{address} is stored");
        let by_hash = s
            .count(&format!(
                "SELECT count() FROM {{db}}.email_events FINAL WHERE recipient = '{}'",
                mailpipe_model::privacy::hashed_address(&key, &address)
            ))
            .await;
        let expected = distinct
            .iter()
            .filter(|d| d.recipient == e.recipient)
            .count() as u64;
        assert_eq!(
            by_hash, expected,
            "{address}: the hash stands for the recipient"
        );
    }
    let domains = s
        .count("SELECT uniqExact(recipient_domain) FROM {db}.email_events FINAL")
        .await;
    assert_eq!(domains, 3);
    shutdown.cancel();
    stage.await.unwrap();
    s.drop_database().await;
}
