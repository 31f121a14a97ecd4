//! Applies `schemas/clickhouse/NNN_name.sql` in order, recording each in
//! `<database>.schema_migrations` with a checksum of its text.
//!
//! A migration file holds one or more statements separated by `;` at the end of a line;
//! `--` comment lines are ignored. Use `{database}` in the SQL for the configured database
//! name. Keep statements idempotent (`IF NOT EXISTS`) where ClickHouse allows: a crash
//! between a statement and its record re-runs the file.

use std::path::Path;

use mailpipe_settings::ClickHouseSettings;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{client, with_timeout, ClickHouseError};

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The file name without `.sql`, e.g. `001_email_events`; sorts in apply order.
    pub version: String,
    pub sql: String,
    pub checksum: String,
}

/// What `migrate` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub already_applied: Vec<String>,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct AppliedRow {
    version: String,
    checksum: String,
}

/// Reads every `*.sql` file of `dir`, sorted by name.
pub fn load_migrations(dir: &Path) -> Result<Vec<Migration>, ClickHouseError> {
    let files_error = |reason: String| ClickHouseError::MigrationFiles {
        path: dir.display().to_string(),
        reason,
    };
    let mut migrations = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| files_error(e.to_string()))? {
        let path = entry.map_err(|e| files_error(e.to_string()))?.path();
        if path.extension().is_none_or(|ext| ext != "sql") {
            continue;
        }
        let version = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| files_error(format!("file name {} is not UTF-8", path.display())))?
            .to_string();
        let sql = std::fs::read_to_string(&path)
            .map_err(|e| files_error(format!("{}: {e}", path.display())))?;
        let checksum = hex(&Sha256::digest(sql.as_bytes()));
        migrations.push(Migration {
            version,
            sql,
            checksum,
        });
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(migrations)
}

/// The statements of a migration, with `{database}` substituted.
pub fn statements(sql: &str, database: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(";\n")
        .map(|s| s.trim().trim_end_matches(';').trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{database}", database))
        .collect()
}

/// Creates the database and the migrations table if needed, then applies what is new.
pub async fn migrate(
    settings: &ClickHouseSettings,
    migrations: &[Migration],
) -> Result<MigrationReport, ClickHouseError> {
    let ch = client(settings);
    let db = &settings.database;
    with_timeout(
        settings,
        ch.query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .execute(),
    )
    .await?;
    with_timeout(
        settings,
        ch.query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
             (version String, checksum String, applied_at DateTime DEFAULT now()) \
             ENGINE = MergeTree ORDER BY version"
        ))
        .execute(),
    )
    .await?;
    let applied: Vec<AppliedRow> = with_timeout(
        settings,
        ch.query(&format!(
            "SELECT version, checksum FROM {db}.schema_migrations ORDER BY version"
        ))
        .fetch_all(),
    )
    .await?;

    let mut report = MigrationReport::default();
    for migration in migrations {
        if let Some(done) = applied.iter().find(|a| a.version == migration.version) {
            if done.checksum != migration.checksum {
                return Err(ClickHouseError::ChangedMigration {
                    version: migration.version.clone(),
                    applied: done.checksum.clone(),
                    current: migration.checksum.clone(),
                });
            }
            report.already_applied.push(migration.version.clone());
            continue;
        }
        for (index, statement) in statements(&migration.sql, db).into_iter().enumerate() {
            let limit = std::time::Duration::from_millis(settings.timeout_ms);
            match tokio::time::timeout(limit, ch.query(&statement).execute()).await {
                Err(_) => return Err(ClickHouseError::Timeout(limit)),
                Ok(Err(source)) => {
                    return Err(ClickHouseError::Statement {
                        version: migration.version.clone(),
                        index: index + 1,
                        source,
                    })
                }
                Ok(Ok(())) => {}
            }
        }
        with_timeout(
            settings,
            ch.query(&format!(
                "INSERT INTO {db}.schema_migrations (version, checksum) VALUES (?, ?)"
            ))
            .bind(&migration.version)
            .bind(&migration.checksum)
            .execute(),
        )
        .await?;
        tracing::info!(version = %migration.version, "migration applied");
        report.applied.push(migration.version.clone());
    }
    Ok(report)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_line_ending_semicolons_and_skip_comments() {
        let sql = "-- create things\nCREATE TABLE {database}.a (x UInt8) ENGINE = Memory;\n\n\
                   -- second\nCREATE TABLE {database}.b (s String DEFAULT 'a;b') ENGINE = Memory;\n";
        assert_eq!(
            statements(sql, "mp"),
            vec![
                "CREATE TABLE mp.a (x UInt8) ENGINE = Memory",
                "CREATE TABLE mp.b (s String DEFAULT 'a;b') ENGINE = Memory",
            ]
        );
    }

    #[test]
    fn files_load_in_name_order_with_checksums() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("002_b.sql"), "SELECT 2").unwrap();
        std::fs::write(dir.path().join("001_a.sql"), "SELECT 1").unwrap();
        std::fs::write(dir.path().join("README.md"), "not a migration").unwrap();
        let loaded = load_migrations(dir.path()).unwrap();
        let versions: Vec<_> = loaded.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["001_a", "002_b"]);
        assert_eq!(loaded[0].checksum.len(), 64);
        assert_ne!(loaded[0].checksum, loaded[1].checksum);
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = load_migrations(Path::new("/nonexistent/migrations")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/migrations"), "{err}");
    }
}
