//! Exactly-once mode of the consumer loop: the outputs of completed inputs are produced
//! and their input offsets committed in one Kafka transaction
//! (`send_offsets_to_transaction` with the consumer's group metadata), or not at all.
//!
//! How it works: a handler completes an input with the records derived from it
//! ([`crate::Ack::complete_with`]); nothing is produced then. The loop keeps them
//! ([`Staging`]) and, every `interval` or once `max_records` inputs wait, runs a
//! transaction ([`Transactions::commit`]) over the contiguous completed prefix of each
//! partition: it produces the prefix's records in offset order, adds the next offsets,
//! and commits. Inputs completed past a gap (an earlier input still in the handler) wait
//! for a later transaction. One transaction runs at a time, in a task of its own: the loop
//! goes on receiving and staging while it commits. What a transaction commits is always a prefix: its outputs
//! are exactly those of the offsets it commits, and a crash at any point leaves either
//! both or neither.
//!
//! Failures: a transaction that fails is aborted (its records never reach a
//! `read_committed` reader) and its inputs are kept and committed again in the next one,
//! after a backoff; a record refused for good (too large) has its input's records
//! replaced by the dead letter the handler provided. A zombie — an instance whose
//! partitions were given to another member while it was paused or cut off — fails at
//! `send_offsets_to_transaction` (stale group generation), aborts, and loses the staged
//! work of the partitions it no longer owns at the next rebalance. A fatal producer error
//! (fenced by a newer instance with the same transactional id) ends the loop with
//! [`KafkaError::Fenced`]; the supervisor's restart resumes from the committed offsets.
//!
//! A revoked partition's staged work is dropped, not committed: the new owner processes
//! those inputs again from the last committed offset.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use mailpipe_telemetry::names;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::offsets::TopicPartition;
use crate::KafkaError;

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl OutRecord {
    pub fn future_record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let record = FutureRecord::to(&self.topic).payload(self.payload.as_slice());
        match &self.key {
            Some(key) => record.key(key.as_slice()),
            None => record,
        }
    }
}

/// Builds the dead letter that replaces an input's records when one of them can never be
/// produced (None: it cannot be built, which stops the stage).
pub type Unproducible = Box<dyn Fn(&OutRecord, &RdKafkaError) -> Option<OutRecord> + Send>;

/// What a completed input leaves to the transaction that commits it.
pub struct Staged {
    pub records: Vec<OutRecord>,
    pub on_unproducible: Option<Unproducible>,
    /// Told once the transaction holding the records committed.
    pub committed: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

/// Completed inputs not yet committed, per partition and assignment: pure bookkeeping.
#[derive(Debug, Default)]
pub struct Staging {
    partitions: HashMap<TopicPartition, (u64, BTreeMap<i64, Staged>)>,
    total: usize,
}

impl Staging {
    /// Keeps a completed input of assignment `epoch`; what an earlier assignment of the
    /// partition left is dropped (its inputs are redelivered).
    pub fn stage(&mut self, tp: &TopicPartition, epoch: u64, offset: i64, staged: Staged) {
        let entry = self
            .partitions
            .entry(tp.clone())
            .or_insert_with(|| (epoch, BTreeMap::new()));
        if entry.0 != epoch {
            self.total -= entry.1.len();
            *entry = (epoch, BTreeMap::new());
        }
        if entry.1.insert(offset, staged).is_none() {
            self.total += 1;
        }
    }

    /// Takes the inputs of assignment `epoch` below `before`, in offset order.
    pub fn take_before(
        &mut self,
        tp: &TopicPartition,
        epoch: u64,
        before: i64,
    ) -> Vec<(i64, Staged)> {
        let Some((staged_epoch, inputs)) = self.partitions.get_mut(tp) else {
            return Vec::new();
        };
        if *staged_epoch != epoch {
            self.total -= inputs.len();
            self.partitions.remove(tp);
            return Vec::new();
        }
        let rest = inputs.split_off(&before);
        let taken = std::mem::replace(inputs, rest);
        self.total -= taken.len();
        taken.into_iter().collect()
    }

    /// Puts back what [`Staging::take_before`] took (its transaction was aborted).
    pub fn put_back(&mut self, tp: &TopicPartition, epoch: u64, inputs: Vec<(i64, Staged)>) {
        for (offset, staged) in inputs {
            self.stage(tp, epoch, offset, staged);
        }
    }

