//! Test helpers (dev-dependency only): where the local stack is, and unique names so tests
//! never share a topic, consumer group or database.
//!
//! Addresses come from the same `MAILPIPE_*` env vars the binaries read (set by
//! `scripts/test.sh`), with the local defaults of design.md §3.6.

pub mod broker;
pub mod event;
pub mod kill;
pub mod lag;
pub mod metrics;
pub mod other_client;
pub mod pipeline;
pub mod records;
pub mod redis;

/// The seeded generator of the sample traffic (SplitMix64), so a failing kill schedule can
/// be replayed from its printed seed.
pub use mailpipe_samples::rng::Rng;

pub use event::EventBuilder;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_model::EmailEvent;
use mailpipe_settings::Settings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The committed development config plus `MAILPIPE_*` env, as the binaries load it.
pub fn dev_settings() -> Settings {
    Settings::load_from(Some(&dev_config_path()))
        .expect("config/mailpipe.toml and MAILPIPE_* env are valid")
}

/// The repository's committed development config, `config/mailpipe.toml` (for
/// `MAILPIPE_CONFIG` of a stage binary a test runs as a child process).
pub fn dev_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/mailpipe.toml")
}

/// Creates a topic for one test on the test stack's broker; panics with the broker's
/// answer if that fails.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&kafka_brokers(), name, partitions).await
}

/// [`create_topic`] on the broker at `brokers` (a test's own, see [`broker`]).
pub async fn create_topic_on(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&[topic], &options)
        .await
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating topic {topic}: {code}"));
    }
}

/// Reads exactly `n` records (key, value) from the start of `topic` with a fresh group,
/// then checks for 2 s that no more arrive. Panics naming the topic when short or over.
pub async fn consume_exactly(topic: &str, n: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let settings = dev_settings();
    let group = unique_name("reader");
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.kafka.session_timeout_ms.to_string(),
        );
    let consumer: StreamConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records on {topic}", out.len()))
            .expect("consume");
        out.push((
            m.key().map(<[u8]>::to_vec),
            m.payload().unwrap_or_default().to_vec(),
        ));
    }
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(extra.is_err(), "more than {n} records on {topic}");
    out
}

/// Records on `topic` now (all partitions), as a `read_committed` reader sees them: read
/// from the start until nothing more comes for a second (3 s before the first). (The watermarks alone would count
/// the markers that end transactions, and records of aborted ones.)
pub fn topic_record_count(topic: &str) -> i64 {
    let consumer: BaseConsumer =
        mailpipe_kafka::consumer_config(&dev_settings().kafka, &unique_name("count"))
            .create()
            .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment
                .add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&assignment).expect("assign");
    let mut total = 0;
    // The first fetch may take longer than the gaps between records.
    let mut wait = Duration::from_secs(3);
    while let Some(m) = consumer.poll(wait) {
        m.expect("reading the topic");
        total += 1;
        wait = Duration::from_secs(1);
    }
    total
}

/// The `accepted_event_ids` of a `send-samples --summary-json` file: the canonical ids of
/// every event the receiver accepted, what `email_events` and `mail.events.unique` must hold.
pub fn accepted_event_ids(summary: &serde_json::Value) -> std::collections::BTreeSet<String> {
    summary["accepted_event_ids"]
        .as_array()
        .expect("send-samples lists the accepted event ids")
        .iter()
        .map(|id| id.as_str().expect("an id").to_string())
        .collect()
}

/// Every `EmailEvent` record on `topic`, by `event_id`, with how many records carry it.
pub async fn event_id_counts(topic: &str) -> std::collections::BTreeMap<String, usize> {
    #[derive(serde::Deserialize)]
    struct Identity {
        event_id: String,
    }
    let codec = AvroCodec::new(&schema_registry_url()).expect("registry client");
    let n = usize::try_from(topic_record_count(topic)).expect("a count");
    let mut counts = std::collections::BTreeMap::new();
    for (_, payload) in consume_exactly(topic, n).await {
        let identity: Identity = codec.decode(&payload).await.expect("an EmailEvent record");
        *counts.entry(identity.event_id).or_insert(0) += 1;
    }
    counts
}

/// The sum of `group`'s committed offsets over partitions `0..partitions` of `topic`
/// (partitions without a commit count 0): equals the number of messages on the topic
/// once the group has completed and committed them all.
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    try_committed_total(group, topic, partitions).expect("committed offsets")
}

/// [`committed_total`], or the broker's error (e.g. `NotCoordinator` while a fresh
/// broker's offsets topic is still being created), for a caller that polls.
pub fn try_committed_total(
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<i64, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", group)
        // Only offsets are read here: read_uncommitted fetches the last committed ones at
        // once, where read_committed waits out offsets pending in an open transaction
        // (a SIGKILLed stage's, until the broker aborts it).
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let offsets = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum())
}

