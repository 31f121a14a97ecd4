//! The retry schedule: how long to wait after each failed attempt, and when to give up.
//!
//! Delays grow from seconds to hours so a blip costs seconds and an outage of most of a day
//! is still ridden out, as the Standard Webhooks spec recommends ("a retry schedule spanning
//! multiple days, with an exponential backoff ... and some level of random jitter"). Jitter
//! spreads the retries of many deliveries that failed together (a target's outage), so
//! they do not all return at the same instant and knock it over again.
//!
//! The default, [`RetrySchedule::default`], before jitter:
//!
//! | after attempt | 1  | 2   | 3  | 4  | 5   | 6   | 7  | 8  | 9  | 10 | 11 |
//! |---------------|----|-----|----|----|-----|-----|----|----|----|----|----|
//! | wait          | 5s | 30s | 2m | 5m | 15m | 30m | 1h | 2h | 4h | 8h | 8h |
//!
//! 12 attempts in all; the last comes 85,955 s = 23 h 52 min 35 s after the first (±10 %
//! jitter on each wait: between about 21 h 29 min and 26 h 16 min).

use std::time::Duration;

use crate::duration::{parse_duration, MAX_DURATION};
use crate::DeliveryError;

/// The default waits, in seconds (see the table above).
const DEFAULT_DELAYS_SECS: [u64; 11] = [
    5,
    30,
    2 * 60,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    8 * 3600,
];

/// Invariant: every delay is above zero and at most 7 days; `jitter` is in `[0, 0.5]`, so a
/// jittered delay is at least half its base, never zero or negative.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            delays: DEFAULT_DELAYS_SECS
                .iter()
                .map(|secs| Duration::from_secs(*secs))
                .collect(),
            jitter: RetrySchedule::DEFAULT_JITTER,
        }
    }
}

impl RetrySchedule {
    /// ±10 %: enough to spread a burst of retries over seconds to minutes, small enough that
    /// the schedule an operator reads is the schedule that runs.
    pub const DEFAULT_JITTER: f64 = 0.1;

    /// The largest jitter accepted. Beyond ±50 % a retry could come almost at once after a
    /// failure, and later delays could overtake earlier ones.
    pub const MAX_JITTER: f64 = 0.5;

    /// A schedule of `delays` (the wait after attempt 1, 2, …) with `jitter` as a fraction
    /// (0.1 = each wait drawn in ±10 %). No delays is allowed: one attempt, no retries.
    pub fn new(delays: Vec<Duration>, jitter: f64) -> Result<RetrySchedule, DeliveryError> {
        let invalid = |reason: String| DeliveryError::InvalidRetrySchedule { reason };
        if !(0.0..=Self::MAX_JITTER).contains(&jitter) {
            return Err(invalid(format!(
                "jitter {jitter} is not a fraction between 0 and {}",
                Self::MAX_JITTER
            )));
        }
        if let Some(position) = delays.iter().position(|delay| delay.is_zero()) {
            return Err(invalid(format!(
                "delay {} is zero: a failed target would be retried at once",
                position + 1
            )));
        }
        if let Some(position) = delays.iter().position(|delay| *delay > MAX_DURATION) {
            return Err(invalid(format!(
                "delay {} is longer than 7 days",
                position + 1
            )));
        }
        Ok(RetrySchedule { delays, jitter })
    }