    /// Forgets a partition's staged inputs (revoked: the new owner redoes them).
    pub fn drop_partition(&mut self, tp: &TopicPartition) {
        if let Some((_, inputs)) = self.partitions.remove(tp) {
            self.total -= inputs.len();
        }
    }

    /// Keeps only the partitions whose staged assignment `current` accepts.
    pub fn retain(&mut self, mut current: impl FnMut(&TopicPartition, u64) -> bool) {
        let mut dropped = 0;
        self.partitions.retain(|tp, (epoch, inputs)| {
            let keep = current(tp, *epoch);
            if !keep {
                dropped += inputs.len();
            }
            keep
        });
        self.total -= dropped;
    }

    pub fn len(&self, tp: &TopicPartition) -> usize {
        self.partitions
            .get(tp)
            .map_or(0, |(_, inputs)| inputs.len())
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Settings of the exactly-once mode.
#[derive(Debug, Clone)]
pub struct TransactionConfig {
    /// Metric label (the stage's name).
    pub stage: String,
    pub max_records: usize,
    pub interval: Duration,
    /// Bound on each blocking transaction call (init, send offsets, commit, abort).
    pub call_timeout: Duration,
}

/// The inputs of one partition in one transaction, and the offset it commits.
pub struct PartitionWork {
    pub tp: TopicPartition,
    pub epoch: u64,
    pub next_offset: i64,
    pub inputs: Vec<(i64, Staged)>,
}

/// How a transaction ended, when not fatally.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Aborted: nothing of it is visible; its work is to be committed again.
    Aborted,
}

/// The transactional producer of a stage and its retry state.
pub struct Transactions {
    producer: FutureProducer,
    config: TransactionConfig,
    consecutive_aborts: u32,
    retry_at: Option<Instant>,
}

impl Transactions {
    /// Registers the producer's transactional id with the broker (fencing any earlier
    /// producer with the same id and aborting its open transaction). Retried while the
    /// broker is unreachable; a fatal error is returned.
    pub async fn init(
        producer: FutureProducer,
        config: TransactionConfig,
    ) -> Result<Transactions, KafkaError> {
        let mut attempt = 0;
        loop {
            let p = producer.clone();
            let timeout = config.call_timeout;
            match blocking(move || p.init_transactions(timeout)).await {
                Ok(()) => break,
                Err(e) if is_fatal(&e) => return Err(KafkaError::Fenced(e.to_string())),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "initializing transactions failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
        Ok(Transactions {
            producer,
            config,
            consecutive_aborts: 0,
            retry_at: None,
        })
    }

    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// Whether an aborted transaction's backoff still runs.
    pub fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// Produces `work`'s records and commits them with its offsets in one transaction.
    /// On `Aborted`, `work` is intact (records of inputs found unproducible replaced by
    /// their dead letters) for the next attempt. Err: fatal (fenced), or a dead letter
    /// that can never be produced.
    pub async fn commit(
        &mut self,
        work: &mut [PartitionWork],
        group: ConsumerGroupMetadata,
    ) -> Result<Outcome, KafkaError> {
        let started = Instant::now();
        let outcome = self.attempt(work, group).await;
        let label = match &outcome {
            Ok(Outcome::Committed) => "committed",
            Ok(Outcome::Aborted) => "aborted",
            Err(_) => "failed",
        };
        metrics::counter!(names::KAFKA_TRANSACTIONS, "stage" => self.config.stage.clone(),
            "outcome" => label)
        .increment(1);
        metrics::histogram!(names::KAFKA_TRANSACTION_SECONDS, "stage" => self.config.stage.clone())
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Outcome::Committed) => {
                let inputs: usize = work.iter().map(|w| w.inputs.len()).sum();
                metrics::counter!(names::KAFKA_TRANSACTION_INPUTS, "stage" => self.config.stage.clone())
                    .increment(inputs as u64);
                self.consecutive_aborts = 0;
                self.retry_at = None;
            }
            Ok(Outcome::Aborted) => {
                self.retry_at = Some(Instant::now() + backoff(self.consecutive_aborts));
                self.consecutive_aborts += 1;
                // A producer that cannot commit for this long is given up: the restarted
                // process starts from a clean transactional state.
                if self.consecutive_aborts >= MAX_CONSECUTIVE_ABORTS {
                    return Err(KafkaError::Fenced(format!(
                        "{MAX_CONSECUTIVE_ABORTS} transactions aborted in a row; giving the producer up"
                    )));
                }
            }
            Err(_) => {}
        }
        outcome
    }

