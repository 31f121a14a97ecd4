//! Whole-batch loads into ClickHouse.
//!
//! A batch is sent when it reaches `max_rows` or `max_bytes`, or `max_wait` after its first
//! row. Loading a batch is two steps, each retried with backoff until it succeeds: insert
//! the rows into their tables, `email_events` and, for the rules stage's records,
//! `rule_executions`, `suppressions`, `delivery_attempts`, `rejected_requests` and
//! `dead_letters` (the same rows again after an ambiguous failure, so
//! the retry writes the same bytes, and the tables' engines collapse whatever the failed try
//! may have stored), then recompute every window the batch's events touched into
//! `email_stats_1m`.
//! The two steps run in two tasks, so the next insert overlaps the previous
//! recomputation, and batches inserted meanwhile are recomputed together (a window's
//! recomputation costs about the same for one row or thousands). Only after its windows
//! are recomputed are a batch's messages completed, so their offsets are committed after both
//! tables acknowledged. While ClickHouse is down nothing completes, the consumer loop's
//! in-flight limit pauses the partitions, and loading resumes by itself when it is back.

use std::collections::BTreeSet;
use std::time::Duration;

use mailpipe_clickhouse::ClickHouseError;
use mailpipe_kafka::Ack;
use mailpipe_settings::{AggregateSettings, ClickHouseSettings};
use mailpipe_telemetry::names;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::actions::{ActionRow, AttemptRow, SuppressionRow};
use crate::problems::{DeadLetterRow, RejectionRow};
use crate::row::EventRow;
use crate::windows::{recompute_statements, window_ranges, window_start};

/// A row for one of the tables the stage loads. Events are nearly every row, and each is
/// moved once into its batch: boxing them would add an allocation per event for nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Row {
    Event(EventRow),
    Action(ActionRow),
    Suppression(SuppressionRow),
    Attempt(AttemptRow),
    Rejection(RejectionRow),
    DeadLetter(DeadLetterRow),
}

impl Row {
    fn approximate_bytes(&self) -> usize {
        match self {
            Row::Event(r) => r.approximate_bytes(),
            Row::Action(r) => r.approximate_bytes(),
            Row::Suppression(r) => r.approximate_bytes(),
            Row::Attempt(r) => r.approximate_bytes(),
            Row::Rejection(r) => r.approximate_bytes(),
            Row::DeadLetter(r) => r.approximate_bytes(),
        }
    }
}

/// One record's row to load and the ack completed once it is loaded (for an event: in
/// `email_events` and its window recomputed).
#[derive(Debug)]
pub struct Pending {
    pub row: Row,
    pub ack: Ack,
    /// When the stage received it: a batch is due `max_wait` after its oldest row
    /// arrived, including time spent queued behind the previous load.
    pub arrived: Instant,
}

/// When a batch is full or due.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
}

impl From<&AggregateSettings> for BatchLimits {
    fn from(s: &AggregateSettings) -> BatchLimits {
        BatchLimits {
            max_rows: s.max_rows,
            max_bytes: s.max_bytes,
            max_wait: Duration::from_millis(s.max_wait_ms),
        }
    }
}

/// Rows waiting to be loaded together.
#[derive(Debug, Default)]
pub struct Batch {
    rows: Vec<EventRow>,
    actions: Vec<ActionRow>,
    suppressions: Vec<SuppressionRow>,
    attempts: Vec<AttemptRow>,
    rejections: Vec<RejectionRow>,
    dead_letters: Vec<DeadLetterRow>,
    acks: Vec<Ack>,
    bytes: usize,
    windows: BTreeSet<u32>,
    started: Option<Instant>,
}

