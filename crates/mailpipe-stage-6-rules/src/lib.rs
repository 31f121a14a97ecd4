//! The rules stage (issue 18): reads `mail.events.unique`, evaluates the rules of
//! `mailpipe-rules-core` ([`shared`]: reloaded when the file changes) and writes what they
//! decide to `mail.actions` and `mail.suppressions` ([`handler`], on the stage kit, exactly
//! once by default), with the rules' state in Redis ([`state`], [`process`]); delayed
//! actions fire from [`scheduler`].
//!
//! Invariant: every write to the shared state is idempotent under redelivery. Each one is
//! named by the event (or the action's idempotency key) that causes it, so a message
//! processed twice (a crash before its offset was committed, an aborted transaction)
//! leaves the state as if it had been processed once.

pub mod handler;
pub mod history;
pub mod process;
pub mod records;
pub mod scheduler;
pub mod shared;
pub mod state;

pub use state::{Answer, ClaimAnswer, Op, RulesState, StateError};

use std::time::Duration;

use mailpipe_settings::Settings;
use mailpipe_stage::{Stage, StageKit};
use tokio_util::sync::CancellationToken;

/// Runs the stage until `shutdown`: refuses to start on a rules file that does not load
/// (every error listed), then consumes, reloads the file on change, and fires due actions.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let file = settings.rules.file.clone();
    let loaded = shared::load_file(&file).map_err(|errors| {
        anyhow::anyhow!("the rules file does not load:\n{}", errors.join("\n"))
    })?;
    tracing::info!(file = %file.display(), rules = loaded.len(), "rules loaded");
    let rules = shared::SharedRules::new(loaded);
    let kit = StageKit::new(Stage::Rules, &settings).await?;
    let outputs = handler::Outputs::register(&kit).await?;
    let handler = handler::RulesHandler::new(kit, rules.clone(), outputs.clone())?;
    let reload = tokio::spawn(shared::reload_on_change(
        rules.clone(),
        file,
        Duration::from_millis(settings.rules.reload_check_ms),
        shutdown.clone(),
    ));
    let scheduler = tokio::spawn(scheduler::run(
        settings.clone(),
        rules,
        outputs,
        shutdown.clone(),
    ));
    let consumer = mailpipe_stage::run_consumer(Stage::Rules, &settings, handler, shutdown.clone());
    tokio::pin!(consumer);
    let mut scheduler = scheduler;
    // The stage is all three tasks: if the scheduler ends before shutdown (it cannot
    // produce or reach Redis at start, or panicked), the stage stops too, rather than run
    // on without firing delayed actions.
    let consumed = tokio::select! {
        consumed = &mut consumer => consumed,
        ended = &mut scheduler => {
            shutdown.cancel();
            let consumed = consumer.await;
            let _ = reload.await;
            return match ended {
                Ok(Ok(())) => consumed,
                Ok(Err(e)) => Err(e.context("the scheduler of due actions stopped")),
                Err(e) => Err(anyhow::anyhow!("the scheduler of due actions panicked: {e}")),
            };
        }
    };
    shutdown.cancel();
    let _ = reload.await;
    match scheduler.await {
        Ok(Err(e)) => tracing::error!(error = %e, "the scheduler of due actions failed"),
        Err(e) => tracing::error!(error = %e, "the scheduler of due actions panicked"),
        Ok(Ok(())) => {}
    }
    consumed
}
