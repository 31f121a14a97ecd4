//! A token bucket per target: at most `rate` requests per second on average, with bursts of
//! up to `burst` after a quiet spell. So a rule that fires for ten thousand events at once
//! does not become ten thousand simultaneous requests to someone's CRM.
//!
//! Tokens are counted in millionths, in integers: refills and waits are exact, so a caller
//! that waits the `wait_ms` it was told always gets its token (a float bucket can come up a
//! hair short and make it wait again). Pure: time comes in as `now_ms`.

use crate::DeliveryError;

const MICROS_PER_TOKEN: u64 = 1_000_000;

/// Invariant: `0 <= tokens <= capacity` (in millionths of a token), `refill_per_ms >= 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    capacity: u64,
    refill_per_ms: u64,
    tokens: u64,
    last_ms: i64,
}

impl TokenBucket {
    /// The slowest rate accepted: one request per 1000 s. Slower than that is not a rate
    /// limit but a disabled target.
    pub const MIN_RATE_PER_SEC: f64 = 0.001;
    /// The fastest: a million requests per second, far beyond any target.
    pub const MAX_RATE_PER_SEC: f64 = 1_000_000.0;

    /// A full bucket (a target starts with its whole burst available) at `now_ms`. The rate is
    /// kept to a thousandth of a request per second.
    pub fn new(rate_per_sec: f64, burst: u32, now_ms: i64) -> Result<TokenBucket, DeliveryError> {
        if !(Self::MIN_RATE_PER_SEC..=Self::MAX_RATE_PER_SEC).contains(&rate_per_sec) {
            return Err(DeliveryError::InvalidRateLimit {
                reason: format!(
                    "rate {rate_per_sec} per second is not between {} and {}",
                    Self::MIN_RATE_PER_SEC,
                    Self::MAX_RATE_PER_SEC
                ),
            });
        }
        if burst == 0 {
            return Err(DeliveryError::InvalidRateLimit {
                reason: "burst must be at least 1: no request could ever pass".to_string(),
            });
        }
        // Millionths of a token per millisecond = rate per second × 1000; at least 1 given the
        // rate's lower bound.
        let refill_per_ms = ((rate_per_sec * 1000.0).round() as u64).max(1);
        let capacity = u64::from(burst) * MICROS_PER_TOKEN;
        Ok(TokenBucket {
            capacity,
            refill_per_ms,
            tokens: capacity,
            last_ms: now_ms,
        })
    }

    /// Takes one token at `now_ms`, or says how many milliseconds until one is available.
    /// A clock that goes back adds nothing and is otherwise ignored.
    pub fn try_take(&mut self, now_ms: i64) -> Result<(), u64> {
        self.refill(now_ms);
        if self.tokens >= MICROS_PER_TOKEN {
            self.tokens -= MICROS_PER_TOKEN;
            return Ok(());
        }
        let missing = MICROS_PER_TOKEN - self.tokens;
        Err(missing.div_ceil(self.refill_per_ms))
    }

    /// Whole tokens available at the last call, for metrics and tests.
    pub fn available(&self) -> u64 {
        self.tokens / MICROS_PER_TOKEN
    }

