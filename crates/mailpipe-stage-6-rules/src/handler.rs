//! The rules stage on the kit: per polled batch, decode the events, run them through the
//! rules ([`crate::process`]: three Redis round trips), and emit each input's records in
//! input order — its action records, suppression changes and published records, or its
//! dead letter. Exactly once (the default) they commit in the kit's transactions with the
//! input offsets.
//!
//! Three steps, so a batch is decoded and planned while the one before waits on Redis:
//! [`Handler::handle`] decodes and plans (with the rules in force then, encoding the first
//! round trip) and queues the batch; one worker task takes the batches in order and does
//! the round trips and the evaluation (with the rules it was planned with), and hands them,
//! in order, to a task that encodes their records and emits them. So batches change the
//! state and are emitted in the order they came, one at a time, as before; their acks are
//! held until they are emitted (the consumer loop's in-flight limit counts them). A failure
//! of either task surfaces on the next `handle`, `idle` or `finish`.
//!
//! A Redis outage holds the batch (retried with backoff; the consumer loop's in-flight
//! limit then pauses consumption): no event is evaluated without its state, none skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic};
use mailpipe_model::EmailEvent;
use mailpipe_rules_core::RuleSet;
use mailpipe_runtime::backoff;
use mailpipe_stage::{
    Emission, Emitter, InputRef, Origin, OutRecord, Output, StageError, StageKit,
};
use mailpipe_telemetry::names;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::process::{plan, process_planned, EventOutputs, Planned, ProcessConfig};
use crate::records::ActionEncoder;
use crate::shared::SharedRules;
use crate::state::{Encoder, RulesState};

/// The rules stage's consumer-loop handler: the first step (decode, plan); the others are
/// [`Worker`]'s.
pub struct RulesHandler {
    kit: StageKit,
    rules: SharedRules,
    config: ProcessConfig,
    /// Encodes the first round trip of a batch as it is planned.
    encoder: Encoder,
    /// Where planned batches go; None once the worker was stopped.
    batches: Option<mpsc::Sender<Prepared>>,
    worker: Option<JoinHandle<Result<(), HandlerError>>>,
}

/// One input of a batch.
enum Slot {
    /// Its event, at this index in `events`.
    Event(usize),
    /// Its dead letter.
    DeadLetter(OutRecord),
    /// A correction written by `mailpipe replay` (`mailpipe-correction` header): not
    /// evaluated. Automation reacts to events as they happen; a re-derived old event must
    /// not fire webhooks, scores or suppressions again (its claims may have expired).
    Correction,
}

/// A batch decoded and planned, for the worker.
struct Prepared {
    batch: Vec<Delivery>,
    events: Vec<EmailEvent>,
    /// Per input, what it is.
    slots: Vec<Slot>,
    /// The rules the batch was planned with, and is evaluated with.
    rules: Arc<RuleSet>,
    planned: Planned,
    started: Instant,
}

/// The stage's two Avro output topics, registered at start-up.
#[derive(Clone)]
pub struct Outputs {
    pub actions: Output,
    pub suppressions: Output,
    /// Writes the action records field by field (None: the registered schema is not the
    /// one it follows, and they go through serde).
    action_encoder: Option<Arc<ActionEncoder>>,
}

impl Outputs {
    pub async fn register(kit: &StageKit) -> anyhow::Result<Outputs> {
        let actions = kit.output(Topic::Actions).await?;
        Ok(Outputs {
            action_encoder: ActionEncoder::new(&actions.schema).map(Arc::new),
            actions,
            suppressions: kit.output(Topic::Suppressions).await?,
        })
    }

    /// The records of one event's (or one fired action's) outputs, in the rules' order.
    pub fn records(&self, outputs: &EventOutputs) -> Result<Vec<OutRecord>, StageError> {
        let mut records = Vec::new();
        for action in &outputs.actions {
            let key = Some(action.action_id.clone().into_bytes());
            records.push(match &self.action_encoder {
                Some(encoder) => OutRecord {
                    topic: self.actions.topic.clone(),
                    key,
                    payload: encoder.encode(action),
                },
                None => self.actions.record(key, action, 512)?,
            });
            metrics::counter!(names::RULES_ACTIONS, "rule" => action.rule_id.clone(),
                "decision" => action.decision.as_str())
            .increment(1);
        }
        for suppression in &outputs.suppressions {
            let key = Some(suppression.key().into_bytes());
            records.push(self.suppressions.record(key, suppression, 256)?);
        }
        for publish in &outputs.publishes {
            records.push(OutRecord {
                topic: publish.topic.clone(),
                key: publish.key.clone().map(String::into_bytes),
                payload: publish.value.clone().into_bytes(),
            });
        }
        Ok(records)
    }
}

