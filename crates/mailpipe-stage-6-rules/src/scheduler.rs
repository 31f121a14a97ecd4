//! Delayed actions coming due: every second, the actions due now are fired
//! ([`crate::process::fire_due`]) against the rules in force, their records produced (at
//! least once, with a producer of their own: they belong to no input), and only then
//! unscheduled. A crash in between fires them again under the same action ids, which is
//! what readers of `mail.actions` dedupe on; their state changes are idempotent.
//!
//! The schedule lives in Redis, shared by every replica: replicas firing at once may
//! each write a due action's records (same action id) before either unschedules it.

use std::time::Duration;

use mailpipe_runtime::backoff;
use mailpipe_settings::Settings;
use mailpipe_telemetry::names;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::handler::{connect_state, now_ms, process_config, Outputs};
use crate::process::fire_due;
use crate::shared::SharedRules;
use crate::state::Op;

/// How many due actions one round fires.
const ROUND: usize = 200;

/// Fires due actions until `shutdown`.
pub async fn run(
    settings: Settings,
    rules: SharedRules,
    outputs: Outputs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let producer = mailpipe_stage::create_producer(&settings)?;
    let mut state = connect_state(&settings)?;
    let config = process_config(&settings.rules);
    let mut failures = 0;
    loop {
        let pause = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            fired = round(&rules, &mut state, &config, &outputs, &producer) => match fired {
                Ok(n) if n == ROUND => Duration::ZERO,
                Ok(_) => {
                    failures = 0;
                    Duration::from_secs(1)
                }
                Err(e) => {
                    metrics::counter!(names::RULES_STATE_ERRORS).increment(1);
                    tracing::warn!(error = %e, "firing due actions failed; retrying");
                    failures += 1;
                    backoff(failures)
                }
            },
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One round: fire, then per action produce its records and unschedule it. Answers how
/// many fired. A record Kafka refuses for good (too large, an unknown topic) is logged and
/// its action unscheduled, so one bad action never holds the schedule; any other produce
/// error ends the round (the rest fire again in the next).
async fn round(
    rules: &SharedRules,
    state: &mut crate::state::RulesState,
    config: &crate::process::ProcessConfig,
    outputs: &Outputs,
    producer: &FutureProducer,
) -> anyhow::Result<usize> {
    let now = now_ms();
    let fired = fire_due(&rules.current(), state, config, now, ROUND).await?;
    for action in &fired {
        for record in outputs.records(&action.outputs)? {
            let sent = producer
                .send(record.future_record(), Duration::from_secs(30))
                .await;
            if let Err((e, _)) = sent {
                if !mailpipe_kafka::transaction::is_permanent(&e) {
                    anyhow::bail!("producing a fired action's record to {}: {e}", record.topic);
                }
                tracing::error!(action_id = %action.action_id, topic = %record.topic, error = %e,
                    "a fired action's record can never be produced; the action is dropped");
            }
        }
        let unschedule = Op::Unschedule {
            id: action.action_id.clone(),
            now_ms: now,
        };
        state.apply(&[unschedule]).await?;
        metrics::counter!(names::RULES_DUE_FIRED).increment(1);
    }
    Ok(fired.len())
}