/// Polls [`committed_total`] until it reaches `expected` (at most 20 s) and returns the last
/// value, for the caller to assert on.
pub async fn wait_for_committed_total(
    group: &str,
    topic: &str,
    partitions: i32,
    expected: i64,
) -> i64 {
    let mut committed = 0;
    for _ in 0..100 {
        committed = committed_total(group, topic, partitions);
        if committed == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    committed
}

/// A binary of the workspace built by `cargo build` (`make build`), looked up next to the
/// running test executable: tests live in `<target>/<profile>/deps/`, binaries one level up.
/// Cargo does not build other crates' binaries for an integration test, so a missing one
/// panics with the command that builds it (`build_hint`, e.g.
/// `cargo build -p mailpipe-stage-4-dedupe`).
pub fn workspace_binary(name: &str, build_hint: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let binary = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} not found: build it first with `{build_hint}` (or `make build`)",
        binary.display()
    );
    if let Some(newer) = source_newer_than(&binary) {
        panic!(
            "{} is stale: {} changed after it was built; rebuild with `{build_hint}` \
             (or `make build`), so the test runs the code it is meant to test",
            binary.display(),
            newer.display()
        );
    }
    binary
}

/// A source file `binary` was built from that changed after it was built, if any. The
/// files come from cargo's dep-info next to the binary (`<name>.d`), each taken in THIS
/// checkout (a shared target directory may hold a binary built from another clone).
fn source_newer_than(binary: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let dep_info = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .ok()?;
    let (_, deps) = dep_info.split_once(": ")?;
    deps.split_whitespace()
        .filter_map(|dep| {
            // Lexically resolved, then rebased on this checkout from `crates/` or
            // `schemas/` on; files of other crates (the registry's) are left out.
            let mut resolved = PathBuf::new();
            for part in Path::new(dep).components() {
                match part {
                    std::path::Component::ParentDir => {
                        resolved.pop();
                    }
                    other => resolved.push(other),
                }
            }
            let text = resolved.to_string_lossy().into_owned();
            let at = text
                .rfind("/crates/mailpipe")
                .or_else(|| text.rfind("/schemas/"))?;
            Some(root.join(&text[at + 1..]))
        })
        .find(|file| {
            std::fs::metadata(file)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified > built)
        })
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The environment variable `key` parsed as a `T` (the stack's address, a bench's or kill
/// test's knob), or `default` when it is unset, empty or does not parse.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Produces `input` as Avro `EmailEvent`s to `topic` in order (key = recipient); see
/// [`produce_avro`].
pub async fn produce_events(settings: Settings, topic: String, input: Vec<EmailEvent>) {
    let records: Vec<(String, &EmailEvent)> = input
        .iter()
        .map(|e| (e.recipient.clone().unwrap_or_default(), e))
        .collect();
    produce_avro(&settings, &topic, EMAIL_EVENT_SCHEMA, &records).await;
}

/// Registers `schema` for `topic` and produces `records` (key, value) encoded with it, in
/// order, with the settings' producer (batched as configured). Waits for every
/// acknowledgement (each within a 10-minute message timeout); panics when the queue stays
/// full for 10 minutes.
pub async fn produce_avro<T: serde::Serialize>(
    settings: &Settings,
    topic: &str,
    schema: &str,
    records: &[(String, T)],
) {
    let codec = AvroCodec::new(&settings.schema_registry.url).expect("registry client");
    let schema = codec
        .register(&TopicSchema::new(topic, schema).expect("schema"))
        .await
        .expect("registering the schema");
    let mut kafka = settings.kafka.clone();
    kafka.message_timeout_ms = 600_000;
    let producer = mailpipe_kafka::create_producer(&kafka).expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    for (key, value) in records {
        let payload = schema.encode(value, 512).expect("encoding a record");
        loop {
            let record = FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                // Queue full: wait for acknowledgements; the order is kept.
                Err((e, _)) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the producer queue stayed full for 10 minutes: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
            }
        }
    }
    for delivery in pending {
        delivery.await.expect("delivery").expect("acknowledged");
    }
}

/// Kafka bootstrap servers.
pub fn kafka_brokers() -> String {
    env_or("MAILPIPE_KAFKA__BROKERS", String::from("127.0.0.1:9092"))
}

/// Schema registry base URL.
pub fn schema_registry_url() -> String {
    env_or(
        "MAILPIPE_SCHEMA_REGISTRY__URL",
        String::from("http://127.0.0.1:8081/apis/ccompat/v7"),
    )
}

/// ClickHouse HTTP URL.
pub fn clickhouse_url() -> String {
    env_or(
        "MAILPIPE_CLICKHOUSE__URL",
        String::from("http://127.0.0.1:8123"),
    )
}

/// Redis URL.
pub fn redis_url() -> String {
    env_or(
        "MAILPIPE_REDIS__URL",
        String::from("redis://127.0.0.1:6379"),
    )
}

