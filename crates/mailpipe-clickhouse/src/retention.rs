//! Retention: drop whole monthly partitions (`toYYYYMM` of the event time) older than the
//! configured number of months. Dropping a partition is instant and leaves no tombstones,
//! unlike `ALTER … DELETE`, and works on every server version (ClickHouse 18.16 has no TTL).

use mailpipe_settings::ClickHouseSettings;
use serde::Deserialize;

use crate::{client, with_timeout, ClickHouseError};

/// The tables whose partitions retention drops; each is partitioned by `toYYYYMM` of its
/// event time (`suppressions` is not: the list is kept whatever its age).
pub const RETAINED_TABLES: [&str; 6] = [
    "email_events",
    "email_stats_1m",
    "rule_executions",
    "delivery_attempts",
    "rejected_requests",
    "dead_letters",
];

/// One dropped (or, in a dry run, droppable) partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedPartition {
    pub table: String,
    /// The partition id, `YYYYMM`.
    pub partition: u32,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct PartitionRow {
    table: String,
    partition: String,
}

/// The first month kept when keeping `months` months, counting the month of `today_yyyymm`
/// as the first: keeping 1 month in 2026-11 keeps 202611 only.
pub fn oldest_kept_month(today_yyyymm: u32, months: u32) -> u32 {
    let index = (today_yyyymm / 100) * 12 + (today_yyyymm % 100 - 1);
    let first = index.saturating_sub(months.saturating_sub(1));
    (first / 12) * 100 + first % 12 + 1
}

/// The month of events whose provider gave no time (`occurred_at` 0, the epoch: 197001,
/// or 196912 on a server west of UTC). Retention never drops it: its age says nothing.
pub const UNKNOWN_TIME_MONTH: u32 = 197_001;

/// The partitions to drop: month ids before the oldest kept month. Partition ids that are
/// not a `YYYYMM` number are never dropped, nor the month of unknown event times
/// ([`UNKNOWN_TIME_MONTH`] and before). `months` 0 keeps everything.
pub fn expired(
    partitions: &[(String, String)],
    today_yyyymm: u32,
    months: u32,
) -> Vec<DroppedPartition> {
    if months == 0 {
        return Vec::new();
    }
    let oldest = oldest_kept_month(today_yyyymm, months);
    let mut out: Vec<DroppedPartition> = partitions
        .iter()
        .filter_map(|(table, partition)| {
            let month: u32 = partition.parse().ok()?;
            let valid = (100_001..=999_912).contains(&month) && (1..=12).contains(&(month % 100));
            (valid && month > UNKNOWN_TIME_MONTH && month < oldest).then(|| DroppedPartition {
                table: table.clone(),
                partition: month,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.table, a.partition).cmp(&(&b.table, b.partition)));
    out.dedup();
    out
}

/// `YYYYMM` of a Unix time in seconds (UTC).
pub fn yyyymm(unix_seconds: i64) -> u32 {
    let days = unix_seconds.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian, UTC.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 100 + month) as u32
}

/// Drops (or with `dry_run` only lists) the partitions of [`RETAINED_TABLES`] older than
/// `months` months before `now_unix_seconds`.
pub async fn drop_expired(
    settings: &ClickHouseSettings,
    months: u32,
    now_unix_seconds: i64,
    dry_run: bool,
) -> Result<Vec<DroppedPartition>, ClickHouseError> {
    let ch = client(settings);
    let db = &settings.database;
    let rows: Vec<PartitionRow> = with_timeout(
        settings,
        ch.query(
            "SELECT DISTINCT table, partition FROM system.parts \
             WHERE database = ? AND active AND has(?, table)",
        )
        .bind(db.as_str())
        .bind(RETAINED_TABLES.as_slice())
        .fetch_all(),
    )
    .await?;
    let partitions: Vec<(String, String)> =
        rows.into_iter().map(|r| (r.table, r.partition)).collect();
    let drop = expired(&partitions, yyyymm(now_unix_seconds), months);
    if !dry_run {
        for p in &drop {
            let sql = format!(
                "ALTER TABLE {db}.{} DROP PARTITION {}",
                p.table, p.partition
            );
            with_timeout(settings, ch.query(&sql).execute()).await?;
            tracing::info!(table = %p.table, partition = p.partition, "retention: partition dropped");
        }
    }
    Ok(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_kept_month_counts_the_current_month() {
        assert_eq!(oldest_kept_month(202611, 1), 202611);
        assert_eq!(oldest_kept_month(202611, 11), 202601);
        assert_eq!(oldest_kept_month(202611, 12), 202512);
        assert_eq!(oldest_kept_month(202601, 2), 202512);
        assert_eq!(oldest_kept_month(202611, 13), 202511);
    }

    #[test]
    fn expired_drops_only_older_month_partitions() {
        let parts = vec![
            ("email_events".to_string(), "202510".to_string()),
            ("email_events".to_string(), "202511".to_string()),
            ("email_events".to_string(), "202611".to_string()),
            ("email_stats_1m".to_string(), "202509".to_string()),
            ("email_events".to_string(), "tuple()".to_string()),
            ("email_events".to_string(), "202513".to_string()),
            // Events without a provider time (occurred_at 0), UTC and west of it.
            ("email_events".to_string(), "197001".to_string()),
            ("email_stats_1m".to_string(), "196912".to_string()),
        ];
        let dropped = expired(&parts, 202611, 13);
        assert_eq!(
            dropped,
            vec![
                DroppedPartition {
                    table: "email_events".into(),
                    partition: 202510
                },
                DroppedPartition {
                    table: "email_stats_1m".into(),
                    partition: 202509
                },
            ]
        );
        assert!(expired(&parts, 202611, 0).is_empty(), "0 keeps everything");
    }

    #[test]
    fn yyyymm_in_utc() {
        assert_eq!(yyyymm(0), 197001);
        assert_eq!(yyyymm(1_796_083_199), 202611); // 2026-11-30T23:59:59Z
        assert_eq!(yyyymm(1_796_083_200), 202612); // 2026-12-01T00:00:00Z
        assert_eq!(yyyymm(951_782_400), 200002); // 2000-02-29
        assert_eq!(yyyymm(-1), 196912);
    }
}
