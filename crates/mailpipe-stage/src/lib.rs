//! The frame of every consumer stage binary: load settings, start logging and metrics,
//! and run the shared consumer loop with the stage's handler. The stage kit ([`kit`]:
//! [`StageKit`], `kit::run`, the per-message frame [`PerMessage`]) is what a stage is built
//! on; [`Emitter`] produces a batch's outputs in input order and completes each input's ack
//! only once every output is acknowledged by Kafka; [`StageError`] and
//! [`DeadLetterReason`] say what a failure leads to (retry, dead letter, stop).
//!
//! Invariant: a stage completes an input message only after all records derived from it
//! are acknowledged (`acks=all`); transient produce failures are retried, never dropped.
//! An output that can never be produced turns its input into an `unproducible` dead
//! letter; only a dead letter that cannot be produced stops the stage.
//!
//! Exactly once (`[kafka] exactly_once`, on by default): a stage that reads a topic and
//! writes topics ([`Stage::exactly_once`]) runs the consumer loop with a transactional
//! producer, and its [`Emitter`] hands records to the loop's transactions instead of
//! producing them (`mailpipe_kafka::transaction`).
//!
//! Sizes: the stages' producers and consumers take records of up to
//! `ReceiverSettings::max_derived_record_bytes` (the largest raw record plus a margin), so
//! a copy of anything the receiver accepted can be read and written.

mod dead_letter;
pub mod emit;
mod error;
pub mod kit;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use mailpipe_kafka::transaction::Transactions;
use mailpipe_kafka::{
    Handler, LoopConfig, LoopHealth, Readiness, Topic, TopicNames, TransactionConfig,
};
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

pub use dead_letter::{
    decode_retrying, now_ms, registry_retrying, DeadLetters, InputRef, Origin,
    UNPRODUCIBLE_PAYLOAD_BYTES,
};
pub use emit::{Emission, Emitter};
pub use error::{DeadLetterReason, StageError};
pub use kit::{
    EventReader, MessageHandler, Output, Pass, PerMessage, Processed, StageHandler, StageKit,
};
pub use mailpipe_kafka::OutRecord;
/// The one shutdown signal of every binary (re-exported for the stages' `main`).
pub use mailpipe_runtime::shutdown_on_signals;

/// The consumer stages, named as in the config and in binary names (`mailpipe-<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Verify,
    Normalize,
    Dedupe,
    Aggregate,
    Rules,
    Deliver,
}

impl Stage {
    /// Every consumer stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Verify,
        Stage::Normalize,
        Stage::Dedupe,
        Stage::Aggregate,
        Stage::Rules,
        Stage::Deliver,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Verify => "verify",
            Stage::Normalize => "normalize",
            Stage::Dedupe => "dedupe",
            Stage::Aggregate => "aggregate",
            Stage::Rules => "rules",
            Stage::Deliver => "deliver",
        }
    }

    /// The topic the stage consumes (its events; see [`Stage::inputs`]).
    pub fn input(self) -> Topic {
        self.inputs()[0]
    }

    /// Every topic the stage consumes: the aggregate stage also loads the rules and deliver
    /// stages' records, the rejected requests and the dead letters into ClickHouse.
    pub fn inputs(self) -> &'static [Topic] {
        match self {
            Stage::Verify => &[Topic::Raw],
            Stage::Normalize => &[Topic::Verified],
            Stage::Dedupe => &[Topic::Events],
            Stage::Aggregate => &[
                Topic::EventsUnique,
                Topic::Actions,
                Topic::Suppressions,
                Topic::Deliveries,
                Topic::Rejected,
                Topic::Dlq,
            ],
            Stage::Rules => &[Topic::EventsUnique],
            Stage::Deliver => &[Topic::Actions],
        }
    }

    /// Whether the stage runs in exactly-once mode: it writes topics (the aggregate stage
    /// writes ClickHouse, the deliver stage Redis and HTTP targets) and `[kafka]
    /// exactly_once` is on.
    pub fn exactly_once(self, settings: &Settings) -> bool {
        settings.kafka.exactly_once && !matches!(self, Stage::Aggregate | Stage::Deliver)
    }

    /// Consumer group id: one group per stage, prefixed like the topics so two deployments
    /// sharing a cluster do not share offsets.
    pub fn group_id(self, settings: &Settings) -> String {
        format!("{}mailpipe-{}", settings.kafka.topic_prefix, self.name())
    }

    /// Where the stage serves `/metrics`, `/healthz` and `/readyz`.
    pub fn metrics_listen(self, settings: &Settings) -> std::net::SocketAddr {
        let m = &settings.telemetry.metrics_listen;
        match self {
            Stage::Verify => m.verify,
            Stage::Normalize => m.normalize,
            Stage::Dedupe => m.dedupe,
            Stage::Aggregate => m.aggregate,
            Stage::Rules => m.rules,
            Stage::Deliver => m.deliver,
        }
    }
}

