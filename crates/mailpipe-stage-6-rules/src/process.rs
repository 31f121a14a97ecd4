//! The rules stage's work on one batch of events, apart from Kafka: ask the engine what
//! state it needs, fetch it, evaluate, take the claims, apply what was executed, and
//! return the records to write. Three round trips to Redis per batch, whatever its size:
//! counters and lookups, claims, effects.
//!
//! Invariant: a batch processed again (a redelivery after a crash, an aborted
//! transaction) writes the same action ids and changes the state no further: counter
//! entries are event ids, claims grant their holder again, score contributions are named
//! by the action's idempotency key, suppressions and segments are set-like.
//!
//! Lookups read the state as it is at the start of the batch (after the batch's counter
//! increments): a suppression made by one event is seen by the events of later batches.

use std::collections::HashMap;

use mailpipe_model::EmailEvent;
use mailpipe_rules_core::{
    event_time_ms, ActionParams, Answer as EngineAnswer, ClaimResult, CounterKey, Decision,
    DueAction, Evaluation, Lookup, OpenRules, Pending, PlannedAction, RuleSet, StatePlan,
    StateSnapshot,
};

use serde::{Deserialize, Serialize};

use crate::records::{action_record, ActionRecord, Outcome, SuppressionRecord};
use crate::state::{Answer, ClaimAnswer, Encoded, Encoder, Op, RulesState, StateError};

/// The suppression scope the engine's `suppressed` lookup reads.
pub const GLOBAL_SCOPE: &str = "global";

/// Settings of the processing that are not in the rules file.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// A recipient's engagement score is the sum of its contributions over this window.
    pub score_window_ms: i64,
    /// Topics `publish` actions may write to (`[rules] publish_topics`).
    pub publish_topics: Vec<String>,
}

/// A `publish` action's record, for a topic other teams own.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub key: Option<String>,
    pub value: String,
}

/// A delayed action, kept until it is due (in Redis, as JSON: [`Op::Schedule`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    pub action_id: String,
    pub due: DueAction,
    pub params: ActionParams,
}

/// Everything one event made the rules write, in the order the rules decided it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventOutputs {
    pub actions: Vec<ActionRecord>,
    pub suppressions: Vec<SuppressionRecord>,
    pub publishes: Vec<Publish>,
    pub scheduled: Vec<Scheduled>,
}

/// Evaluates `rules` on `events` against the shared state and returns each event's
/// outputs (same order as `events`). `decided_at` is the processing time recorded on the
/// actions; every decision itself rests on event time only.
pub async fn process(
    rules: &RuleSet,
    state: &mut RulesState,
    config: &ProcessConfig,
    events: &[EmailEvent],
    decided_at: i64,
) -> Result<Vec<EventOutputs>, StateError> {
    let planned = plan(rules, config, state.encoder(), events);
    process_planned(rules, state, config, events, &planned, decided_at).await
}

/// What a batch needs from the state, worked out before any round trip (the stage does it
/// while the previous batch waits on Redis): each event's plan and the rules it left open,
/// and the first round trip's ops, encoded. Valid only with the rule set and the state it
/// was made with.
pub struct Planned {
    plans: Vec<StatePlan>,
    open: Vec<OpenRules>,
    /// Every event's counter increments, then each distinct lookup once.
    ops: Vec<Op>,
    encoded: Encoded,
    first_lookup: usize,
    /// Per event, per lookup of its plan: the index of its answer among the lookups.
    answer_of: Vec<Vec<usize>>,
}

