//! The one consumer loop every stage runs.
//!
//! The loop polls Kafka, hands messages in batches to the stage's [`Handler`] (running in
//! its own task), and commits the contiguous prefix of offsets the handler has completed.
//! Each message carries an [`Ack`]; the handler calls [`Ack::complete`] once everything
//! derived from the message is acknowledged downstream — possibly later, possibly out of
//! order. A partition with too much work in flight is paused (polling goes on, so the group
//! membership stays alive) and resumed when the work drains. On shutdown the loop stops
//! polling, lets the handler finish what it holds (bounded), commits, and returns.
//!
//! An `Ack` dropped without `complete()` while running means the handler lost track of a
//! message: the loop commits what is safe and stops with [`KafkaError::Abandoned`], so the
//! process restarts and the message is redelivered rather than skipped.
//!
//! Exactly-once mode (`Some(Transactions)` given to [`run`]): handlers complete messages
//! with the records to produce ([`Ack::complete_with`]) and the loop commits them with the
//! offsets in Kafka transactions instead of committing offsets itself ([`crate::transaction`]);
//! staged messages count as in flight for pausing.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailpipe_settings::ConsumerSettings;
use mailpipe_telemetry::names;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::health::LoopHealth;
use crate::offsets::{OffsetTracker, TopicPartition};
use crate::transaction::{Outcome, PartitionWork, Staged, Staging, Transactions};
use crate::KafkaError;

/// The error a handler returns when it cannot go on (a bug, or a permanent failure it
/// cannot dead-letter). Transient failures should be retried inside the handler.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A stage's processing logic.
pub trait Handler: Send + 'static {
    /// Processes a batch. Every delivery's `ack` must eventually be completed, here or
    /// later (the handler may keep acks across batches, e.g. until a bulk insert succeeds).
    fn handle(
        &mut self,
        batch: Vec<Delivery>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called once at shutdown after the last batch: flush and complete what is held.
    fn finish(&mut self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }

    /// Called every [`IDLE_TICK`] between batches, so a handler that keeps acks while
    /// waiting on something of its own (the verify stage's certificate fetches) completes
    /// them even when no new batch comes. Must not wait long: batches wait meanwhile.
    fn idle(&mut self) -> impl Future<Output = Result<(), HandlerError>> + Send {
        async { Ok(()) }
    }
}

/// How often [`Handler::idle`] is called between batches.
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// One received message and the token that marks it completed.
#[derive(Debug)]
pub struct Delivery {
    pub message: OwnedMessage,
    pub ack: Ack,
}

/// Completion token of one message. Dropping it without [`Ack::complete`] reports the
/// message as abandoned.
#[derive(Debug)]
pub struct Ack {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    epoch: u64,
    tx: mpsc::UnboundedSender<Completion>,
    sent: bool,
}

impl Ack {
    /// Marks the message done: everything derived from it is durable downstream.
    pub fn complete(mut self) {
        self.send(true, None);
    }

    /// Exactly-once mode: marks the message done with the records derived from it, which
    /// the loop produces and commits together with its offset in one transaction.
    pub fn complete_with(mut self, staged: Staged) {
        self.send(true, Some(staged));
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    fn send(&mut self, done: bool, staged: Option<Staged>) {
        self.sent = true;
        // The loop may already be gone at the very end of shutdown; nothing to tell then.
        let _ = self.tx.send(Completion {
            tp: (self.topic.to_string(), self.partition),
            offset: self.offset,
            epoch: self.epoch,
            done,
            staged,
        });
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.sent {
            self.send(false, None);
        }
    }
}

#[derive(Debug)]
struct Completion {
    tp: TopicPartition,
    offset: i64,
    epoch: u64,
    done: bool,
    staged: Option<Staged>,
}

/// Loop tuning, from `[kafka.consumer]`.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub max_in_flight_per_partition: usize,
    pub max_batch: usize,
    pub batch_wait: Duration,
    pub commit_interval: Duration,
    pub shutdown_timeout: Duration,
    /// Where the loop reports its health (the stage's `/readyz` reads it).
    pub health: LoopHealth,
}

impl From<&ConsumerSettings> for LoopConfig {
    fn from(s: &ConsumerSettings) -> LoopConfig {
        LoopConfig {
            max_in_flight_per_partition: s.max_in_flight_per_partition,
            max_batch: s.max_batch,
            batch_wait: Duration::from_millis(s.batch_wait_ms),
            commit_interval: Duration::from_millis(s.commit_interval_ms),
            shutdown_timeout: Duration::from_millis(s.shutdown_timeout_ms),
            health: LoopHealth::default(),
        }
    }
}

