//! Hours of the week: the 168 bins send-time predictions count opens in.
//!
//! Bin 0 is Monday 00:00–00:59 local time, bin 167 is Sunday 23:00–23:59. Local time is one
//! configured IANA zone (`insight.time_zone`), not each recipient's own.

use chrono::{DateTime, Datelike, Timelike};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};

/// Number of hour-of-week bins (7 × 24).
pub const HOURS_OF_WEEK: usize = 168;

const HOUR_MS: i64 = 3_600_000;
/// 1970-01-01 (the Unix epoch) was a Thursday: bin 3 × 24 in UTC.
const EPOCH_HOUR_OF_WEEK: i64 = 72;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The hour of the week (0 = Monday 00:00 … 167 = Sunday 23:00) of the instant `at_ms`
/// (UTC milliseconds) in the zone `tz`.
///
/// Conversion from an instant to local time is never ambiguous, so daylight-saving changes
/// need no special care. An instant outside chrono's range (±262,000 years) is counted in
/// UTC by plain arithmetic.
pub fn hour_of_week(at_ms: i64, tz: Tz) -> u8 {
    match DateTime::from_timestamp_millis(at_ms) {
        Some(utc) => {
            let local = utc.with_timezone(&tz);
            (local.weekday().num_days_from_monday() * 24 + local.hour()) as u8
        }
        None => (at_ms.div_euclid(HOUR_MS) + EPOCH_HOUR_OF_WEEK).rem_euclid(168) as u8,
    }
}

/// The hour of the day (0–23) of an hour of the week.
pub fn hour_of_day(hour_of_week: u8) -> u8 {
    hour_of_week % 24
}

/// A readable name of an hour of the week, such as `"Tue 09:00"`; `"?"` for a value ≥ 168.
pub fn label(hour_of_week: u8) -> String {
    let h = hour_of_week as usize;
    if h >= HOURS_OF_WEEK {
        return "?".to_string();
    }
    format!("{} {:02}:00", DAY_NAMES[h / 24], h % 24)
}

/// Counts per hour of the week (index = hour of week). Serialized as a list of 168 numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourCounts(pub [u32; HOURS_OF_WEEK]);

impl Default for HourCounts {
    fn default() -> Self {
        HourCounts([0; HOURS_OF_WEEK])
    }
}

impl HourCounts {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one event at `hour_of_week` (saturating).
    ///
    /// # Panics
    /// When `hour_of_week` ≥ 168 (use [`hour_of_week`] to compute it).
    pub fn add(&mut self, hour_of_week: u8) {
        self.add_n(hour_of_week, 1);
    }

    /// Counts `n` events at `hour_of_week` (saturating).
    ///
    /// # Panics
    /// When `hour_of_week` ≥ 168.
    pub fn add_n(&mut self, hour_of_week: u8, n: u32) {
        let bin = &mut self.0[hour_of_week as usize];
        *bin = bin.saturating_add(n);
    }

    /// The sum over all 168 bins.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|&c| u64::from(c)).sum()
    }

    /// The count at one hour of the week; 0 for a value ≥ 168.
    pub fn get(&self, hour_of_week: u8) -> u32 {
        self.0.get(hour_of_week as usize).copied().unwrap_or(0)
    }

    /// Totals per hour of the day (0–23), summed over the seven days.
    pub fn hour_of_day_totals(&self) -> [u64; 24] {
        let mut totals = [0u64; 24];
        for (h, &c) in self.0.iter().enumerate() {
            totals[h % 24] += u64::from(c);
        }
        totals
    }
}

impl Serialize for HourCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};

    fn utc_ms(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, min, 0)
                .unwrap(),
        )
        .timestamp_millis()
    }

    #[test]
    fn known_dates_in_utc() {
        // 2026-11-30 is a Monday.
        assert_eq!(hour_of_week(utc_ms(2026, 11, 30, 0, 0), Tz::UTC), 0);
        assert_eq!(hour_of_week(utc_ms(2026, 11, 30, 0, 59), Tz::UTC), 0);
        assert_eq!(hour_of_week(utc_ms(2026, 12, 1, 9, 30), Tz::UTC), 33);
        assert_eq!(hour_of_week(utc_ms(2026, 12, 6, 23, 59), Tz::UTC), 167);
        // The Unix epoch was a Thursday.
        assert_eq!(hour_of_week(0, Tz::UTC), 72);
        assert_eq!(hour_of_week(-1, Tz::UTC), 71);
    }

    #[test]
    fn known_dates_in_new_york() {
        let ny = chrono_tz::America::New_York;
        // Monday 2026-11-30 05:00 UTC is Monday 00:00 EST (UTC−5).
        assert_eq!(hour_of_week(utc_ms(2026, 11, 30, 5, 0), ny), 0);
        // Monday 04:59 UTC is still Sunday 23:59 in New York.
        assert_eq!(hour_of_week(utc_ms(2026, 11, 30, 4, 59), ny), 167);
        // Summer time (EDT, UTC−4): Wednesday 2026-07-01 13:00 UTC is 09:00 local.
        assert_eq!(hour_of_week(utc_ms(2026, 7, 1, 13, 0), ny), 2 * 24 + 9);
    }

    #[test]
    fn daylight_saving_changes_do_not_crash_and_stay_in_range() {
        let ny = chrono_tz::America::New_York;
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC). Sunday.
        assert_eq!(hour_of_week(utc_ms(2026, 3, 8, 6, 59), ny), 6 * 24 + 1);
        assert_eq!(hour_of_week(utc_ms(2026, 3, 8, 7, 0), ny), 6 * 24 + 3);
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:xx happens twice.
        assert_eq!(hour_of_week(utc_ms(2026, 11, 1, 5, 30), ny), 6 * 24 + 1);
        assert_eq!(hour_of_week(utc_ms(2026, 11, 1, 6, 30), ny), 6 * 24 + 1);
        let start = utc_ms(2026, 3, 1, 0, 0);
        for i in 0..(24 * 300) {
            assert!(hour_of_week(start + i * HOUR_MS, ny) < 168);
        }
        assert!(hour_of_week(i64::MAX, ny) < 168);
        assert!(hour_of_week(i64::MIN, ny) < 168);
    }

    #[test]
    fn labels() {
        assert_eq!(label(0), "Mon 00:00");
        assert_eq!(label(33), "Tue 09:00");
        assert_eq!(label(167), "Sun 23:00");
        assert_eq!(label(168), "?");
    }

    #[test]
    fn counts_add_total_and_serialize_as_a_list() {
        let mut c = HourCounts::new();
        c.add(33);
        c.add(33);
        c.add_n(57, 3);
        assert_eq!(c.total(), 5);
        assert_eq!(c.get(33), 2);
        assert_eq!(c.get(200), 0);
        let by_hour = c.hour_of_day_totals();
        assert_eq!(by_hour[9], 5);
        assert_eq!(by_hour.iter().sum::<u64>(), 5);
        let json = serde_json::to_value(c).unwrap();
        let list = json.as_array().unwrap();
        assert_eq!(list.len(), 168);
        assert_eq!(list[57], 3);
    }
}