/// Loads settings and starts logging and the stage's endpoints (`/metrics`, `/healthz`,
/// `/readyz` on its metrics address); for a stage's `main`.
pub fn start(stage: Stage) -> anyhow::Result<Settings> {
    let settings = Settings::load()?;
    mailpipe_telemetry::init_logging(&settings.telemetry)?;
    let addr = stage.metrics_listen(&settings);
    let stall_ms = i64::try_from(settings.telemetry.ready_stall_seconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let ready: mailpipe_telemetry::ReadyCheck =
        Arc::new(move || match health().readiness(stall_ms) {
            Readiness::Ready(detail) => Ok(detail),
            Readiness::NotReady(reason) => Err(reason),
        });
    mailpipe_telemetry::serve_endpoints(addr, ready)
        .with_context(|| format!("serving {} metrics and health on {addr}", stage.name()))?;
    tokio::spawn(report_health(stage, stall_ms));
    tracing::info!(stage = stage.name(), metrics = %addr, "starting");
    Ok(settings)
}

/// The health of this process's consumer loop (one stage per process; tests that run
/// several loops in one process share it, and serve no endpoint).
pub fn health() -> LoopHealth {
    static HEALTH: OnceLock<LoopHealth> = OnceLock::new();
    HEALTH.get_or_init(LoopHealth::default).clone()
}

/// Keeps the readiness gauges current, for alerting on a stage that is up but stuck.
async fn report_health(stage: Stage, stall_ms: i64) {
    let name = stage.name();
    loop {
        let h = health();
        let ready = h.readiness(stall_ms).is_ready();
        let snapshot = h.snapshot();
        metrics::gauge!(names::STAGE_READY, "stage" => name).set(if ready { 1.0 } else { 0.0 });
        metrics::gauge!(names::STAGE_ASSIGNED_PARTITIONS, "stage" => name)
            .set(snapshot.assigned as f64);
        let quiet_ms = if snapshot.in_flight == 0 {
            0
        } else {
            now_ms().saturating_sub(snapshot.last_progress_ms)
        };
        metrics::gauge!(names::STAGE_LAST_PROGRESS_SECONDS, "stage" => name)
            .set(quiet_ms as f64 / 1000.0);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Runs the stage's consumer loop until `shutdown` (then drains and commits) or a fatal
/// error.
pub async fn run_consumer<H: Handler>(
    stage: Stage,
    settings: &Settings,
    handler: H,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let topics: Vec<String> = stage.inputs().iter().map(|t| names.name(*t)).collect();
    let client = mailpipe_kafka::consumer_config_for_records_up_to(
        &settings.kafka,
        &stage.group_id(settings),
        settings.receiver.max_derived_record_bytes(),
    );
    let mut config = LoopConfig::from(&settings.kafka.consumer);
    config.health = health();
    let transactions = if stage.exactly_once(settings) {
        Some(transactions(stage, settings).await?)
    } else {
        None
    };
    mailpipe_kafka::consumer::run(client, &topics, config, handler, transactions, shutdown)
        .await
        .with_context(|| format!("{} consumer loop", stage.name()))
}

/// The transactional producer of a stage in exactly-once mode, initialized (which fences
/// an earlier instance with the same transactional id and aborts what it left open).
async fn transactions(stage: Stage, settings: &Settings) -> anyhow::Result<Transactions> {
    let kafka = &settings.kafka;
    let transactional_id = format!("{}.{}", stage.group_id(settings), instance_id(settings));
    let timeout_ms = kafka.transactions.timeout_ms;
    let mut config = mailpipe_kafka::producer_config_for_records_up_to(
        kafka,
        settings.receiver.max_derived_record_bytes(),
    );
    config
        .set("transactional.id", &transactional_id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        // librdkafka refuses a delivery timeout longer than the transaction's.
        .set(
            "message.timeout.ms",
            kafka.message_timeout_ms.min(timeout_ms).to_string(),
        );
    let producer: FutureProducer = config
        .create()
        .context("creating the transactional producer")?;
    let config = TransactionConfig {
        stage: stage.name().to_string(),
        max_records: kafka.transactions.max_records,
        interval: Duration::from_millis(kafka.transactions.interval_ms),
        call_timeout: Duration::from_millis(u64::from(timeout_ms)),
    };
    tracing::info!(stage = stage.name(), %transactional_id, "exactly-once: initializing transactions");
    Transactions::init(producer, config)
        .await
        .with_context(|| format!("initializing transactions as {transactional_id}"))
}

/// `[kafka] instance_id`, or `<hostname>-<pid>` when it is empty.
fn instance_id(settings: &Settings) -> String {
    if !settings.kafka.instance_id.is_empty() {
        return settings.kafka.instance_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}-{}", std::process::id())
}

/// The [`Emitter`] a stage writes through: staging records for the loop's transactions in
/// exactly-once mode, producing them itself otherwise.
pub fn emitter(
    stage: Stage,
    settings: &Settings,
    dead_letters: DeadLetters,
) -> anyhow::Result<Emitter> {
    if stage.exactly_once(settings) {
        Ok(Emitter::staging(dead_letters))
    } else {
        Ok(Emitter::producing(create_producer(settings)?, dead_letters))
    }
}

/// A stage's producer: our defaults, taking records of up to
/// `ReceiverSettings::max_derived_record_bytes` (unless the operator set
/// `message.max.bytes`).
pub fn create_producer(settings: &Settings) -> anyhow::Result<FutureProducer> {
    let max_record_bytes = settings.receiver.max_derived_record_bytes();
    mailpipe_kafka::producer_config_for_records_up_to(&settings.kafka, max_record_bytes)
        .create()
        .context("creating the kafka producer")
}
