//! The aggregate stage: `mail.events.unique` → ClickHouse `email_events` (one row per
//! distinct event) and `email_stats_1m` (one-minute roll-ups), exact after any crash or
//! replay; and the rules and deliver stages' records, `mail.actions` → `rule_executions`,
//! `mail.suppressions` → `suppressions`, `mail.deliveries` → `delivery_attempts`
//! ([`actions`]), so analysts query those too; and what went wrong, `mail.rejected` →
//! `rejected_requests`, `mail.dlq` → `dead_letters` ([`problems`]), for the console.
//!
//! Why the counts are exact:
//! - `email_events` is a ReplacingMergeTree whose sorting key is made only of the event's
//!   own fields, ending with `event_id`: a copy of an event (a replay from the committed
//!   offset, a second copy written by dedupe after a crash) collapses into one row, so
//!   `count() … FINAL` counts distinct events.
//! - `email_stats_1m` rows are never incremented: each window a batch touched is recomputed
//!   whole from `email_events FINAL` after the batch is inserted ([`windows`]). A window's
//!   count only grows, so the table keeps the largest (= newest) computation per window
//!   (ReplacingMergeTree with `events` as version): `sum(events) … FINAL` equals
//!   `count() FROM email_events FINAL`, late events included.
//! - Offsets are committed only after both steps are acknowledged ([`loader`]); a crash in
//!   between replays the batch, which re-inserts identical rows and recomputes the same
//!   windows.

pub mod actions;
pub mod loader;
pub mod privacy;
pub mod problems;
pub mod row;
pub mod windows;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailpipe_avro::records::{DeadLetterRecord, RejectedRecord};
use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic};
use mailpipe_settings::Settings;
use mailpipe_stage::{decode_retrying, Stage, StageError, StageHandler, StageKit};
use mailpipe_telemetry::names;
use rdkafka::message::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::actions::{
    ActionRecord, ActionRow, AttemptRecord, AttemptRow, SuppressionRecord, SuppressionRow,
};
use crate::loader::{BatchLimits, Loader, Pending, Row};
use crate::privacy::RecipientHasher;
use crate::problems::{DeadLetterRow, RejectionRow};
use crate::row::EventRow;
use crate::windows::{Timeliness, Watermarks};

/// Runs the stage until `shutdown`: the consumer loop, the loader, and the retention task.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let retention = tokio::spawn(retention_task(settings.clone(), shutdown.clone()));
    let result =
        mailpipe_stage::kit::run::<AggregateHandler>(Stage::Aggregate, &settings, shutdown).await;
    retention.abort();
    result
}

/// Decodes events, tracks watermarks, and hands rows to the loader task. At least once
/// (it writes ClickHouse, not topics): it takes the kit's codec, dead letters and emitter
/// (a plain producer), and batches rows itself ([`loader`]) instead of the per-message
/// frame.
pub struct AggregateHandler {
    kit: StageKit,
    watermarks: Watermarks,
    actions_topic: String,
    suppressions_topic: String,
    deliveries_topic: String,
    rejected_topic: String,
    dlq_topic: String,
    raw_topic: String,
    hasher: Option<RecipientHasher>,
    to_loader: Option<mpsc::UnboundedSender<Vec<Pending>>>,
    loader: Option<JoinHandle<()>>,
}

impl StageHandler for AggregateHandler {
    /// Starts the loader task. ClickHouse is not contacted here: an unavailable server
    /// delays loads, not start-up.
    async fn build(kit: StageKit) -> anyhow::Result<AggregateHandler> {
        let settings = kit.settings();
        let (tx, rx) = mpsc::unbounded_channel();
        let loader = Loader::new(&settings.clickhouse);
        let limits = BatchLimits::from(&settings.aggregate);
        Ok(AggregateHandler {
            watermarks: Watermarks::new(settings.aggregate.allowed_lateness_seconds),
            actions_topic: kit.topic(Topic::Actions),
            suppressions_topic: kit.topic(Topic::Suppressions),
            deliveries_topic: kit.topic(Topic::Deliveries),
            rejected_topic: kit.topic(Topic::Rejected),
            dlq_topic: kit.topic(Topic::Dlq),
            raw_topic: kit.topic(Topic::Raw),
            hasher: RecipientHasher::from_settings(&settings.privacy),
            to_loader: Some(tx),
            loader: Some(tokio::spawn(loader::run(loader, limits, rx))),
            kit,
        })
    }
}