/// The processing settings of `[rules]`.
pub fn process_config(settings: &mailpipe_settings::RulesSettings) -> ProcessConfig {
    let day_ms = 86_400_000_i64;
    ProcessConfig {
        score_window_ms: i64::try_from(settings.score_window_days).unwrap_or(3650) * day_ms,
        publish_topics: settings.publish_topics.clone(),
    }
}

/// Connects the rules' state in Redis (lazily: an outage at start-up only holds the first
/// batch).
pub fn connect_state(settings: &mailpipe_settings::Settings) -> anyhow::Result<RulesState> {
    let rules = &settings.rules;
    let connection = mailpipe_runtime::redis::connect(
        &settings.redis.url,
        Duration::from_millis(rules.redis_timeout_ms),
    )?;
    Ok(RulesState::new(connection, rules.redis_prefix.clone())
        .with_recipient_hash_key(&settings.privacy.hash_key)
        .with_history(crate::history::HistoryReader::from_settings(settings)))
}

impl RulesHandler {
    pub fn new(kit: StageKit, rules: SharedRules, outputs: Outputs) -> anyhow::Result<Self> {
        let settings = kit.settings().clone();
        let config = process_config(&settings.rules);
        let worker = Worker {
            state: connect_state(&settings)?,
            config: config.clone(),
            outputs,
            emitter: kit.emitter().clone(),
        };
        // One batch waits while the worker is at another: enough to keep it busy, and the
        // next `handle` waits for room (the loop keeps its in-flight limit meanwhile).
        let (batches, queue) = mpsc::channel(1);
        Ok(RulesHandler {
            encoder: worker.state.encoder().clone(),
            worker: Some(tokio::spawn(worker.run(queue))),
            batches: Some(batches),
            config,
            rules,
            kit,
        })
    }

    /// Stops taking batches, lets the worker finish those it has, and answers how it ended.
    async fn stop_worker(&mut self) -> Result<(), HandlerError> {
        self.batches = None;
        match self.worker.take() {
            Some(worker) => match worker.await {
                Ok(ended) => ended,
                Err(e) => Err(Box::new(e)),
            },
            None => Ok(()),
        }
    }

    /// The worker's failure, if it ended (it only ends on one before `finish`).
    async fn worker_failure(&mut self) -> Result<(), HandlerError> {
        if self.worker.as_ref().is_some_and(JoinHandle::is_finished) {
            self.stop_worker().await?;
            return Err("the rules worker ended".into());
        }
        Ok(())
    }
}

/// The second step: the batches' Redis round trips and evaluation, in order; the third,
/// their records and emission ([`Worker::emit_all`], a task of its own, in order too).
struct Worker {
    state: RulesState,
    config: ProcessConfig,
    outputs: Outputs,
    emitter: Emitter,
}

/// A batch evaluated, for the emitting task.
struct Processed {
    prepared: Prepared,
    outputs: Vec<EventOutputs>,
}

impl Worker {
    async fn run(mut self, mut queue: mpsc::Receiver<Prepared>) -> Result<(), HandlerError> {
        let (processed, to_emit) = mpsc::channel(1);
        let emitting = tokio::spawn(Self::emit_all(
            to_emit,
            self.outputs.clone(),
            self.emitter.clone(),
        ));
        while let Some(prepared) = queue.recv().await {
            let outputs = self.process_holding(&prepared).await;
            if processed
                .send(Processed { prepared, outputs })
                .await
                .is_err()
            {
                break; // The emitting task failed: its error is the answer.
            }
        }
        drop(processed);
        match emitting.await {
            Ok(ended) => ended,
            Err(e) => Err(Box::new(e)),
        }
    }