/// A name no other test (or earlier run) uses: `<prefix>-<uuid v7 simple>`. Only letters,
/// digits, '-' and '_', so it is valid as a topic, group, subject or (with `_`) database.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// The end of a kill test's input, held back and released piece by piece, so that a stage
/// which gets through its input in seconds still has work in hand at every planned kill
/// (a restarted process with nothing to consume cannot be killed "while processing", and a
/// run that finishes before its kills tests nothing).
///
/// A piece is released only once everything released before is committed, so pieces are
/// produced one after the other and each key's order holds across them.
pub struct HeldTail<T> {
    pending: std::collections::VecDeque<T>,
    piece: usize,
    released: i64,
}

impl<T> HeldTail<T> {
    /// `tail` is held back; `already_released` inputs were produced before it; it is
    /// released in pieces of `piece` inputs.
    pub fn new(tail: Vec<T>, already_released: usize, piece: usize) -> HeldTail<T> {
        HeldTail {
            pending: tail.into(),
            piece: piece.max(1),
            released: already_released as i64,
        }
    }

    /// The next inputs to produce, if the stage has committed all released so far: one
    /// piece while kills remain (`all = false`), everything left once they are done.
    pub fn next(&mut self, committed: i64, all: bool) -> Option<Vec<T>> {
        if self.pending.is_empty() || committed < self.released {
            return None;
        }
        let n = if all {
            self.pending.len()
        } else {
            self.piece.min(self.pending.len())
        };
        self.released += n as i64;
        Some(self.pending.drain(..n).collect())
    }

    /// Inputs not released yet.
    pub fn remaining(&self) -> usize {
        self.pending.len()
    }
}

/// A SendGrid "delivered" event `seq` for recipient `user<seq % recipients>@example.com`,
/// as the stage tests feed `mail.events`; `copy` > 0 is an ESP retry of it (same
/// `event_id`, another raw request and raw event).
pub fn delivered_event(seq: usize, copy: usize, recipients: usize) -> EmailEvent {
    EventBuilder::delivered(format!("ev-{seq}"))
        .at(event::DEFAULT_AT_MS + seq as i64)
        .recipient(format!("user{}@example.com", seq % recipients))
        .message_id(format!("msg-{seq}"))
        .mta_response("250 ok")
        .raw_request_id(format!("req-{seq}-{copy}"))
        .raw_event(format!("{{\"sg_event_id\":\"ev-{seq}\",\"copy\":{copy}}}"))
        .build()
}

/// Applies every migration of `schemas/clickhouse` to `settings`' database (a test's own).
pub async fn migrate_clickhouse(settings: &Settings) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/clickhouse");
    let migrations = mailpipe_clickhouse::load_migrations(&dir).expect("the migrations");
    mailpipe_clickhouse::migrate(&settings.clickhouse, &migrations)
        .await
        .expect("migrating the test's database");
}

/// Drops `settings`' ClickHouse database (a test's own) at the end of a test; a failure
/// only leaves it behind.
pub async fn drop_clickhouse_database(settings: &Settings) {
    let sql = format!("DROP DATABASE IF EXISTS {}", settings.clickhouse.database);
    let _ = mailpipe_clickhouse::client(&settings.clickhouse)
        .query(&sql)
        .execute()
        .await;
}

/// The raw record the receiver would write for a sample `request` received at
/// `received_at` (Unix ms).
pub fn raw_record(
    request_id: String,
    request: &mailpipe_samples::WebhookRequest,
    received_at: i64,
) -> mailpipe_avro::records::RawRecord {
    mailpipe_avro::records::RawRecord {
        request_id,
        received_at,
        provider: request.provider.as_str().into(),
        source: request.source.clone(),
        method: "POST".into(),
        path: request.path.clone(),
        query: String::new(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| mailpipe_avro::records::Header {
                name: name.to_ascii_lowercase(),
                value: value.as_bytes().to_vec(),
            })
            .collect(),
        remote_addr: Some("127.0.0.1".into()),
        body: request.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_safe_identifiers() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn the_held_tail_comes_a_piece_at_a_time_once_all_before_is_committed() {
        // 10 produced before, 25 held back in pieces of 10.
        let mut tail = HeldTail::new((0..25).collect::<Vec<u32>>(), 10, 10);
        assert_eq!(tail.next(9, false), None, "the head is not committed yet");
        assert_eq!(tail.next(10, false), Some((0..10).collect()));
        assert_eq!(
            tail.next(15, false),
            None,
            "the first piece is not committed"
        );
        assert_eq!(tail.next(20, false), Some((10..20).collect()));
        // Kills done: everything left, once the second piece is committed.
        assert_eq!(tail.next(25, true), None);
        assert_eq!(tail.next(30, true), Some((20..25).collect()));
        assert_eq!(tail.remaining(), 0);
        assert_eq!(tail.next(35, true), None);
    }
}