impl AggregateHandler {
    /// The row of one consumed record, by its topic (`None`: a tombstone of the compacted
    /// `mail.suppressions`, written by `mailpipe erase`: nothing to load). With `[privacy]
    /// hash_recipients`, recipients are hashed before the row goes anywhere.
    async fn row<M: Message>(&mut self, message: &M) -> Result<Option<Row>, StageError> {
        let mut row = self.plain_row(message).await?;
        if let (Some(hasher), Some(row)) = (&self.hasher, row.as_mut()) {
            match row {
                Row::Event(r) => hasher.event(r),
                Row::Action(r) => hasher.action(r),
                Row::Suppression(r) => hasher.suppression(r),
                Row::Rejection(r) => hasher.rejection(r),
                Row::DeadLetter(r) => hasher.dead_letter(r),
                Row::Attempt(_) => {}
            }
        }
        Ok(row)
    }

    async fn plain_row<M: Message>(&mut self, message: &M) -> Result<Option<Row>, StageError> {
        let codec = self.kit.codec();
        let topic = message.topic();
        if topic == self.suppressions_topic && message.payload().is_none() {
            return Ok(None);
        }
        let payload = message.payload().unwrap_or_default();
        if topic == self.actions_topic {
            let record: ActionRecord = decode_retrying(codec, payload).await?;
            return Ok(Some(Row::Action(ActionRow::from(record))));
        }
        if topic == self.deliveries_topic {
            let record: AttemptRecord = decode_retrying(codec, payload).await?;
            return Ok(Some(Row::Attempt(AttemptRow::from(record))));
        }
        if topic == self.rejected_topic {
            let record: RejectedRecord = decode_retrying(codec, payload).await?;
            return Ok(Some(Row::Rejection(RejectionRow::from(record))));
        }
        if topic == self.dlq_topic {
            let record: DeadLetterRecord = decode_retrying(codec, payload).await?;
            let row = DeadLetterRow::new(record, &self.raw_topic);
            return Ok(Some(Row::DeadLetter(row)));
        }
        if topic == self.suppressions_topic {
            let record: SuppressionRecord = decode_retrying(codec, payload).await?;
            let row = SuppressionRow::new(record, message.partition(), message.offset());
            return Ok(Some(Row::Suppression(row)));
        }
        let event = self.kit.events().read(codec, payload).await?;
        metrics::counter!(names::AGGREGATE_EVENTS, "provider" => event.provider.as_str())
            .increment(1);
        let mut row = EventRow::from_event(event);
        // A replay's correction replaces the event's rows of lower revision (`mailpipe
        // replay` deletes them once this row is in).
        row.revision = mailpipe_kafka::correction_revision(message).unwrap_or(0);
        if self
            .watermarks
            .observe(message.partition(), row.occurred_at)
            == Timeliness::Late
        {
            metrics::counter!(names::AGGREGATE_LATE_EVENTS).increment(1);
        }
        Ok(Some(Row::Event(row)))
    }
}

impl Handler for AggregateHandler {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        let arrived = tokio::time::Instant::now();
        let mut pending = Vec::with_capacity(batch.len());
        for Delivery { message, ack } in batch {
            let row = match self.row(&message).await {
                Ok(Some(row)) => row,
                Ok(None) => {
                    ack.complete();
                    continue;
                }
                Err(StageError::Permanent { reason, detail }) => {
                    self.kit.dead_letter(&message, ack, reason, detail).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            pending.push(Pending { row, ack, arrived });
        }
        if let Some(newest) = self.watermarks.newest() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let lag = now.as_secs_f64() - f64::from(newest);
            metrics::gauge!(names::AGGREGATE_WINDOW_LAG_SECONDS).set(lag);
        }
        if !pending.is_empty() {
            let sender = self.to_loader.as_ref().ok_or("loader already closed")?;
            sender.send(pending).map_err(|_| "the loader task ended")?;
        }
        Ok(())
    }

    /// Loads what is buffered (the consumer loop bounds how long this may take; what is
    /// not loaded by then is not committed, and is redelivered after the restart).
    async fn finish(&mut self) -> Result<(), HandlerError> {
        drop(self.to_loader.take());
        if let Some(loader) = self.loader.take() {
            loader.await?;
        }
        Ok(())
    }
}

/// Drops expired monthly partitions now and every `retention_interval_seconds`.
async fn retention_task(settings: Settings, shutdown: CancellationToken) {
    let months = settings.aggregate.retention_months;
    if months == 0 {
        return;
    }
    let interval = Duration::from_secs(settings.aggregate.retention_interval_seconds);
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        match mailpipe_clickhouse::retention::drop_expired(&settings.clickhouse, months, now, false)
            .await
        {
            Ok(dropped) => {
                for p in dropped {
                    metrics::counter!(names::AGGREGATE_PARTITIONS_DROPPED, "table" => p.table)
                        .increment(1);
                }
            }
            Err(error) => {
                metrics::counter!(names::AGGREGATE_CLICKHOUSE_ERRORS, "step" => "retention")
                    .increment(1);
                tracing::warn!(%error, "retention: dropping expired partitions failed; next try in an hour or so");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