    /// A schedule from configuration text, e.g. `["5s", "30s", "2m"]`.
    pub fn parse<S: AsRef<str>>(delays: &[S], jitter: f64) -> Result<RetrySchedule, DeliveryError> {
        let delays = delays
            .iter()
            .map(|text| parse_duration(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        RetrySchedule::new(delays, jitter)
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Attempts in all, the first one included.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).map_or(u32::MAX, |retries| retries.saturating_add(1))
    }

    /// From the first attempt to the last, before jitter.
    pub fn total(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// How long to wait before the next attempt, `attempts_made` attempts having been made
    /// (and failed); `None` once the schedule is exhausted: give up. `attempts_made == 0`
    /// gives zero, the first attempt goes at once.
    ///
    /// `random_unit` is a uniform random number in `[0, 1)` from the caller: 0 gives the
    /// shortest wait (base × (1 − jitter)), 0.5 exactly the base, near 1 the longest. Values
    /// outside `[0, 1]` are clamped and NaN counts as 0.5, so no input yields a wait outside
    /// base × [1 − jitter, 1 + jitter].
    pub fn next(&self, attempts_made: u32, random_unit: f64) -> Option<Duration> {
        let Some(index) = attempts_made.checked_sub(1) else {
            return Some(Duration::ZERO);
        };
        let base = *self.delays.get(usize::try_from(index).ok()?)?;
        let unit = if random_unit.is_nan() {
            0.5
        } else {
            random_unit.clamp(0.0, 1.0)
        };
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        // In nanoseconds: a base of at most 7 days is 6.05e14 ns, below 2^53, so f64 holds it
        // exactly, and factor is in [0.5, 1.5]: the product fits u64 and is never negative.
        let nanos = (base.as_nanos() as f64 * factor).round();
        Some(Duration::from_nanos(nanos as u64))
    }

    /// [`next`](Self::next), honouring a `Retry-After` the target sent (already clamped by
    /// [`crate::parse_retry_after`]): the wait is the longer of the two, so the target gets at
    /// least the pause it asked for and cannot speed the schedule up. The schedule still
    /// decides when to give up.
    pub fn next_with_retry_after(
        &self,
        attempts_made: u32,
        random_unit: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let scheduled = self.next(attempts_made, random_unit)?;
        Some(retry_after.map_or(scheduled, |asked| asked.max(scheduled)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_default_spans_about_a_day_in_twelve_attempts() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_attempts(), 12);
        assert_eq!(schedule.total(), Duration::from_secs(85_955));
        assert_eq!(
            schedule.total(),
            23 * HOUR + 52 * MINUTE + 35 * SECOND,
            "the module doc's figure"
        );
        assert!(schedule.delays().windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(schedule.jitter(), 0.1);
        // The default is a valid schedule by its own rules.
        assert_eq!(
            RetrySchedule::new(schedule.delays().to_vec(), schedule.jitter()),
            Ok(schedule)
        );
    }

    #[test]
    fn next_walks_the_default_then_gives_up() {
        let schedule = RetrySchedule::default();
        let cases = [
            (0, Some(Duration::ZERO)),
            (1, Some(5 * SECOND)),
            (2, Some(30 * SECOND)),
            (3, Some(2 * MINUTE)),
            (4, Some(5 * MINUTE)),
            (5, Some(15 * MINUTE)),
            (6, Some(30 * MINUTE)),
            (7, Some(HOUR)),
            (8, Some(2 * HOUR)),
            (9, Some(4 * HOUR)),
            (10, Some(8 * HOUR)),
            (11, Some(8 * HOUR)),
            (12, None),
            (13, None),
            (u32::MAX, None),
        ];
        for (attempts_made, expected) in cases {
            // 0.5 is the middle of the jitter range: exactly the base delay.
            assert_eq!(
                schedule.next(attempts_made, 0.5),
                expected,
                "{attempts_made}"
            );
        }
    }

    #[test]
    fn jitter_moves_the_wait_within_its_fraction() {
        let schedule = RetrySchedule::parse(&["10s", "1h"], 0.2).unwrap();
        let cases = [
            (1, 0.0, Duration::from_secs(8)),
            (1, 0.25, Duration::from_secs(9)),
            (1, 0.5, Duration::from_secs(10)),
            (1, 0.75, Duration::from_secs(11)),
            (1, 1.0, Duration::from_secs(12)),
            (2, 0.0, 48 * MINUTE),
            (2, 0.999_999, Duration::from_nanos(4_319_998_560_000)),
            // Out of range and NaN: clamped, or the base.
            (1, -3.0, Duration::from_secs(8)),
            (1, 7.0, Duration::from_secs(12)),
            (1, f64::INFINITY, Duration::from_secs(12)),
            (1, f64::NEG_INFINITY, Duration::from_secs(8)),
            (1, f64::NAN, Duration::from_secs(10)),
        ];
        for (attempts_made, unit, expected) in cases {
            assert_eq!(
                schedule.next(attempts_made, unit),
                Some(expected),
                "{attempts_made} {unit}"
            );
        }
    }

    #[test]
    fn jittered_waits_stay_within_bounds_for_any_random_number() {
        let schedule =
            RetrySchedule::parse(&["1ms", "5s", "7d"], RetrySchedule::MAX_JITTER).unwrap();
        for attempts_made in 1..=3 {
            let base = schedule.delays()[attempts_made as usize - 1];
            for step in 0..=1000 {
                let unit = f64::from(step) / 1000.0;
                let wait = schedule.next(attempts_made, unit).unwrap();
                assert!(
                    wait >= base.mul_f64(0.5) && wait <= base.mul_f64(1.5),
                    "{wait:?}"
                );
            }
        }
        assert_eq!(schedule.next(1, 0.0), Some(Duration::from_micros(500)));
    }

    #[test]
    fn a_schedule_without_delays_makes_one_attempt() {
        let schedule = RetrySchedule::new(Vec::new(), 0.0).unwrap();
        assert_eq!(schedule.max_attempts(), 1);
        assert_eq!(schedule.next(0, 0.3), Some(Duration::ZERO));
        assert_eq!(schedule.next(1, 0.3), None);
    }

    #[test]
    fn parses_configuration_text() {
        let schedule = RetrySchedule::parse(&["5s", "30s", "2m"], 0.1).unwrap();
        assert_eq!(schedule.delays(), [5 * SECOND, 30 * SECOND, 2 * MINUTE]);
        assert_eq!(schedule.total(), 155 * SECOND);
        let owned: Vec<String> = vec!["100ms".into(), "1d".into()];
        assert_eq!(
            RetrySchedule::parse(&owned, 0.0).unwrap().delays(),
            [Duration::from_millis(100), 24 * HOUR]
        );
    }

    #[test]
    fn refuses_bad_configuration() {
        assert_eq!(
            RetrySchedule::parse(&["5s", "soon"], 0.1),
            Err(DeliveryError::InvalidDuration {
                text: "soon".into()
            })
        );
        let cases: [(&[&str], f64, &str); 6] = [
            (
                &["5s", "0s"],
                0.1,
                "delay 2 is zero: a failed target would be retried at once",
            ),
            (
                &["5s"],
                0.6,
                "jitter 0.6 is not a fraction between 0 and 0.5",
            ),
            (
                &["5s"],
                -0.1,
                "jitter -0.1 is not a fraction between 0 and 0.5",
            ),
            (
                &["5s"],
                f64::NAN,
                "jitter NaN is not a fraction between 0 and 0.5",
            ),
            (
                &["5s"],
                f64::INFINITY,
                "jitter inf is not a fraction between 0 and 0.5",
            ),
            (&[], 2.0, "jitter 2 is not a fraction between 0 and 0.5"),
        ];
        for (delays, jitter, reason) in cases {
            assert_eq!(
                RetrySchedule::parse(delays, jitter),
                Err(DeliveryError::InvalidRetrySchedule {
                    reason: reason.into()
                }),
                "{delays:?} {jitter}"
            );
        }
        assert_eq!(
            RetrySchedule::new(vec![SECOND, MAX_DURATION + SECOND], 0.0),
            Err(DeliveryError::InvalidRetrySchedule {
                reason: "delay 2 is longer than 7 days".into()
            })
        );
    }

    #[test]
    fn retry_after_lengthens_a_wait_but_never_shortens_it_nor_extends_the_schedule() {
        let schedule = RetrySchedule::parse(&["5s", "1h"], 0.0).unwrap();
        let cases = [
            (1, None, Some(5 * SECOND)),
            (1, Some(2 * MINUTE), Some(2 * MINUTE)),
            (1, Some(SECOND), Some(5 * SECOND)),
            (2, Some(10 * MINUTE), Some(HOUR)),
            (3, Some(MINUTE), None),
        ];
        for (attempts_made, retry_after, expected) in cases {
            assert_eq!(
                schedule.next_with_retry_after(attempts_made, 0.5, retry_after),
                expected,
                "{attempts_made} {retry_after:?}"
            );
        }
    }
}