/// Plans `events` under `rules` (see [`Planned`]).
pub fn plan(
    rules: &RuleSet,
    config: &ProcessConfig,
    encoder: &Encoder,
    events: &[EmailEvent],
) -> Planned {
    let (plans, open): (Vec<_>, Vec<_>) = events.iter().map(|e| rules.plan_open(e)).unzip();
    let mut ops = Vec::new();
    for plan in &plans {
        for increment in &plan.increments {
            ops.push(Op::Increment {
                series: series(&increment.key),
                member: increment.event_id.clone(),
                at_ms: increment.at_ms,
                retain_ms: i64::try_from(increment.retain_ms).unwrap_or(i64::MAX),
            });
        }
    }
    // Each distinct lookup is asked once per batch and its answer given to every event that
    // needs it: all of them read the state after the batch's increments, so they would all
    // get the same answer anyway.
    let first_lookup = ops.len();
    let mut asked: HashMap<(&Lookup, i64), usize> = HashMap::new();
    let mut answer_of = Vec::with_capacity(events.len());
    for (event, plan) in events.iter().zip(&plans) {
        let at_ms = event_time_ms(event);
        let mut indices = Vec::with_capacity(plan.lookups.len());
        for lookup in &plan.lookups {
            // Histories come from ClickHouse, not Redis: answered in `evaluate`.
            if matches!(lookup, Lookup::History { .. }) {
                indices.push(usize::MAX);
                continue;
            }
            // Only a score's answer depends on the time it is read at.
            let at = if matches!(lookup, Lookup::Score { .. }) {
                at_ms
            } else {
                0
            };
            let index = *asked.entry((lookup, at)).or_insert_with(|| {
                ops.push(lookup_op(lookup, at_ms, config));
                ops.len() - 1 - first_lookup
            });
            indices.push(index);
        }
        answer_of.push(indices);
    }
    drop(asked);
    Planned {
        plans,
        open,
        encoded: encoder.encode(&ops),
        ops,
        first_lookup,
        answer_of,
    }
}

/// [`process`] of a batch already planned with `rules` and `state`'s encoder ([`plan`]).
pub async fn process_planned(
    rules: &RuleSet,
    state: &mut RulesState,
    config: &ProcessConfig,
    events: &[EmailEvent],
    planned: &Planned,
    decided_at: i64,
) -> Result<Vec<EventOutputs>, StateError> {
    let evaluations = evaluate(rules, state, events, planned).await?;
    let claims = claim(state, &evaluations).await?;
    let mut effects = Vec::new();
    let mut outputs = Vec::with_capacity(events.len());
    for ((event, evaluation), claims) in events.iter().zip(&evaluations).zip(claims) {
        outputs.push(decide(
            event,
            evaluation,
            &claims,
            config,
            decided_at,
            &mut effects,
        ));
    }
    state.apply(&effects).await?;
    Ok(outputs)
}

/// Round trip 1: every event's counter increments, then every lookup; then evaluation.
async fn evaluate(
    rules: &RuleSet,
    state: &mut RulesState,
    events: &[EmailEvent],
    planned: &Planned,
) -> Result<Vec<Evaluation>, StateError> {
    let mut answers = state.apply_encoded(&planned.ops, &planned.encoded).await?;
    let answers = answers.split_off(planned.first_lookup.min(answers.len()));
    let mut evaluations = Vec::with_capacity(events.len());
    let per_event = planned
        .plans
        .iter()
        .zip(&planned.open)
        .zip(&planned.answer_of);
    for (event, ((plan, open), indices)) in events.iter().zip(per_event) {
        let mut snapshot = StateSnapshot::new();
        answer_histories(state, event, plan, &mut snapshot).await?;
        for (lookup, &index) in plan.lookups.iter().zip(indices) {
            let answer = answers
                .get(index)
                .map(|a| not_by(a.clone(), &event.event_id));
            if let Some(answer) = answer.and_then(engine_answer) {
                snapshot.insert(lookup.clone(), answer);
            }
        }
        evaluations.push(rules.evaluate_matched(event, &snapshot, open));
    }
    Ok(evaluations)
}

/// The answers of an event's `history` lookups, from the state's history reader (none
/// without one: the conditions then find no state and are false).
async fn answer_histories(
    state: &mut RulesState,
    event: &EmailEvent,
    plan: &StatePlan,
    snapshot: &mut StateSnapshot,
) -> Result<(), StateError> {
    let Some(reader) = state.history() else {
        return Ok(());
    };
    for lookup in &plan.lookups {
        let Lookup::History { per, key, metric } = lookup else {
            continue;
        };
        let history = reader.get(*per, key, event_time_ms(event)).await?;
        let answer = match history.metric(metric) {
            Some(value) => EngineAnswer::Score(value),
            None => EngineAnswer::Missing,
        };
        snapshot.insert(lookup.clone(), answer);
    }
    Ok(())
}