/// Commits the completed prefix of a partition before it is revoked (not in exactly-once
/// mode: there offsets are committed only with their outputs), then forgets it.
struct LoopContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    commit_on_revoke: bool,
    health: LoopHealth,
}

impl ClientContext for LoopContext {}

impl ConsumerContext for LoopContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        metrics::counter!(names::KAFKA_REBALANCES).increment(1);
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut tracker = self.tracker.lock().expect("tracker lock");
        let mut tpl = TopicPartitionList::new();
        for elem in revoked.elements() {
            let tp = (elem.topic().to_string(), elem.partition());
            if let Some(offset) = tracker.revoke(&tp) {
                if self.commit_on_revoke {
                    let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(offset));
                }
            }
        }
        drop(tracker);
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                metrics::counter!(names::KAFKA_COMMIT_ERRORS).increment(1);
                tracing::warn!(error = %e, "commit before revoke failed; the new owner will redeliver");
            }
        }
        tracing::info!(partitions = revoked.count(), "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                tracing::info!(partitions = assigned.count(), "partitions assigned");
                let held = consumer
                    .assignment()
                    .map_or(assigned.count(), |a| a.count());
                self.health.assigned(held);
            }
            // What is left after a revoke (nothing after an eager rebalance's revoke, until
            // the next assignment).
            Rebalance::Revoke(_) => {
                let held = consumer.assignment().map_or(0, |a| a.count());
                self.health.assigned(held);
            }
            Rebalance::Error(_) => {}
        }
    }

    /// The result of an asynchronous commit. Only here does the tracker learn that an
    /// offset is committed; a failed one stays due and is sent again at the next interval.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            metrics::counter!(names::KAFKA_COMMIT_ERRORS).increment(1);
            tracing::warn!(error = %e, "offset commit failed; retried at the next interval");
            return;
        }
        let mut tracker = self.tracker.lock().expect("tracker lock");
        for elem in offsets.elements() {
            let tp = (elem.topic().to_string(), elem.partition());
            match (elem.error(), elem.offset()) {
                (Ok(()), Offset::Offset(offset)) => tracker.commit_succeeded(&tp, offset),
                (Ok(()), _) => {}
                (Err(e), _) => {
                    metrics::counter!(names::KAFKA_COMMIT_ERRORS).increment(1);
                    tracing::warn!(topic = %tp.0, partition = tp.1, error = %e,
                        "offset commit of a partition failed; retried at the next interval");
                }
            }
        }
    }
}

/// Runs the loop until `shutdown` is cancelled (then drains and commits) or a fatal error.
/// With `transactions`, in exactly-once mode (see the module doc).
pub async fn run<H: Handler>(
    client: ClientConfig,
    topics: &[String],
    config: LoopConfig,
    handler: H,
    transactions: Option<Transactions>,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
    let consumer: StreamConsumer<LoopContext> = client.create_with_context(LoopContext {
        tracker: tracker.clone(),
        commit_on_revoke: transactions.is_none(),
        health: config.health.clone(),
    })?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    let mut state = LoopState {
        consumer,
        tracker,
        config,
        pending: Vec::new(),
        batch_deadline: None,
        exactly_once: transactions.is_some(),
        transactions,
        committing: None,
        staging: Staging::default(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (work_tx, work_rx) = mpsc::unbounded_channel();
    let mut worker = tokio::spawn(work(handler, work_rx));
    let mut worker_running = true;
    let commit_interval = match &state.transactions {
        Some(t) => t.config().interval,
        None => state.config.commit_interval,
    };
    let mut commit_tick = tokio::time::interval(commit_interval);
    commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let outcome: Result<(), KafkaError> = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            joined = &mut worker, if worker_running => {
                worker_running = false;
                // The worker ends early only on a handler error.
                break worker_result(joined);
            }
            Some(c) = done_rx.recv() => {
                if let Err(e) = state.on_completion(c) {
                    break Err(e);
                }
                if state.transaction_due() {
                    state.start_transaction(false);
                }
            }
            // The loop goes on receiving and completing while a transaction commits.
            joined = async { state.committing.as_mut().expect("guarded").await },
                if state.committing.is_some() => {
                if let Err(e) = state.finish_transaction(joined) {
                    break Err(e);
                }
                if state.transaction_due() {
                    state.start_transaction(false);
                }
            }
            _ = sleep_until(state.batch_deadline.unwrap_or_else(Instant::now)),
                if state.batch_deadline.is_some() => state.flush(&work_tx),
            _ = commit_tick.tick() => state.commit_due(),
            received = state.consumer.recv() => match received {
                Ok(message) => {
                    let message = message.detach();
                    state.on_message(message, &done_tx, &work_tx);
                }
                Err(e) => {
                    metrics::counter!(names::KAFKA_CONSUMER_ERRORS).increment(1);
                    tracing::warn!(error = %e, "kafka consumer error");
                }
            },
        }
    };
    state.config.health.stopping();

    // Drain: hand over what was polled, let the handler finish (bounded), then commit.
    if outcome.is_ok() {
        state.flush(&work_tx);
    }
    drop(work_tx);
    let deadline = Instant::now() + state.config.shutdown_timeout;
    let mut outcome = outcome;
    while worker_running {
        tokio::select! {
            joined = &mut worker => {
                worker_running = false;
                if outcome.is_ok() {
                    outcome = worker_result(joined);
                }
            }
            Some(c) = done_rx.recv() => state.on_completion_draining(c),
            _ = sleep_until(deadline) => {
                tracing::warn!(timeout = ?state.config.shutdown_timeout,
                    "handler did not finish in time; uncompleted messages will be redelivered");
                worker.abort();
                worker_running = false;
            }
        }
    }
    while let Ok(c) = done_rx.try_recv() {
        state.on_completion_draining(c);
    }
    if let Err(e) = state.final_commit(deadline).await {
        tracing::error!(error = %e, "final commit failed; uncommitted messages will be redelivered");
        if outcome.is_ok() {
            outcome = Err(e);
        }
    }
    if let Err(KafkaError::Fenced(reason)) = &outcome {
        tracing::error!(%reason, "the transactional producer was fenced; stopping");
    }
    tracing::info!("consumer loop stopped");
    outcome
}

