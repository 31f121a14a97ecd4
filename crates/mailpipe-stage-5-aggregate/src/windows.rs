//! Event-time windows: which one-minute windows a batch touched, the SQL that recomputes
//! them from `email_events FINAL`, and the per-partition watermark that tells late events.
//!
//! A window row of `email_stats_1m` is never incremented. It is recomputed whole from the
//! deduplicated events table after every load that touched the window, so its value is a
//! function of the set of distinct events in that minute: replays, copies and crashes
//! cannot count anything twice, and a late event is counted by recomputing its own minute
//! (a correction row, which replaces the earlier row because its `events` is larger).

use std::collections::{BTreeSet, HashMap};

/// Window length in seconds.
pub const WINDOW_SECONDS: u32 = 60;

/// Most time ranges in one recompute statement, to stay well under ClickHouse's
/// `max_query_size` (256 KiB by default).
pub const MAX_RANGES_PER_STATEMENT: usize = 200;

/// Start of the window holding `seconds`.
pub fn window_start(seconds: u32) -> u32 {
    seconds - seconds % WINDOW_SECONDS
}

/// Merges window starts into half-open `[from, to)` second ranges of adjacent windows.
pub fn window_ranges(starts: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &start in starts {
        let end = start.saturating_add(WINDOW_SECONDS);
        match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => ranges.push((start, end)),
        }
    }
    ranges
}

/// The statements that recompute every window in `ranges` into `email_stats_1m`.
///
/// Each reads `email_events FINAL` (one row per distinct event) restricted to the ranges,
/// which also prunes monthly partitions, and writes one row per window and dimensions with
/// the exact count and the unique-recipients state (an empty recipient is not counted).
pub fn recompute_statements(database: &str, ranges: &[(u32, u32)]) -> Vec<String> {
    ranges
        .chunks(MAX_RANGES_PER_STATEMENT)
        .map(|chunk| {
            let filter = ranges_filter("occurred_at", chunk);
            format!(
                "INSERT INTO {database}.email_stats_1m \
                 SELECT toStartOfMinute(occurred_at) AS window_start, source, provider, \
                 campaign_id, event_type, recipient_domain, count() AS events, \
                 uniqExactState(nullIf(recipient, '')) AS unique_recipients \
                 FROM {database}.email_events FINAL WHERE {filter} \
                 GROUP BY window_start, source, provider, campaign_id, event_type, recipient_domain"
            )
        })
        .collect()
}

/// The statements that delete every row of the windows in `ranges` from `email_stats_1m`
/// (ClickHouse mutations), for when events were removed from `email_events` (a replay's
/// superseded rows, an erasure): a window that shrinks, or loses a dimension, cannot be
/// recomputed over its old rows, which keep the largest count. Run them, wait for the
/// mutations, then [`recompute_statements`].
pub fn delete_statements(database: &str, ranges: &[(u32, u32)]) -> Vec<String> {
    ranges
        .chunks(MAX_RANGES_PER_STATEMENT)
        .map(|chunk| {
            let filter = ranges_filter("window_start", chunk);
            format!("ALTER TABLE {database}.email_stats_1m DELETE WHERE {filter}")
        })
        .collect()
}

/// `column` within any of `ranges` (half-open, Unix seconds), as SQL.
fn ranges_filter(column: &str, ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|(from, to)| {
            format!("({column} >= toDateTime({from}) AND {column} < toDateTime({to}))")
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Whether an event arrived within the allowed lateness of its partition's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeliness {
    OnTime,
    /// Its window may already have been reported; it is counted as a correction.
    Late,
}

/// Per input partition: the newest event time seen. The watermark is that minus the
/// allowed lateness; an event whose window ended before the watermark is late. State is in
/// memory only: after a restart it is rebuilt from the replayed events, and it decides
/// nothing about what is counted (every event is), only what is reported as late.
#[derive(Debug, Default)]
pub struct Watermarks {
    allowed_lateness: u32,
    newest: HashMap<i32, u32>,
}

impl Watermarks {
    pub fn new(allowed_lateness_seconds: u64) -> Watermarks {
        Watermarks {
            allowed_lateness: u32::try_from(allowed_lateness_seconds).unwrap_or(u32::MAX),
            newest: HashMap::new(),
        }
    }

    /// Records an event time (seconds) seen on `partition`.
    pub fn observe(&mut self, partition: i32, occurred_at: u32) -> Timeliness {
        let newest = self.newest.entry(partition).or_insert(occurred_at);
        let watermark = newest.saturating_sub(self.allowed_lateness);
        let window_end = window_start(occurred_at).saturating_add(WINDOW_SECONDS);
        *newest = (*newest).max(occurred_at);
        if window_end <= watermark {
            Timeliness::Late
        } else {
            Timeliness::OnTime
        }
    }

    /// The newest event time of any partition.
    pub fn newest(&self) -> Option<u32> {
        self.newest.values().copied().max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_windows_merge_into_one_range() {
        let starts = BTreeSet::from([120, 60, 300, 180, 600]);
        assert_eq!(
            window_ranges(&starts),
            vec![(60, 240), (300, 360), (600, 660)]
        );
        assert!(window_ranges(&BTreeSet::new()).is_empty());
        assert_eq!(window_start(119), 60);
    }

    #[test]
    fn statements_cover_every_range_in_bounded_chunks() {
        let ranges: Vec<(u32, u32)> = (0..450).map(|i| (i * 120, i * 120 + 60)).collect();
        let sql = recompute_statements("mp", &ranges);
        assert_eq!(sql.len(), 3);
        assert!(sql[0].starts_with("INSERT INTO mp.email_stats_1m SELECT"));
        assert!(sql[0].contains("FROM mp.email_events FINAL"));
        assert!(
            sql[2].contains("toDateTime(53880)"),
            "the last range is in the last chunk"
        );
        let total: usize = sql
            .iter()
            .map(|s| s.matches("occurred_at >=").count())
            .sum();
        assert_eq!(total, 450);
        assert!(sql.iter().all(|s| s.len() < 64 * 1024));
    }

    #[test]
    fn an_event_behind_the_watermark_is_late_per_partition() {
        let mut marks = Watermarks::new(60);
        assert_eq!(marks.observe(0, 10_000), Timeliness::OnTime);
        // Same minute, a bit older: on time.
        assert_eq!(marks.observe(0, 9_990), Timeliness::OnTime);
        // Ten minutes before the watermark: late, but counted by the caller.
        assert_eq!(marks.observe(0, 10_000 - 600), Timeliness::Late);
        // Another partition has its own watermark.
        assert_eq!(marks.observe(1, 9_000), Timeliness::OnTime);
        assert_eq!(marks.newest(), Some(10_000));
        // A late event does not move the watermark back.
        assert_eq!(marks.observe(0, 9_300), Timeliness::Late);
    }
}