/// Round trip 2: the cooldown/limit claims of every matched rule that needs one; the
/// result per rule (index into the evaluation's rules).
async fn claim(
    state: &mut RulesState,
    evaluations: &[Evaluation],
) -> Result<Vec<Vec<Option<ClaimResult>>>, StateError> {
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    for (event_index, evaluation) in evaluations.iter().enumerate() {
        for (rule_index, outcome) in evaluation.rules.iter().enumerate() {
            let Some(Pending::Claim { claim }) = &outcome.pending else {
                continue;
            };
            ops.push(Op::Claim {
                rule: claim.rule_id.clone(),
                claimant: claim.event_id.clone(),
                at_ms: evaluation.event_time_ms,
                cooldown: claim.cooldown.as_ref().map(|c| {
                    let key = format!("{}:{}", c.per.as_str(), c.value);
                    (key, i64::try_from(c.duration_ms).unwrap_or(i64::MAX))
                }),
                limit: claim
                    .limit
                    .map(|l| (l.count, i64::try_from(l.window_ms).unwrap_or(i64::MAX))),
            });
            slots.push((event_index, rule_index));
        }
    }
    let answers = state.apply(&ops).await?;
    let mut results: Vec<Vec<Option<ClaimResult>>> = evaluations
        .iter()
        .map(|e| vec![None; e.rules.len()])
        .collect();
    for ((event_index, rule_index), answer) in slots.into_iter().zip(answers) {
        results[event_index][rule_index] = match answer {
            Answer::Claim(ClaimAnswer::Granted) => Some(ClaimResult::Granted),
            Answer::Claim(ClaimAnswer::CooledDown) => Some(ClaimResult::CooledDown),
            Answer::Claim(ClaimAnswer::Limited) => Some(ClaimResult::Limited),
            _ => None,
        };
    }
    Ok(results)
}

/// Each action's record and, for executed actions due now, its effect.
fn decide(
    event: &EmailEvent,
    evaluation: &Evaluation,
    claims: &[Option<ClaimResult>],
    config: &ProcessConfig,
    decided_at: i64,
    effects: &mut Vec<Op>,
) -> EventOutputs {
    let mut out = EventOutputs::default();
    for (outcome, claim) in evaluation.rules.iter().zip(claims) {
        for (action, decision) in outcome.decide(*claim) {
            let mut detail = outcome
                .when
                .as_ref()
                .and_then(|w| w.decided_by.as_ref())
                .map(|c| format!("decided by {}", c.condition))
                .unwrap_or_default();
            let due_now = action.delay_ms == 0;
            let result = match (&action.params, decision) {
                (Ok(params), Decision::Executed) if !due_now => {
                    let scheduled = Scheduled {
                        action_id: action.idempotency_key.clone(),
                        due: DueAction {
                            rule_id: outcome.rule_id.clone(),
                            rule_version: outcome.rule_version.clone(),
                            action_index: action.index,
                            due_at_ms: action.due_at_ms,
                            event: event.clone(),
                        },
                        params: params.clone(),
                    };
                    effects.push(Op::Schedule {
                        id: scheduled.action_id.clone(),
                        due_at_ms: scheduled.due.due_at_ms,
                        payload: serde_json::to_string(&scheduled).unwrap_or_default(),
                    });
                    out.scheduled.push(scheduled);
                    Outcome::Scheduled
                }
                (Ok(params), Decision::Executed) => {
                    let origin = format!("rule:{}", outcome.rule_id);
                    execute(
                        params,
                        event,
                        event_time_ms(event),
                        &action.idempotency_key,
                        &origin,
                        config,
                        effects,
                        &mut out,
                    )
                }
                _ => Outcome::Skipped,
            };
            if decision == Decision::Executed && result == Outcome::Skipped {
                detail = String::from("publish topic not in [rules] publish_topics");
            }
            out.actions.push(action_record(
                event,
                &outcome.rule_id,
                &outcome.rule_version,
                action,
                decision,
                result,
                decided_at,
                detail,
            ));
        }
    }
    out
}