fn worker_result(
    joined: Result<Result<(), HandlerError>, tokio::task::JoinError>,
) -> Result<(), KafkaError> {
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(KafkaError::Handler(e)),
        Err(e) => Err(KafkaError::HandlerTask(e.to_string())),
    }
}

/// The handler's task: batches in order, `idle` between them, then `finish` once the
/// loop closes the channel.
async fn work<H: Handler>(
    mut handler: H,
    mut batches: mpsc::UnboundedReceiver<Vec<Delivery>>,
) -> Result<(), HandlerError> {
    let mut tick = tokio::time::interval(IDLE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // `recv` is cancel-safe: a batch is never lost to the tick.
        tokio::select! {
            batch = batches.recv() => match batch {
                Some(batch) => handler.handle(batch).await?,
                None => break,
            },
            _ = tick.tick() => handler.idle().await?,
        }
    }
    handler.finish().await
}

/// What a transaction's task hands back: the producer, its work, and how it ended.
type TransactionResult = (
    Transactions,
    Vec<PartitionWork>,
    Result<Outcome, KafkaError>,
);
type TransactionRun = tokio::task::JoinHandle<TransactionResult>;

struct LoopState {
    consumer: StreamConsumer<LoopContext>,
    tracker: Arc<Mutex<OffsetTracker>>,
    config: LoopConfig,
    pending: Vec<Delivery>,
    batch_deadline: Option<Instant>,
    /// Exactly-once mode: the transactional producer (None while a transaction commits, in
    /// `committing`), and the completed messages whose records wait for their transaction.
    exactly_once: bool,
    transactions: Option<Transactions>,
    committing: Option<TransactionRun>,
    staging: Staging,
}

impl LoopState {
    fn on_message(
        &mut self,
        message: OwnedMessage,
        done_tx: &mpsc::UnboundedSender<Completion>,
        work_tx: &mpsc::UnboundedSender<Vec<Delivery>>,
    ) {
        let tp = (message.topic().to_string(), message.partition());
        let offset = message.offset();
        let mut tracker = self.tracker.lock().expect("tracker lock");
        let (epoch, in_flight) = tracker.received(&tp, offset);
        let in_flight = in_flight + self.staging.len(&tp);
        if in_flight >= self.config.max_in_flight_per_partition && !tracker.is_paused(&tp) {
            match self.consumer.pause(&single(&tp)) {
                Ok(()) => {
                    tracker.set_paused(&tp, true);
                    tracing::debug!(topic = %tp.0, partition = tp.1, in_flight, "partition paused");
                }
                Err(e) => tracing::warn!(error = %e, "pausing a partition failed"),
            }
        }
        metrics::gauge!(names::KAFKA_PAUSED_PARTITIONS).set(tracker.paused_count() as f64);
        metrics::gauge!(names::KAFKA_IN_FLIGHT).set(tracker.total_in_flight() as f64);
        let load = tracker.total_in_flight() + self.staging.total();
        self.config.health.work(load, false);
        drop(tracker);
        metrics::counter!(names::KAFKA_MESSAGES_CONSUMED, "topic" => tp.0.clone()).increment(1);
        self.pending.push(Delivery {
            ack: Ack {
                topic: Arc::from(tp.0.as_str()),
                partition: tp.1,
                offset,
                epoch,
                tx: done_tx.clone(),
                sent: false,
            },
            message,
        });
        if self.pending.len() >= self.config.max_batch {
            self.flush(work_tx);
        } else if self.batch_deadline.is_none() {
            self.batch_deadline = Some(Instant::now() + self.config.batch_wait);
        }
    }