    async fn emit_all(
        mut queue: mpsc::Receiver<Processed>,
        outputs: Outputs,
        emitter: Emitter,
    ) -> Result<(), HandlerError> {
        while let Some(processed) = queue.recv().await {
            Self::emit(&outputs, &emitter, processed).await?;
        }
        Ok(())
    }

    async fn emit(
        records_of: &Outputs,
        emitter: &Emitter,
        processed: Processed,
    ) -> Result<(), HandlerError> {
        let Processed { prepared, outputs } = processed;
        let Prepared {
            batch,
            events,
            slots,
            started,
            ..
        } = prepared;
        let mut emissions = Vec::with_capacity(batch.len());
        for (delivery, slot) in batch.into_iter().zip(slots) {
            let (records, origin) = match slot {
                Slot::Event(index) => {
                    let event = &events[index];
                    let out = &outputs[index];
                    count_matches(out);
                    let origin = Origin {
                        raw_request_id: Some(event.raw_request_id.as_str()),
                        provider: Some(event.provider.as_str()),
                        source: Some(event.source.as_str()),
                    };
                    (records_of.records(out)?, origin)
                }
                Slot::DeadLetter(letter) => (vec![letter], Origin::default()),
                Slot::Correction => (Vec::new(), Origin::default()),
            };
            emissions.push(Emission::<()> {
                input: InputRef::new(&delivery.message, origin),
                records,
                ack: delivery.ack,
                tag: None,
            });
        }
        emitter.emit(emissions).await;
        metrics::histogram!(names::RULES_EVALUATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Evaluates the batch, retrying while Redis fails: the batch holds, nothing is skipped.
    async fn process_holding(&mut self, prepared: &Prepared) -> Vec<EventOutputs> {
        let mut attempt = 0;
        loop {
            let now = now_ms();
            let processed = process_planned(
                &prepared.rules,
                &mut self.state,
                &self.config,
                &prepared.events,
                &prepared.planned,
                now,
            )
            .await;
            match processed {
                Ok(outputs) => return outputs,
                Err(e) => {
                    metrics::counter!(names::RULES_STATE_ERRORS).increment(1);
                    tracing::warn!(error = %e, attempt, "rules state unavailable; the batch waits");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

impl Handler for RulesHandler {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        self.worker_failure().await?;
        let started = Instant::now();
        // Decoded events, and per input either its event's index or its dead letter.
        let mut events = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for delivery in &batch {
            if mailpipe_kafka::correction_revision(&delivery.message).is_some() {
                metrics::counter!(names::RULES_CORRECTIONS_SKIPPED).increment(1);
                slots.push(Slot::Correction);
                continue;
            }
            match self.kit.decode_event(&delivery.message).await {
                Ok(event) => {
                    slots.push(Slot::Event(events.len()));
                    events.push(event);
                }
                Err(StageError::Permanent { reason, detail }) => {
                    let letter = self.kit.dead_letters().record(
                        &delivery.message,
                        reason,
                        detail,
                        Origin::default(),
                    )?;
                    slots.push(Slot::DeadLetter(letter));
                }
                Err(e) => return Err(e.into()),
            }
        }
        metrics::counter!(names::RULES_EVENTS).increment(events.len() as u64);
        let rules = self.rules.current();
        let planned = plan(&rules, &self.config, &self.encoder, &events);
        let prepared = Prepared {
            batch,
            events,
            slots,
            rules,
            planned,
            started,
        };
        let Some(batches) = &self.batches else {
            return Err("a batch came after the rules worker was stopped".into());
        };
        let sent = batches.send(prepared).await;
        if sent.is_err() {
            // The worker ended: its failure is the cause (the batch's acks are dropped with
            // it; the loop stops on the error).
            self.stop_worker().await?;
            return Err("the rules worker ended".into());
        }
        Ok(())
    }

    async fn idle(&mut self) -> Result<(), HandlerError> {
        self.worker_failure().await
    }

    async fn finish(&mut self) -> Result<(), HandlerError> {
        self.stop_worker().await
    }
}

fn count_matches(out: &EventOutputs) {
    let mut last = None;
    for action in &out.actions {
        if last != Some(&action.rule_id) {
            metrics::counter!(names::RULES_MATCHES, "rule" => action.rule_id.clone()).increment(1);
            last = Some(&action.rule_id);
        }
    }
}

/// Wall-clock Unix milliseconds: only recorded (`decided_at`), never decided on.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