impl Batch {
    pub fn push(&mut self, pending: Pending) {
        self.bytes += pending.row.approximate_bytes();
        match pending.row {
            Row::Event(row) => {
                self.windows.insert(window_start(row.occurred_at));
                self.rows.push(row);
            }
            Row::Action(row) => self.actions.push(row),
            Row::Suppression(row) => self.suppressions.push(row),
            Row::Attempt(row) => self.attempts.push(row),
            Row::Rejection(row) => self.rejections.push(row),
            Row::DeadLetter(row) => self.dead_letters.push(row),
        }
        self.acks.push(pending.ack);
        let started = self.started.get_or_insert(pending.arrived);
        *started = (*started).min(pending.arrived);
    }

    /// Rows of every table.
    pub fn len(&self) -> usize {
        self.acks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    pub fn is_full(&self, limits: &BatchLimits) -> bool {
        self.len() >= limits.max_rows || self.bytes >= limits.max_bytes
    }

    /// When the batch must be sent even if not full; `None` while empty.
    pub fn deadline(&self, limits: &BatchLimits) -> Option<Instant> {
        self.started.map(|t| t + limits.max_wait)
    }

    /// The window starts the batch touched.
    pub fn windows(&self) -> &BTreeSet<u32> {
        &self.windows
    }
}

/// A batch inserted into `email_events` whose windows are still to be recomputed.
#[derive(Debug)]
pub struct Inserted {
    windows: BTreeSet<u32>,
    acks: Vec<Ack>,
    /// When its oldest row arrived.
    started: Instant,
}

/// Loads batches into the configured database.
#[derive(Clone)]
pub struct Loader {
    client: clickhouse::Client,
    settings: ClickHouseSettings,
}

impl Loader {
    pub fn new(settings: &ClickHouseSettings) -> Loader {
        Loader {
            client: mailpipe_clickhouse::client(settings).with_database(&settings.database),
            settings: settings.clone(),
        }
    }

    /// Step 1: inserts the batch's rows into their tables, retrying with the same rows
    /// until it succeeds. Its windows and acks go on to [`Loader::recompute`].
    pub async fn insert_batch(&self, batch: Batch) -> Inserted {
        let Batch {
            mut rows,
            actions,
            suppressions,
            attempts,
            rejections,
            dead_letters,
            acks,
            windows,
            started,
            ..
        } = batch;
        let took = Instant::now();
        let inserted_at_ms = unix_ms();
        for row in &mut rows {
            row.inserted_at_ms = inserted_at_ms;
        }
        self.insert_all("email_events", &rows).await;
        self.insert_all("rule_executions", &actions).await;
        self.insert_all("suppressions", &suppressions).await;
        self.insert_all("delivery_attempts", &attempts).await;
        self.insert_all("rejected_requests", &rejections).await;
        self.insert_all("dead_letters", &dead_letters).await;
        tracing::debug!(rows = acks.len(), took = ?took.elapsed(), "batch inserted");
        metrics::histogram!(names::AGGREGATE_BATCH_ROWS).record(acks.len() as f64);
        Inserted {
            windows,
            acks,
            started: started.unwrap_or_else(Instant::now),
        }
    }

    /// Step 2: recomputes every window the inserted batches touched (once for all of
    /// them), retrying until it succeeds, then completes their acks.
    pub async fn recompute(&self, inserted: Vec<Inserted>) {
        let windows: BTreeSet<u32> = inserted
            .iter()
            .flat_map(|i| i.windows.iter().copied())
            .collect();
        let statements = recompute_statements(&self.settings.database, &window_ranges(&windows));
        let took = Instant::now();
        for sql in &statements {
            self.until_ok("recompute", || self.execute(sql)).await;
        }
        tracing::debug!(batches = inserted.len(), windows = windows.len(), took = ?took.elapsed(), "windows recomputed");
        metrics::counter!(names::AGGREGATE_WINDOWS_RECOMPUTED).increment(windows.len() as u64);
        for batch in inserted {
            metrics::histogram!(names::AGGREGATE_BATCH_SECONDS)
                .record(batch.started.elapsed().as_secs_f64());
            for ack in batch.acks {
                ack.complete();
            }
        }
    }

