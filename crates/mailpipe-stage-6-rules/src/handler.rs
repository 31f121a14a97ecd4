//! The rules stage on the kit: per polled batch, decode the events, run them through the
//! rules ([`crate::process`]: three Redis round trips), and emit each input's records in
//! input order — its action records, suppression changes and published records, or its
//! dead letter. Exactly once (the default) they commit in the kit's transactions with the
//! input offsets.
//!
//! A Redis outage holds the batch (retried with backoff; the consumer loop's in-flight
//! limit then pauses consumption): no event is evaluated without its state, none skipped.

use std::time::{Duration, Instant};

use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic};
use mailpipe_model::EmailEvent;
use mailpipe_runtime::backoff;
use mailpipe_stage::{Emission, InputRef, Origin, OutRecord, Output, StageError, StageKit};
use mailpipe_telemetry::names;

use crate::process::{process, EventOutputs, ProcessConfig};
use crate::shared::SharedRules;
use crate::state::RulesState;

/// The rules stage's consumer-loop handler.
pub struct RulesHandler {
    kit: StageKit,
    rules: SharedRules,
    state: RulesState,
    config: ProcessConfig,
    outputs: Outputs,
}

/// The stage's two Avro output topics, registered at start-up.
#[derive(Clone)]
pub struct Outputs {
    pub actions: Output,
    pub suppressions: Output,
}

impl Outputs {
    pub async fn register(kit: &StageKit) -> anyhow::Result<Outputs> {
        Ok(Outputs {
            actions: kit.output(Topic::Actions).await?,
            suppressions: kit.output(Topic::Suppressions).await?,
        })
    }

    /// The records of one event's (or one fired action's) outputs, in the rules' order.
    pub fn records(&self, outputs: &EventOutputs) -> Result<Vec<OutRecord>, StageError> {
        let mut records = Vec::new();
        for action in &outputs.actions {
            let key = Some(action.action_id.clone().into_bytes());
            records.push(self.actions.record(key, action, 512)?);
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
    Ok(RulesState::new(connection, rules.redis_prefix.clone()))
}

impl RulesHandler {
    pub fn new(kit: StageKit, rules: SharedRules, outputs: Outputs) -> anyhow::Result<Self> {
        let settings = kit.settings().clone();
        Ok(RulesHandler {
            state: connect_state(&settings)?,
            config: process_config(&settings.rules),
            rules,
            outputs,
            kit,
        })
    }

    /// Evaluates `events`, retrying while Redis fails: the batch holds, nothing is skipped.
    async fn process_holding(&mut self, events: &[EmailEvent]) -> Vec<EventOutputs> {
        let rules = self.rules.current();
        let mut attempt = 0;
        loop {
            let now = now_ms();
            match process(&rules, &mut self.state, &self.config, events, now).await {
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
        let started = Instant::now();
        // Decoded events, and per input either its event's index or its dead letter.
        let mut events = Vec::with_capacity(batch.len());
        let mut plans = Vec::with_capacity(batch.len());
        for delivery in &batch {
            match self.kit.decode_event(&delivery.message).await {
                Ok(event) => {
                    plans.push(Ok(events.len()));
                    events.push(event);
                }
                Err(StageError::Permanent { reason, detail }) => {
                    let letter = self.kit.dead_letters().record(
                        &delivery.message,
                        reason,
                        detail,
                        Origin::default(),
                    )?;
                    plans.push(Err(letter));
                }
                Err(e) => return Err(e.into()),
            }
        }
        metrics::counter!(names::RULES_EVENTS).increment(events.len() as u64);
        let outputs = self.process_holding(&events).await;
        let mut emissions = Vec::with_capacity(batch.len());
        for (delivery, plan) in batch.into_iter().zip(plans) {
            let (records, origin) = match plan {
                Ok(index) => {
                    let event = &events[index];
                    let out = &outputs[index];
                    count_matches(out);
                    let origin = Origin {
                        raw_request_id: Some(event.raw_request_id.as_str()),
                        provider: Some(event.provider.as_str()),
                        source: Some(event.source.as_str()),
                    };
                    (self.outputs.records(out)?, origin)
                }
                Err(letter) => (vec![letter], Origin::default()),
            };
            emissions.push(Emission::<()> {
                input: InputRef::new(&delivery.message, origin),
                records,
                ack: delivery.ack,
                tag: None,
            });
        }
        self.kit.emitter().emit(emissions).await;
        metrics::histogram!(names::RULES_EVALUATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        Ok(())
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
