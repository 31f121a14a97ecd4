//! `mailpipe suppressions list|check|add|remove`: the suppression list the rules keep, for
//! operators. `list` and `check` read the lookup store (Redis); `add` and `remove` write
//! the change to `mail.suppressions` first (the audit trail other teams read, origin
//! `operator:<by>`), then to the lookup store, so a change is never in force without its
//! record.

use anyhow::Context;
use clap::{Args, Subcommand};
use mailpipe_avro::{AvroCodec, TopicSchema, SUPPRESSION_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_settings::Settings;
use mailpipe_stage_6_rules::handler::connect_state;
use mailpipe_stage_6_rules::process::{suppression_json, GLOBAL_SCOPE};
use mailpipe_stage_6_rules::records::SuppressionRecord;
use mailpipe_stage_6_rules::{Answer, Op};
use rdkafka::producer::FutureRecord;

#[derive(Debug, Args)]
pub struct SuppressionsArgs {
    #[command(subcommand)]
    command: SuppressionsCommand,
}

#[derive(Debug, Subcommand)]
enum SuppressionsCommand {
    /// Every suppressed recipient of a scope, with reason, origin and time (JSON lines).
    List {
        #[arg(long, default_value = GLOBAL_SCOPE)]
        scope: String,
    },
    /// Whether a recipient is suppressed; exit 1 if not.
    Check {
        recipient: String,
        #[arg(long, default_value = GLOBAL_SCOPE)]
        scope: String,
    },
    /// Suppress a recipient (recorded on mail.suppressions as operator:<by>).
    Add {
        recipient: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = GLOBAL_SCOPE)]
        scope: String,
        /// Who decided (recorded as the origin `operator:<by>`).
        #[arg(long)]
        by: String,
    },
    /// Lift a recipient's suppression (recorded on mail.suppressions as operator:<by>).
    Remove {
        recipient: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = GLOBAL_SCOPE)]
        scope: String,
        #[arg(long)]
        by: String,
    },
}

pub async fn run(settings: &Settings, args: &SuppressionsArgs) -> anyhow::Result<bool> {
    let mut state = connect_state(settings)?;
    match &args.command {
        SuppressionsCommand::List { scope } => {
            for (recipient, record) in state.suppressions(scope).await? {
                let record: serde_json::Value =
                    serde_json::from_str(&record).unwrap_or(serde_json::Value::String(record));
                let line =
                    serde_json::json!({"recipient": recipient, "scope": scope, "record": record});
                println!("{line}");
            }
            Ok(true)
        }
        SuppressionsCommand::Check { recipient, scope } => {
            let lookup = Op::Suppressed {
                scope: scope.clone(),
                recipient: normalized(recipient),
            };
            match state.apply(&[lookup]).await?.pop() {
                Some(Answer::Suppression(Some(record))) => {
                    println!("{recipient} is suppressed in {scope}: {record}");
                    Ok(true)
                }
                _ => {
                    println!("{recipient} is not suppressed in {scope}");
                    Ok(false)
                }
            }
        }
        SuppressionsCommand::Add {
            recipient,
            reason,
            scope,
            by,
        } => change(settings, &mut state, recipient, reason, scope, by, true).await,
        SuppressionsCommand::Remove {
            recipient,
            reason,
            scope,
            by,
        } => change(settings, &mut state, recipient, reason, scope, by, false).await,
    }
}

/// Addresses are kept as the canonical events carry them: trimmed, lower-cased.
fn normalized(recipient: &str) -> String {
    recipient.trim().to_lowercase()
}

async fn change(
    settings: &Settings,
    state: &mut mailpipe_stage_6_rules::RulesState,
    recipient: &str,
    reason: &str,
    scope: &str,
    by: &str,
    suppressed: bool,
) -> anyhow::Result<bool> {
    let record = SuppressionRecord {
        recipient: normalized(recipient),
        scope: scope.to_string(),
        suppressed,
        reason: reason.to_string(),
        origin: format!("operator:{by}"),
        event_id: None,
        at: mailpipe_stage::now_ms(),
    };
    let topic = TopicNames::new(&settings.kafka.topic_prefix).name(Topic::Suppressions);
    let codec = AvroCodec::new(&settings.schema_registry.url)?;
    let schema = codec
        .register(&TopicSchema::new(&topic, SUPPRESSION_SCHEMA)?)
        .await
        .with_context(|| format!("registering the schema of {topic}"))?;
    let payload = schema.encode(&record, 256)?;
    let key = record.key();
    let producer = mailpipe_kafka::create_producer(&settings.kafka)?;
    producer
        .send(
            FutureRecord::to(&topic)
                .key(key.as_bytes())
                .payload(&payload),
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("writing the change to {topic}: {e}"))?;
    let op = if suppressed {
        Op::Suppress {
            scope: record.scope.clone(),
            recipient: record.recipient.clone(),
            record: suppression_json(&record),
        }
    } else {
        Op::Unsuppress {
            scope: record.scope.clone(),
            recipient: record.recipient.clone(),
        }
    };
    state.apply(&[op]).await?;
    let verb = if suppressed {
        "suppressed"
    } else {
        "no longer suppressed"
    };
    println!(
        "{} is {verb} in {scope} (recorded on {topic})",
        record.recipient
    );
    Ok(true)
}