    fn refill(&mut self, now_ms: i64) {
        if now_ms <= self.last_ms {
            return;
        }
        let elapsed_ms = now_ms.abs_diff(self.last_ms);
        let added = elapsed_ms.saturating_mul(self.refill_per_ms);
        self.tokens = self.tokens.saturating_add(added).min(self.capacity);
        self.last_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_burst_then_one_per_interval() {
        // 2 per second, burst 3: three at once, then one every 500 ms.
        let mut bucket = TokenBucket::new(2.0, 3, 1_000).unwrap();
        assert_eq!(bucket.available(), 3);
        let steps = [
            (1_000, Ok(())),
            (1_000, Ok(())),
            (1_000, Ok(())),
            (1_000, Err(500)),
            (1_200, Err(300)),
            (1_499, Err(1)),
            (1_500, Ok(())),
            (1_500, Err(500)),
            (2_000, Ok(())),
            // A long quiet spell refills only up to the burst.
            (60_000, Ok(())),
            (60_000, Ok(())),
            (60_000, Ok(())),
            (60_000, Err(500)),
        ];
        for (step, (now_ms, expected)) in steps.into_iter().enumerate() {
            assert_eq!(bucket.try_take(now_ms), expected, "step {step} at {now_ms}");
        }
    }

    #[test]
    fn waiting_the_answer_is_always_enough() {
        for (rate, burst) in [
            (0.001, 1),
            (0.3, 1),
            (1.0, 2),
            (3.0, 5),
            (7.7, 1),
            (1000.0, 10),
            (1_000_000.0, 1),
        ] {
            let mut bucket = TokenBucket::new(rate, burst, 0).unwrap();
            let mut now_ms = 0;
            let mut taken = 0;
            while taken < 50 {
                match bucket.try_take(now_ms) {
                    Ok(()) => taken += 1,
                    Err(wait_ms) => {
                        assert!(wait_ms >= 1, "{rate}");
                        now_ms += i64::try_from(wait_ms).unwrap();
                        assert_eq!(bucket.try_take(now_ms), Ok(()), "{rate}/s at {now_ms}");
                        taken += 1;
                    }
                }
            }
            // 50 tokens: the burst, then (50 - burst) / rate seconds, to within a millisecond
            // per wait.
            let ideal_ms = (50.0 - f64::from(burst)) / rate * 1000.0;
            assert!(
                (now_ms as f64 - ideal_ms).abs() <= 50.0,
                "{rate}/s took {now_ms} ms, ideal {ideal_ms}"
            );
        }
    }

    #[test]
    fn slow_rates_wait_long() {
        // One every 10 s.
        let mut bucket = TokenBucket::new(0.1, 1, 0).unwrap();
        assert_eq!(bucket.try_take(0), Ok(()));
        assert_eq!(bucket.try_take(0), Err(10_000));
        assert_eq!(bucket.try_take(2_500), Err(7_500));
        assert_eq!(bucket.try_take(10_000), Ok(()));
    }

    #[test]
    fn a_clock_going_back_adds_nothing() {
        let mut bucket = TokenBucket::new(1.0, 1, 10_000).unwrap();
        assert_eq!(bucket.try_take(10_000), Ok(()));
        assert_eq!(bucket.try_take(5_000), Err(1_000));
        assert_eq!(bucket.try_take(10_999), Err(1));
        assert_eq!(bucket.try_take(11_000), Ok(()));
        // Far in the past and future: no overflow.
        assert_eq!(bucket.try_take(i64::MIN), Err(1_000));
        assert_eq!(bucket.try_take(i64::MAX), Ok(()));
        assert_eq!(bucket.try_take(i64::MAX), Err(1_000));
    }

    #[test]
    fn refuses_limits_that_could_not_work() {
        let cases = [
            (0.0, 1, "rate 0 per second is not between 0.001 and 1000000"),
            (
                -1.0,
                1,
                "rate -1 per second is not between 0.001 and 1000000",
            ),
            (
                f64::NAN,
                1,
                "rate NaN per second is not between 0.001 and 1000000",
            ),
            (
                f64::INFINITY,
                1,
                "rate inf per second is not between 0.001 and 1000000",
            ),
            (
                2e6,
                1,
                "rate 2000000 per second is not between 0.001 and 1000000",
            ),
            (
                1.0,
                0,
                "burst must be at least 1: no request could ever pass",
            ),
        ];
        for (rate, burst, reason) in cases {
            assert_eq!(
                TokenBucket::new(rate, burst, 0),
                Err(DeliveryError::InvalidRateLimit {
                    reason: reason.to_string()
                }),
                "{rate} {burst}"
            );
        }
    }
}