    /// Inserts `rows` (if any) into `table`, retrying until it succeeds.
    async fn insert_all<T>(&self, table: &'static str, rows: &[T])
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return;
        }
        self.until_ok("insert", || self.insert(table, rows)).await;
        metrics::counter!(names::AGGREGATE_ROWS_INSERTED, "table" => table)
            .increment(rows.len() as u64);
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), ClickHouseError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        let limit = Duration::from_millis(self.settings.timeout_ms);
        let write = async {
            let mut insert = self
                .client
                .insert::<T>(table)
                .await?
                .with_timeouts(Some(limit), Some(limit));
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        };
        mailpipe_clickhouse::with_timeout(&self.settings, write).await
    }

    async fn execute(&self, sql: &str) -> Result<(), ClickHouseError> {
        mailpipe_clickhouse::with_timeout(&self.settings, self.client.query(sql).execute()).await
    }

    /// Runs `step` until it succeeds, backing off from 100 ms to 5 s between failures.
    async fn until_ok<F, Fut>(&self, step: &'static str, mut attempt: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), ClickHouseError>>,
    {
        let mut failures = 0u32;
        loop {
            match attempt().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(step, failures, "clickhouse is answering again");
                    }
                    return;
                }
                Err(error) => {
                    metrics::counter!(names::AGGREGATE_CLICKHOUSE_ERRORS, "step" => step)
                        .increment(1);
                    let wait = Duration::from_millis((100u64 << failures.min(6)).min(5_000));
                    tracing::warn!(step, %error, retry_in = ?wait, "clickhouse call failed; retrying");
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// The loading task: collects pending rows into batches and inserts each when full or
/// due; a second task recomputes windows and completes acks, so the next insert does not
/// wait for the previous recomputation, and the windows of batches inserted meanwhile are
/// recomputed together. Ends, after loading what it holds, when the sending side is closed.
pub async fn run(
    loader: Loader,
    limits: BatchLimits,
    mut rx: mpsc::UnboundedReceiver<Vec<Pending>>,
) {
    let (inserted_tx, inserted_rx) = mpsc::unbounded_channel();
    let recomputing = tokio::spawn(recompute_task(loader.clone(), inserted_rx));
    let out = Out {
        loader: &loader,
        limits: &limits,
        inserted: &inserted_tx,
    };
    let mut batch = Batch::default();
    loop {
        let deadline = batch.deadline(&limits);
        tokio::select! {
            biased;
            received = rx.recv() => match received {
                Some(items) => out.add(&mut batch, items).await,
                None => break,
            },
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
        }
        // Due: take along what is already queued (rows that waited behind the previous
        // insert), so a late batch is one full insert rather than many small ones.
        if batch.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
            while let Ok(items) = rx.try_recv() {
                out.add(&mut batch, items).await;
            }
            out.flush(&mut batch).await;
        }
    }
    out.flush(&mut batch).await;
    drop(inserted_tx);
    let _ = recomputing.await;
}

struct Out<'a> {
    loader: &'a Loader,
    limits: &'a BatchLimits,
    inserted: &'a mpsc::UnboundedSender<Inserted>,
}

impl Out<'_> {
    /// Adds rows to the batch, inserting it each time it becomes full.
    async fn add(&self, batch: &mut Batch, items: Vec<Pending>) {
        for pending in items {
            batch.push(pending);
            if batch.is_full(self.limits) {
                self.flush(batch).await;
            }
        }
    }

    async fn flush(&self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let inserted = self.loader.insert_batch(std::mem::take(batch)).await;
        // Fails only if the recompute task ended, which it does only after this side.
        let _ = self.inserted.send(inserted);
    }
}

/// Recomputes the windows of inserted batches, all that are waiting at once.
async fn recompute_task(loader: Loader, mut rx: mpsc::UnboundedReceiver<Inserted>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        loader.recompute(group).await;
    }
}

/// Wall-clock Unix milliseconds, recorded as `inserted_at_ms` (never decided on).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
