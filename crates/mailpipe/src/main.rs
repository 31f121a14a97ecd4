//! The `mailpipe` command: operator tasks around the pipeline.
//!
//! - `mailpipe create-topics`: creates every topic with its configured partition count.
//! - `mailpipe migrate`: applies the ClickHouse migrations in `schemas/clickhouse/`.
//! - `mailpipe check-config`: validates the configuration and prints it as loaded.
//! - `mailpipe inspect <provider> <body-file> [-H 'Name: value']...`: prints the canonical
//!   events a payload becomes, one JSON object per line, without Kafka.
//! - `mailpipe read rejected|dlq|events|events-unique`: records as JSON lines.
//! - `mailpipe summary [--expect samples.json]`: records per topic and distinct events per
//!   provider and type in ClickHouse (compared with what send-samples got accepted).
//! - `mailpipe deliveries list|failed|retry|disable|enable|disabled`: the outbound webhook
//!   delivery schedule, for operators.
//! - `mailpipe predict send-time <recipient>` / `mailpipe predict evaluate --holdout DAYS`:
//!   the insight models over the history in ClickHouse; `mailpipe engagement <key>`: a
//!   recipient's or domain's engagement history.
//! - `mailpipe retention [--dry-run]`: drops ClickHouse monthly partitions older than
//!   `[aggregate] retention_months`.
//! - `mailpipe send-samples`: DEVELOPMENT ONLY; posts correctly signed sample webhooks of
//!   every provider to the receiver, like an ESP (retries included), and sums up.
//! - `mailpipe serve-dev-cert`: DEVELOPMENT ONLY; serves the development SNS certificate on
//!   loopback for the SES samples.

mod deliveries;
mod erase;
mod inspect;
mod predict;
mod read;
mod replay;
mod rules;
mod samples;
mod summary;
mod suppressions;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mailpipe_settings::Settings;

#[derive(Debug, Parser)]
#[command(name = "mailpipe", version, about = "mailpipe operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create all Kafka topics (existing topics are left alone).
    CreateTopics,
    /// Apply new ClickHouse migrations, in order, recording each.
    Migrate {
        /// Directory of NNN_name.sql files.
        #[arg(
            long,
            env = "MAILPIPE_MIGRATIONS_DIR",
            default_value = "schemas/clickhouse"
        )]
        dir: PathBuf,
    },
    /// Validate the configuration and print it as loaded (secrets included: mind where it goes).
    CheckConfig,
    /// Print the canonical events a webhook body becomes, one JSON object per line.
    Inspect(inspect::InspectArgs),
    /// Check a rules file, or explain what its rules do to an event.
    Rules(rules::RulesArgs),
    /// List, check, add or remove suppressed recipients (the rules' suppression list).
    Suppressions(suppressions::SuppressionsArgs),
    /// Outbound webhook deliveries: list, failed, retry, disable, enable, disabled.
    Deliveries(deliveries::DeliveriesArgs),
    /// Print records of mail.rejected, mail.dlq or the event topics as JSON lines.
    Read(read::ReadArgs),
    /// Records per topic, and distinct events per provider and type in ClickHouse.
    Summary(summary::SummaryArgs),
    /// Re-derive the events of a time range of mail.raw after a parser fix and put the
    /// corrected ones in place (resumable; --dry-run reports what would change).
    Replay(replay::ReplayArgs),
    /// Erase a recipient (privacy request): ClickHouse, Redis state, the suppression topic;
    /// keeps suppressing them by keyed hash; audited in privacy_erasures.
    Erase(erase::EraseArgs),
    /// Send-time and engagement-likelihood predictions from the history in ClickHouse, and
    /// their evaluation on held-out history.
    Predict(predict::PredictArgs),
    /// A recipient's or a domain's engagement history (counts over 7/30/90 days, last
    /// opens and clicks, bounces).
    Engagement(predict::EngagementArgs),
    /// Drop ClickHouse monthly partitions older than [aggregate] retention_months.
    Retention {
        /// Only list what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
    /// DEVELOPMENT ONLY: post signed sample webhooks of every provider to the receiver.
    SendSamples(samples::SendSamplesArgs),
    /// DEVELOPMENT ONLY: serve the development SNS signing certificate on loopback.
    ServeDevCert(samples::ServeDevCertArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // One line per cause, no backtrace: these are operator-facing messages.
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // inspect is a pure transformation: it needs no configuration or services.
    if let Command::Inspect(args) = &cli.command {
        return inspect::run(args);
    }
    // Neither do the rules commands (they read no live state).
    if let Command::Rules(args) = &cli.command {
        return rules::run(args);
    }
    // Neither does serving a certificate file.
    if let Command::ServeDevCert(args) = &cli.command {
        return samples::serve_dev_cert(args).await;
    }
    let settings = Settings::load()?;
    mailpipe_telemetry::init_logging(&settings.telemetry)?;
    match cli.command {
        Command::CreateTopics => {
            let created = mailpipe_kafka::create_topics(
                &settings.kafka,
                settings.receiver.max_record_bytes(),
            )
            .await
            .with_context(|| format!("creating topics on {}", settings.kafka.brokers))?;
            for (name, new) in created {
                println!("{name}: {}", if new { "created" } else { "exists" });
            }
        }
        Command::Migrate { dir } => {
            let migrations = mailpipe_clickhouse::load_migrations(&dir)?;
            let report = mailpipe_clickhouse::migrate(&settings.clickhouse, &migrations)
                .await
                .with_context(|| format!("migrating ClickHouse at {}", settings.clickhouse.url))?;
            println!(
                "database {}: {} migration(s) applied, {} already applied",
                settings.clickhouse.database,
                report.applied.len(),
                report.already_applied.len()
            );
        }
        Command::CheckConfig => {
            print!("{}", toml::to_string_pretty(&settings)?);
        }
        Command::Read(args) => read::run(&settings, &args).await?,
        Command::Suppressions(args) => {
            if !suppressions::run(&settings, &args).await? {
                // `check` of a recipient that is not suppressed: a clear answer, exit 1.
                std::process::exit(1);
            }
        }
        Command::Deliveries(args) => deliveries::run(&settings, &args).await?,
        Command::Summary(args) => summary::run(&settings, &args).await?,
        Command::Replay(args) => replay::run(&settings, &args).await?,
        Command::Erase(args) => erase::run(&settings, &args).await?,
        Command::Predict(args) => predict::run(&settings, &args).await?,
        Command::Engagement(args) => predict::engagement(&settings, &args).await?,
        Command::Retention { dry_run } => {
            let months = settings.aggregate.retention_months;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("reading the clock")?;
            let now = i64::try_from(now.as_secs()).context("reading the clock")?;
            let dropped = mailpipe_clickhouse::retention::drop_expired(
                &settings.clickhouse,
                months,
                now,
                dry_run,
            )
            .await
            .with_context(|| format!("retention on ClickHouse at {}", settings.clickhouse.url))?;
            let verb = if dry_run { "would drop" } else { "dropped" };
            if months == 0 {
                println!("retention_months = 0: everything is kept");
            }
            for p in &dropped {
                println!(
                    "{verb} {}.{} partition {}",
                    settings.clickhouse.database, p.table, p.partition
                );
            }
            println!("{} partition(s) {verb}", dropped.len());
        }
        Command::SendSamples(args) => samples::send_samples(&settings, &args).await?,
        Command::Inspect(_) | Command::Rules(_) | Command::ServeDevCert(_) => {
            unreachable!("handled before loading settings")
        }
    }
    Ok(())
}
