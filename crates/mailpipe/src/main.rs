//! The `mailpipe` command: operator tasks around the pipeline.
//!
//! - `mailpipe create-topics`: creates every topic with its configured partition count.
//! - `mailpipe migrate`: applies the ClickHouse migrations in `schemas/clickhouse/`.
//! - `mailpipe check-config`: validates the configuration and prints it as loaded.

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    mailpipe_telemetry::init_logging(&settings.telemetry)?;
    match cli.command {
        Command::CreateTopics => {
            let created = mailpipe_kafka::create_topics(&settings.kafka)
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
    }
    Ok(())
}
