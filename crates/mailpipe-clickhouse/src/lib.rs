//! ClickHouse access: a client configured for every server version we support, and the
//! migration runner.
//!
//! Invariant: migrations are applied in file-name order, each at most once, and an applied
//! migration whose file later changed is an error (never silently re-applied or skipped).

pub mod engagement;
mod migrations;
pub mod retention;

use std::time::Duration;

use mailpipe_settings::ClickHouseSettings;

pub use migrations::{load_migrations, migrate, Migration, MigrationReport};

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("clickhouse: {0}")]
    Query(#[from] clickhouse::error::Error),
    #[error("clickhouse call timed out after {0:?}")]
    Timeout(Duration),
    #[error("reading migrations from {path}: {reason}")]
    MigrationFiles { path: String, reason: String },
    #[error("migration {version} was applied with different content (checksum {applied}, file now {current}); add a new migration instead of editing an applied one")]
    ChangedMigration {
        version: String,
        applied: String,
        current: String,
    },
    #[error("mutations of {table} (ALTER ... DELETE) have not finished in time; the command that started them can be run again to resume")]
    MutationsPending { table: String },
    #[error("migration {version}, statement {index}: {source}")]
    Statement {
        version: String,
        index: usize,
        source: clickhouse::error::Error,
    },
}

/// A client for the configured server. Validation is off: its schema query needs a newer
/// server than ClickHouse 18.16. The database is not selected here, because `migrate`
/// must work before it exists; queries name `database.table` explicitly.
pub fn client(settings: &ClickHouseSettings) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(&settings.url)
        .with_user(&settings.user)
        .with_password(&settings.password)
        .with_validation(false)
}

/// Runs `fut` with the configured per-call timeout.
pub async fn with_timeout<T>(
    settings: &ClickHouseSettings,
    fut: impl std::future::Future<Output = Result<T, clickhouse::error::Error>>,
) -> Result<T, ClickHouseError> {
    let limit = Duration::from_millis(settings.timeout_ms);
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClickHouseError::Timeout(limit)),
    }
}

/// Waits until `database.table` has no mutation under way (`ALTER TABLE … DELETE`), or
/// `deadline` passes. ClickHouse 18.16 has no synchronous mutations.
pub async fn wait_for_mutations(
    client: &clickhouse::Client,
    database: &str,
    table: &str,
    deadline: std::time::Instant,
) -> Result<(), ClickHouseError> {
    loop {
        let pending: u64 = client
            .query("SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0")
            .bind(database)
            .bind(table)
            .fetch_one()
            .await?;
        if pending == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(ClickHouseError::MutationsPending {
                table: table.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