    fn flush(&mut self, work_tx: &mpsc::UnboundedSender<Vec<Delivery>>) {
        self.batch_deadline = None;
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        // Fails only if the worker ended; its result is picked up by the loop, and the
        // returned batch's acks report as abandoned (not committed), which is safe.
        let _ = work_tx.send(batch);
    }

    fn on_completion(&mut self, c: Completion) -> Result<(), KafkaError> {
        if !c.done {
            let tracker = self.tracker.lock().expect("tracker lock");
            // An ack of a revoked assignment may be dropped: the new owner redelivers it.
            if tracker.is_current(&c.tp, c.epoch) {
                return Err(KafkaError::Abandoned {
                    topic: c.tp.0,
                    partition: c.tp.1,
                    offset: c.offset,
                });
            }
            return Ok(());
        }
        let mut tracker = self.tracker.lock().expect("tracker lock");
        if tracker.completed(&c.tp, c.offset, c.epoch).is_none() {
            return Ok(());
        }
        metrics::counter!(names::KAFKA_MESSAGES_COMPLETED, "topic" => c.tp.0.clone()).increment(1);
        if let Some(staged) = c.staged {
            if self.exactly_once {
                self.staging.stage(&c.tp, c.epoch, c.offset, staged);
            } else if !staged.records.is_empty() {
                return Err(KafkaError::StagedWithoutTransactions);
            }
        }
        drop(tracker);
        // Progress, outside exactly-once; in it, only a committed transaction is.
        self.resume_drained(std::slice::from_ref(&c.tp), !self.exactly_once);
        Ok(())
    }

    /// Resumes the given paused partitions whose work in flight (staged included) fell to
    /// half the limit, so a partition does not flap at the threshold.
    fn resume_drained(&mut self, partitions: &[TopicPartition], progressed: bool) {
        let mut tracker = self.tracker.lock().expect("tracker lock");
        for tp in partitions {
            let load = tracker.in_flight(tp) + self.staging.len(tp);
            if tracker.is_paused(tp) && load <= self.config.max_in_flight_per_partition / 2 {
                match self.consumer.resume(&single(tp)) {
                    Ok(()) => tracker.set_paused(tp, false),
                    Err(e) => tracing::warn!(error = %e, "resuming a partition failed"),
                }
            }
        }
        metrics::gauge!(names::KAFKA_PAUSED_PARTITIONS).set(tracker.paused_count() as f64);
        let load = tracker.total_in_flight() + self.staging.total();
        metrics::gauge!(names::KAFKA_IN_FLIGHT).set(load as f64);
        self.config.health.work(load, progressed);
    }

    /// Tells the tracker the consumer's positions, which move past transaction markers.
    fn advance_positions(&self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut tracker = self.tracker.lock().expect("tracker lock");
        for elem in positions.elements() {
            if let Offset::Offset(position) = elem.offset() {
                tracker.advance(&(elem.topic().to_string(), elem.partition()), position);
            }
        }
    }

    /// Whether enough is staged to commit a transaction before the next tick.
    fn transaction_due(&self) -> bool {
        self.transactions
            .as_ref()
            .is_some_and(|t| self.staging.total() >= t.config().max_records && !t.backing_off())
    }

    /// The periodic commit: a transaction in exactly-once mode, else an offset commit.
    fn commit_due(&mut self) {
        if self.exactly_once {
            self.start_transaction(false);
        } else {
            self.commit(CommitMode::Async, false);
        }
    }