    async fn attempt(
        &mut self,
        work: &mut [PartitionWork],
        group: ConsumerGroupMetadata,
    ) -> Result<Outcome, KafkaError> {
        if let Err(e) = self.producer.begin_transaction() {
            return self.abort("begin", e).await;
        }
        // (partition, input, record) indexes and delivery of every record handed over.
        let mut deliveries: Vec<(usize, usize, usize, DeliveryFuture)> = Vec::new();
        for (p, partition) in work.iter_mut().enumerate() {
            for (i, (_, staged)) in partition.inputs.iter_mut().enumerate() {
                for r in 0..staged.records.len() {
                    match self.enqueue(&staged.records[r]).await {
                        Ok(delivery) => deliveries.push((p, i, r, delivery)),
                        Err(e) => {
                            // Whatever of the transaction went out is retracted by the abort;
                            // the next attempt sends the dead letter instead.
                            if is_permanent(&e) {
                                replace_by_dead_letter(staged, r, &e)?;
                            }
                            return self.abort("produce", e).await;
                        }
                    }
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for partition in work.iter() {
            let (topic, p) = &partition.tp;
            offsets
                .add_partition_offset(topic, *p, Offset::Offset(partition.next_offset))
                .map_err(KafkaError::Client)?;
        }
        let producer = self.producer.clone();
        let timeout = self.config.call_timeout;
        let committed = blocking(move || {
            producer.send_offsets_to_transaction(&offsets, &group, timeout)?;
            producer.commit_transaction(timeout)
        })
        .await;
        match committed {
            Ok(()) => {
                for partition in work.iter_mut() {
                    for (_, staged) in &mut partition.inputs {
                        if let Some(tx) = staged.committed.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                Ok(Outcome::Committed)
            }
            Err(e) => {
                let outcome = self.abort("commit", e).await;
                // After the abort every delivery has its result: find the records refused
                // for good and let their inputs' dead letters take their place next time.
                for (p, i, r, delivery) in deliveries {
                    let result = tokio::time::timeout(Duration::from_secs(1), delivery).await;
                    if let Ok(Ok(Err((e, _)))) = result {
                        if is_permanent(&e) {
                            replace_by_dead_letter(&mut work[p].inputs[i].1, r, &e)?;
                        }
                    }
                }
                outcome
            }
        }
    }

    /// Aborts the open transaction after `e` failed `step`; fatal errors end the loop.
    async fn abort(&self, step: &str, e: RdKafkaError) -> Result<Outcome, KafkaError> {
        if is_fatal(&e) {
            return Err(KafkaError::Fenced(e.to_string()));
        }
        tracing::warn!(stage = %self.config.stage, step, error = %e,
            "transaction failed; aborting it, its inputs are committed again in the next one");
        // An abort that timed out (the broker unreachable) must be called again to finish:
        // until it has, no transaction can begin. Past a few attempts the producer is given
        // up (fatal): the restarted process's initialization aborts what is left.
        for attempt in 0..ABORT_ATTEMPTS {
            let producer = self.producer.clone();
            let timeout = self.config.call_timeout;
            match blocking(move || producer.abort_transaction(timeout)).await {
                Ok(()) => return Ok(Outcome::Aborted),
                Err(e) if is_fatal(&e) => return Err(KafkaError::Fenced(e.to_string())),
                Err(e) if is_retriable(&e) => {
                    tracing::warn!(error = %e, attempt, "aborting the transaction timed out; resuming it");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                // Not in a transaction (begin failed): nothing to abort.
                Err(e) => {
                    tracing::warn!(error = %e, "aborting the transaction failed");
                    return Ok(Outcome::Aborted);
                }
            }
        }
        Err(KafkaError::Fenced(format!(
            "the transaction could not be aborted in {ABORT_ATTEMPTS} attempts"
        )))
    }

    /// Hands one record to the producer, waiting while its queue is full.
    async fn enqueue(&self, record: &OutRecord) -> Result<DeliveryFuture, RdKafkaError> {
        loop {
            match self.producer.send_result(record.future_record()) {
                Ok(delivery) => return Ok(delivery),
                Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// Replaces the input's records by the dead letter its handler builds for `records[r]`.
fn replace_by_dead_letter(
    staged: &mut Staged,
    r: usize,
    e: &RdKafkaError,
) -> Result<(), KafkaError> {
    let record = &staged.records[r];
    metrics::counter!(names::KAFKA_PRODUCED, "topic" => record.topic.clone(),
        "outcome" => "unproducible")
    .increment(1);
    let letter = staged
        .on_unproducible
        .take()
        .and_then(|build| build(record, e));
    match letter {
        Some(letter) => {
            tracing::error!(topic = %record.topic, bytes = record.payload.len(), error = %e,
                "record can never be produced; dead-lettering its input");
            staged.records = vec![letter];
            Ok(())
        }
        None => Err(KafkaError::Unproducible {
            topic: record.topic.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, RdKafkaError> + Send + 'static,
) -> Result<T, RdKafkaError> {
    tokio::task::spawn_blocking(call).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a blocking kafka call panicked");
        Err(RdKafkaError::Canceled)
    })
}

/// Transactions aborted in a row (with backoff, about half a minute) before the producer
/// is given up.
const MAX_CONSECUTIVE_ABORTS: u32 = 10;

/// How often an abort that timed out is resumed before the producer is given up.
const ABORT_ATTEMPTS: u32 = 6;

/// Transaction calls that timed out and are to be called again to finish.
fn is_retriable(e: &RdKafkaError) -> bool {
    matches!(e, RdKafkaError::Transaction(rd) if rd.is_retriable())
}

/// Errors after which the producer cannot go on: fenced by a newer instance with the same
/// transactional id, or librdkafka's fatal errors.
fn is_fatal(e: &RdKafkaError) -> bool {
    if let RdKafkaError::Transaction(rd) = e {
        if rd.is_fatal() {
            return true;
        }
    }
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        )
    )
}

/// Errors that producing the same record again can never cure (it is too large, or the
/// broker refuses it as invalid).
pub fn is_permanent(e: &RdKafkaError) -> bool {
    is_permanent_code(e.rdkafka_error_code())
}

pub fn is_permanent_code(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Backoff between attempts: doubles from 100 ms up to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".to_string(), p)
    }

    fn staged(n: usize) -> Staged {
        Staged {
            records: (0..n)
                .map(|i| OutRecord {
                    topic: "out".into(),
                    key: None,
                    payload: vec![i as u8],
                })
                .collect(),
            on_unproducible: None,
            committed: None,
        }
    }

    #[test]
    fn takes_only_the_prefix_below_the_commit_offset_in_order() {
        let mut s = Staging::default();
        for offset in [12, 10, 11, 14] {
            s.stage(&tp(0), 1, offset, staged(1));
        }
        assert_eq!(s.total(), 4);
        // 13 is still in the handler: 14 waits.
        let taken = s.take_before(&tp(0), 1, 13);
        assert_eq!(
            taken.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        assert_eq!(s.len(&tp(0)), 1);
        assert_eq!(s.total(), 1);
        s.put_back(&tp(0), 1, taken);
        assert_eq!(s.total(), 4, "an aborted transaction's inputs come back");
    }

    #[test]
    fn work_of_an_earlier_assignment_is_dropped() {
        let mut s = Staging::default();
        s.stage(&tp(0), 1, 5, staged(2));
        s.stage(&tp(1), 1, 7, staged(1));
        // Partition 0 revoked and assigned again: epoch 2.
        assert!(s.take_before(&tp(0), 2, 100).is_empty());
        assert_eq!(s.len(&tp(0)), 0);
        s.stage(&tp(0), 2, 5, staged(1));
        s.stage(&tp(1), 3, 8, staged(1));
        assert_eq!(s.len(&tp(1)), 1, "the epoch-1 input of partition 1 is gone");
        s.drop_partition(&tp(0));
        assert_eq!(s.total(), 1);
        assert!(!s.is_empty());
        s.retain(|tp, _| tp.1 != 1);
        assert!(s.is_empty(), "a partition no longer owned is forgotten");
    }

    #[test]
    fn only_errors_of_the_record_itself_are_permanent() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidMessageSize,
            RDKafkaErrorCode::MessageBatchTooLarge,
            RDKafkaErrorCode::InvalidRecord,
        ] {
            assert!(is_permanent_code(Some(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::NotEnoughReplicas,
        ] {
            assert!(!is_permanent_code(Some(code)), "{code:?}");
        }
        assert!(!is_permanent_code(None));
    }

    #[test]
    fn a_fenced_producer_is_fatal() {
        assert!(is_fatal(&RdKafkaError::MessageProduction(
            RDKafkaErrorCode::ProducerFenced
        )));
        assert!(!is_fatal(&RdKafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut
        )));
    }
}