/// A delayed action that came due: what it wrote, and the id to forget once that is
/// written ([`Op::Unschedule`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub action_id: String,
    pub outputs: EventOutputs,
}

/// Fires up to `max` delayed actions due at `now_ms`: each guard is checked against the
/// state as it is now (windows end at the due time), the action runs if it still holds
/// and its rule is unchanged, and either way one record says what happened. The actions
/// stay scheduled until the caller has written the outputs and unschedules them.
pub async fn fire_due(
    rules: &RuleSet,
    state: &mut RulesState,
    config: &ProcessConfig,
    now_ms: i64,
    max: usize,
) -> Result<Vec<Fired>, StateError> {
    let due = match state
        .apply(&[Op::Due {
            until_ms: now_ms,
            max,
        }])
        .await?
        .pop()
    {
        Some(Answer::Due(due)) => due,
        _ => Vec::new(),
    };
    let mut fired = Vec::with_capacity(due.len());
    let mut effects = Vec::new();
    for (action_id, payload) in due {
        let mut out = EventOutputs::default();
        let Ok(scheduled) = serde_json::from_str::<Scheduled>(&payload) else {
            // Written by this stage, so only a foreign or corrupted value lands here: it is
            // dropped from the schedule with an error in the log (there is no event to
            // write a record about), never retried forever.
            tracing::error!(%action_id, "a scheduled action cannot be read back; dropped from the schedule");
            fired.push(Fired {
                action_id,
                outputs: out,
            });
            continue;
        };
        let lookups = rules.guard_lookups(&scheduled.due);
        let ops: Vec<Op> = lookups
            .iter()
            .map(|l| lookup_op(l, scheduled.due.due_at_ms, config))
            .collect();
        let answers = state.apply(&ops).await?;
        let snapshot: StateSnapshot = lookups
            .into_iter()
            .zip(answers)
            .filter_map(|(lookup, answer)| Some((lookup, engine_answer(answer)?)))
            .collect();
        let verdict = rules.check_guard(&scheduled.due, &snapshot);
        let (decision, result) = if verdict.run {
            let origin = format!("rule:{}", scheduled.due.rule_id);
            // A delayed action acts at its due time (its score counts from then).
            let result = execute(
                &scheduled.params,
                &scheduled.due.event,
                scheduled.due.due_at_ms,
                &action_id,
                &origin,
                config,
                &mut effects,
                &mut out,
            );
            (Decision::Executed, result)
        } else if verdict.suppressed {
            (Decision::SuppressedRecipient, Outcome::Skipped)
        } else {
            (Decision::GuardFailed, Outcome::Skipped)
        };
        let action = PlannedAction {
            index: scheduled.due.action_index,
            idempotency_key: action_id.clone(),
            delay_ms: 0,
            due_at_ms: scheduled.due.due_at_ms,
            guarded: true,
            params: Ok(scheduled.params.clone()),
            recipient_suppressed: false,
        };
        out.actions.push(action_record(
            &scheduled.due.event,
            &scheduled.due.rule_id,
            &scheduled.due.rule_version,
            &action,
            decision,
            result,
            now_ms,
            format!("due: {}", verdict.reason),
        ));
        fired.push(Fired {
            action_id,
            outputs: out,
        });
    }
    state.apply(&effects).await?;
    Ok(fired)
}

