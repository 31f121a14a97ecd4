//! `mailpipe deliveries list|failed|retry|disable|enable`: the outbound delivery schedule
//! (`mailpipe-deliver`'s store in Redis), for operators. `list` shows pending deliveries
//! soonest first with their attempts and last error; `failed` those that failed for good;
//! `retry` makes a pending delivery due now or a failed one pending again; `disable` stops
//! attempts to a target (they wait), `enable` lets them go again (as after a 410).

use clap::{Args, Subcommand};
use mailpipe_settings::Settings;
use mailpipe_stage_7_deliver::store::Retried;

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    command: DeliveriesCommand,
}

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// Pending deliveries, soonest due first (JSON lines).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Deliveries that failed for good and can be retried (JSON lines).
    Failed,
    /// Makes a pending delivery due now, or a failed one pending again (attempts from 0).
    Retry { action_id: String },
    /// Stops attempts to a target (`scheme://host:port`); its deliveries wait.
    Disable {
        target: String,
        #[arg(long)]
        reason: String,
    },
    /// Lets a disabled target's deliveries go again.
    Enable { target: String },
    /// Disabled targets and why (JSON lines).
    Disabled,
}

pub async fn run(settings: &Settings, args: &DeliveriesArgs) -> anyhow::Result<()> {
    let store = mailpipe_stage_7_deliver::connect_store(settings)?;
    match &args.command {
        DeliveriesCommand::List { limit } => {
            for (job, due_ms) in store.pending(*limit).await? {
                let last = job.last.as_ref();
                let line = serde_json::json!({
                    "action_id": job.id(),
                    "target": job.target(),
                    "due_at_ms": due_ms,
                    "attempts": job.attempts,
                    "last_status": last.and_then(|l| l.status),
                    "last_error": last.map(|l| l.error.as_str()),
                });
                println!("{line}");
            }
        }
        DeliveriesCommand::Failed => {
            for job in store.failed().await? {
                let last = job.last.as_ref();
                let line = serde_json::json!({
                    "action_id": job.id(),
                    "target": job.target(),
                    "attempts": job.attempts,
                    "last_status": last.and_then(|l| l.status),
                    "last_error": last.map(|l| l.error.as_str()),
                });
                println!("{line}");
            }
        }
        DeliveriesCommand::Retry { action_id } => {
            match store.retry(action_id, mailpipe_stage::now_ms()).await? {
                Retried::Rescheduled => println!("{action_id}: pending, due now"),
                Retried::Revived => println!("{action_id}: failed before, pending again, due now"),
                Retried::Busy => {
                    anyhow::bail!("{action_id} is being attempted right now; nothing changed")
                }
                Retried::Unknown => {
                    anyhow::bail!("no pending or failed delivery has the id {action_id:?}")
                }
            }
        }
        DeliveriesCommand::Disable { target, reason } => {
            store
                .disable(target, &format!("operator: {reason}"))
                .await?;
            println!("{target}: disabled; its deliveries wait until `mailpipe deliveries enable`");
        }
        DeliveriesCommand::Enable { target } => {
            if store.enable(target).await? {
                println!("{target}: enabled");
            } else {
                anyhow::bail!("{target} was not disabled (targets are written scheme://host:port)");
            }
        }
        DeliveriesCommand::Disabled => {
            for (target, why) in store.disabled().await? {
                println!("{}", serde_json::json!({"target": target, "why": why}));
            }
        }
    }
    Ok(())
}
