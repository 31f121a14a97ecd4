//! The time range of an API request (`from`, `to`: Unix seconds or RFC 3339), and the
//! bucket width of its per-time series. Pure.

use chrono::DateTime;

use crate::error::ConsoleError;

/// The longest range one request may ask for.
pub const MAX_RANGE_SECONDS: i64 = 31 * 86_400;
/// The range when none is given: the last hour.
pub const DEFAULT_RANGE_SECONDS: i64 = 3_600;

/// A half-open range `[from, to)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl TimeRange {
    /// From the request's parameters, `now` (Unix seconds) filling what is missing.
    pub fn parse(from: Option<&str>, to: Option<&str>, now: i64) -> Result<Self, ConsoleError> {
        let in_range = |name: &str, t: i64| {
            if (0..=i64::from(u32::MAX)).contains(&t) {
                Ok(t)
            } else {
                Err(ConsoleError::BadRequest(format!(
                    "`{name}` must lie between 1970 and 2106"
                )))
            }
        };
        let to = match to {
            Some(t) => in_range("to", instant("to", t)?)?,
            None => now,
        };
        let from = match from {
            Some(f) => in_range("from", instant("from", f)?)?,
            None => (to - DEFAULT_RANGE_SECONDS).max(0),
        };
        if from >= to {
            return Err(ConsoleError::BadRequest(format!(
                "`from` ({from}) must be before `to` ({to})"
            )));
        }
        if to - from > MAX_RANGE_SECONDS {
            return Err(ConsoleError::BadRequest(format!(
                "the range is {} s; at most {MAX_RANGE_SECONDS} s (31 days) may be asked",
                to - from
            )));
        }
        if from < 0 || to > i64::from(u32::MAX) {
            return Err(ConsoleError::BadRequest(
                "the range must lie between 1970 and 2106".into(),
            ));
        }
        Ok(TimeRange { from, to })
    }

    /// The width of a series bucket: one minute up to 3 h, five up to a day, an hour above.
    pub fn step_seconds(&self) -> i64 {
        match self.to - self.from {
            span if span <= 3 * 3_600 => 60,
            span if span <= 86_400 => 300,
            _ => 3_600,
        }
    }

    /// Every bucket start of the range, aligned to the step (the first may start before
    /// `from`: counts are by event time within the range only).
    pub fn buckets(&self) -> Vec<i64> {
        let step = self.step_seconds();
        let first = self.from.div_euclid(step) * step;
        (0..)
            .map(|i| first + i * step)
            .take_while(|b| *b < self.to)
            .collect()
    }
}

fn instant(name: &str, text: &str) -> Result<i64, ConsoleError> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|_| {
            ConsoleError::BadRequest(format!(
                "`{name}` must be Unix seconds or an RFC 3339 time (2026-12-02T15:00:00Z)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_691_200;

    #[test]
    fn defaults_to_the_last_hour() {
        let r = TimeRange::parse(None, None, NOW).unwrap();
        assert_eq!((r.from, r.to), (NOW - 3_600, NOW));
        assert_eq!(r.step_seconds(), 60);
        assert_eq!(r.buckets().len(), 60);
    }

    #[test]
    fn takes_unix_seconds_and_rfc3339() {
        let r = TimeRange::parse(Some("2025-12-02T15:00:00Z"), Some("1764691200"), NOW).unwrap();
        assert_eq!((r.from, r.to), (1_764_687_600, 1_764_691_200));
    }

    #[test]
    fn refuses_bad_ranges_with_the_reason() {
        for (from, to) in [
            (Some("x"), None),
            (Some("100"), Some("100")),
            (Some("0"), Some("99999999")),
            (Some("-5"), Some("10")),
            (Some("-9223372036854775808"), None),
            (None, Some("-9223372036854775808")),
        ] {
            let e = TimeRange::parse(from, to, NOW).unwrap_err();
            assert!(matches!(e, ConsoleError::BadRequest(_)), "{from:?} {to:?}");
        }
    }

    #[test]
    fn steps_widen_with_the_range_and_buckets_cover_it() {
        let day = TimeRange::parse(Some(&(NOW - 86_400).to_string()), None, NOW).unwrap();
        assert_eq!(day.step_seconds(), 300);
        assert_eq!(day.buckets().len(), 288);
        let week = TimeRange::parse(Some(&(NOW - 7 * 86_400).to_string()), None, NOW).unwrap();
        assert_eq!(week.step_seconds(), 3_600);
        let odd = TimeRange::parse(Some("90"), Some("200"), NOW).unwrap();
        assert_eq!(odd.buckets(), [60, 120, 180]);
    }
}