    /// The commit at the end: synchronous; in exactly-once mode the transaction under way
    /// is awaited, then what is complete committed, retried until `deadline`.
    async fn final_commit(&mut self, deadline: Instant) -> Result<(), KafkaError> {
        if !self.exactly_once {
            self.commit(CommitMode::Sync, true);
            return Ok(());
        }
        loop {
            if let Some(run) = self.committing.take() {
                let joined = run.await;
                self.finish_transaction(joined)?;
            }
            if !self.start_transaction(true) {
                return Ok(());
            }
            let run = self.committing.take().expect("just started");
            let joined = run.await;
            if self.finish_transaction(joined)? || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Exactly-once mode: starts a transaction (a task of its own) over the staged prefix
    /// of every partition whose prefix moved (`all`: every owned partition), unless one is
    /// under way or backing off after an abort. Returns whether one started.
    fn start_transaction(&mut self, all: bool) -> bool {
        self.advance_positions();
        let Some(transactions) = self.transactions.as_ref() else {
            return false;
        };
        if transactions.backing_off() && !all {
            return false;
        }
        let Some(group) = self.consumer.group_metadata() else {
            return false;
        };
        let mut work = Vec::new();
        {
            let tracker = self.tracker.lock().expect("tracker lock");
            self.staging
                .retain(|tp, epoch| tracker.is_current(tp, epoch));
            let due = if all {
                tracker.all_commits()
            } else {
                tracker.commits_due()
            };
            for (tp, next_offset) in due {
                let epoch = tracker.epoch(&tp).expect("due partitions are owned");
                let inputs = self.staging.take_before(&tp, epoch, next_offset);
                work.push(PartitionWork {
                    tp,
                    epoch,
                    next_offset,
                    inputs,
                });
            }
        }
        if work.is_empty() {
            return false;
        }
        let mut transactions = self.transactions.take().expect("checked above");
        self.committing = Some(tokio::spawn(async move {
            let outcome = transactions.commit(&mut work, group).await;
            (transactions, work, outcome)
        }));
        true
    }

    /// Takes in the result of the transaction that was under way: a committed one moves
    /// the partitions' committed offsets, an aborted one's inputs are staged again (those
    /// of partitions still owned). Returns whether it committed; Err: fatal.
    fn finish_transaction(
        &mut self,
        joined: Result<TransactionResult, tokio::task::JoinError>,
    ) -> Result<bool, KafkaError> {
        self.committing = None;
        let (transactions, work, outcome) =
            joined.map_err(|e| KafkaError::HandlerTask(format!("transaction task: {e}")))?;
        self.transactions = Some(transactions);
        let committed = outcome? == Outcome::Committed;
        let partitions: Vec<TopicPartition> = work.iter().map(|w| w.tp.clone()).collect();
        {
            let mut tracker = self.tracker.lock().expect("tracker lock");
            for w in work {
                // A partition revoked meanwhile belongs to its new assignment now.
                if !tracker.is_current(&w.tp, w.epoch) {
                    continue;
                }
                if committed {
                    tracker.commit_succeeded(&w.tp, w.next_offset);
                } else {
                    self.staging.put_back(&w.tp, w.epoch, w.inputs);
                }
            }
        }
        self.resume_drained(&partitions, committed);
        Ok(committed)
    }

    /// During shutdown an abandoned ack is expected (the handler was stopped); it is simply
    /// not committed.
    fn on_completion_draining(&mut self, c: Completion) {
        if c.done {
            let _ = self.on_completion(c);
        }
    }

    /// Commits the completed prefix; `all` re-sends unchanged offsets too (final commit).
    /// An asynchronous commit is recorded as done only by its result
    /// ([`LoopContext::commit_callback`]), a synchronous one when the call returns `Ok`.
    /// The tracker lock is not held while committing: the result may be delivered at once.
    fn commit(&mut self, mode: CommitMode, all: bool) {
        self.advance_positions();
        let commits = {
            let tracker = self.tracker.lock().expect("tracker lock");
            if all {
                tracker.all_commits()
            } else {
                tracker.commits_due()
            }
        };
        if commits.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &commits {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        metrics::counter!(names::KAFKA_COMMITS).increment(1);
        match self.consumer.commit(&tpl, mode) {
            Ok(()) if matches!(mode, CommitMode::Sync) => {
                let mut tracker = self.tracker.lock().expect("tracker lock");
                for (tp, offset) in &commits {
                    tracker.commit_succeeded(tp, *offset);
                }
            }
            Ok(()) => {}
            Err(e) => {
                metrics::counter!(names::KAFKA_COMMIT_ERRORS).increment(1);
                tracing::warn!(error = %e, "offset commit failed; retried at the next interval");
            }
        }
    }
}

fn single(tp: &TopicPartition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    tpl
}
