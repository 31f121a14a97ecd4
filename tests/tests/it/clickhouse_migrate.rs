//! The migration runner against the real ClickHouse: in order, once, recorded, and an
//! edited applied migration is refused.

use mailpipe_clickhouse::{load_migrations, migrate};
use mailpipe_test_support::{dev_settings, unique_name};

#[tokio::test]
async fn migrations_apply_once_in_order_and_edits_are_refused() {
    let mut settings = dev_settings().clickhouse;
    settings.database = unique_name("mp_test");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_first.sql"),
        "-- a table\nCREATE TABLE IF NOT EXISTS {database}.first (x UInt32) ENGINE = MergeTree ORDER BY x;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("002_second.sql"),
        "CREATE TABLE IF NOT EXISTS {database}.second (x UInt32) ENGINE = Memory;\n\
         INSERT INTO {database}.first VALUES (1), (2);\n",
    )
    .unwrap();

    let migrations = load_migrations(dir.path()).unwrap();
    let report = migrate(&settings, &migrations).await.unwrap();
    assert_eq!(report.applied, ["001_first", "002_second"]);
    let again = migrate(&settings, &migrations).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, ["001_first", "002_second"]);

    let ch = mailpipe_clickhouse::client(&settings);
    let rows: u64 = ch
        .query(&format!("SELECT count() FROM {}.first", settings.database))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, 2, "the INSERT ran exactly once");

    std::fs::write(
        dir.path().join("001_first.sql"),
        "CREATE TABLE {database}.first_renamed (x UInt32) ENGINE = Memory;\n",
    )
    .unwrap();
    let edited = load_migrations(dir.path()).unwrap();
    let err = migrate(&settings, &edited).await.unwrap_err();
    assert!(err.to_string().contains("001_first"), "{err}");

    ch.query(&format!("DROP DATABASE {}", settings.database))
        .execute()
        .await
        .unwrap();
}