/// Applies one executed action now: its state change (queued in `effects`) and records.
#[allow(clippy::too_many_arguments)]
pub fn execute(
    params: &ActionParams,
    event: &EmailEvent,
    at: i64,
    action_id: &str,
    origin: &str,
    config: &ProcessConfig,
    effects: &mut Vec<Op>,
    out: &mut EventOutputs,
) -> Outcome {
    match params {
        ActionParams::Suppress {
            recipient,
            reason,
            scope,
        }
        | ActionParams::Unsuppress {
            recipient,
            reason,
            scope,
        } => {
            let suppressed = matches!(params, ActionParams::Suppress { .. });
            let record = SuppressionRecord {
                recipient: recipient.clone(),
                scope: scope.clone(),
                suppressed,
                reason: reason.clone(),
                origin: origin.to_string(),
                event_id: Some(event.event_id.clone()),
                at,
            };
            effects.push(if suppressed {
                Op::Suppress {
                    scope: scope.clone(),
                    recipient: recipient.clone(),
                    record: suppression_json(&record),
                }
            } else {
                Op::Unsuppress {
                    scope: scope.clone(),
                    recipient: recipient.clone(),
                }
            });
            out.suppressions.push(record);
            Outcome::Applied
        }
        ActionParams::Score { recipient, add } => {
            effects.push(Op::ScoreAdd {
                recipient: recipient.clone(),
                contribution: action_id.to_string(),
                delta: *add,
                at_ms: at,
                window_ms: config.score_window_ms,
            });
            Outcome::Applied
        }
        ActionParams::Segment {
            recipient,
            segment,
            remove,
        } => {
            let (segment, recipient) = (segment.clone(), recipient.clone());
            effects.push(if *remove {
                Op::SegmentRemove { segment, recipient }
            } else {
                Op::SegmentAdd { segment, recipient }
            });
            Outcome::Applied
        }
        ActionParams::Publish { topic, .. } if !config.publish_topics.contains(topic) => {
            Outcome::Skipped
        }
        ActionParams::Publish { topic, key, value } => {
            out.publishes.push(Publish {
                topic: topic.clone(),
                key: key.clone(),
                value: value.clone(),
            });
            Outcome::Applied
        }
        // The outbound delivery worker takes it from `mail.actions`.
        ActionParams::Webhook { .. } => Outcome::Pending,
    }
}

/// The lookup store's value of a suppression: what `mailpipe suppressions check` shows.
pub fn suppression_json(record: &SuppressionRecord) -> String {
    serde_json::json!({
        "reason": record.reason,
        "origin": record.origin,
        "event_id": record.event_id,
        "at": record.at,
    })
    .to_string()
}

/// The Redis series of a counter key.
fn series(key: &CounterKey) -> String {
    format!("{}|{}|{}", key.counter, key.per.as_str(), key.value)
}

fn lookup_op(lookup: &Lookup, at_ms: i64, config: &ProcessConfig) -> Op {
    match lookup {
        Lookup::Count {
            key,
            from_ms,
            until_ms,
        } => Op::Count {
            series: series(key),
            from_ms: *from_ms,
            until_ms: *until_ms,
        },
        Lookup::Score { recipient } => Op::Score {
            recipient: recipient.clone(),
            at_ms,
            window_ms: config.score_window_ms,
        },
        Lookup::Segment { name, recipient } => Op::SegmentHas {
            segment: name.clone(),
            recipient: recipient.clone(),
        },
        Lookup::Suppressed { recipient } => Op::Suppressed {
            scope: GLOBAL_SCOPE.to_string(),
            recipient: recipient.clone(),
        },
        // Never asked of Redis (`plan` leaves histories to `answer_histories`); a count of
        // nothing if it ever were.
        Lookup::History { .. } => Op::Count {
            series: String::new(),
            from_ms: 0,
            until_ms: 0,
        },
    }
}

/// A suppression this very event made (a redelivery, or a batch retried after its effects
/// were written) is not a suppression for it: the event decides as it did the first time.
fn not_by(answer: Answer, event_id: &str) -> Answer {
    match &answer {
        Answer::Suppression(Some(record)) => {
            let made_by = serde_json::from_str::<serde_json::Value>(record)
                .ok()
                .and_then(|v| v.get("event_id")?.as_str().map(str::to_string));
            if made_by.as_deref() == Some(event_id) {
                Answer::Suppression(None)
            } else {
                answer
            }
        }
        _ => answer,
    }
}

fn engine_answer(answer: Answer) -> Option<EngineAnswer> {
    match answer {
        Answer::Count(n) => Some(EngineAnswer::Count(n)),
        Answer::Score(s) => Some(EngineAnswer::Score(s)),
        Answer::Member(b) => Some(EngineAnswer::Flag(b)),
        Answer::Suppression(record) => Some(EngineAnswer::Flag(record.is_some())),
        Answer::Claim(_) | Answer::Due(_) | Answer::Done => None,
    }
}
