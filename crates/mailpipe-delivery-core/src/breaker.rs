//! A per-target circuit breaker: after a run of consecutive failures the worker stops calling
//! the target for a cooldown, then lets one probe through; the probe's result closes the
//! breaker or re-opens it with the cooldown doubled (up to a maximum).
//!
//! It protects both sides: a target that is down is not hit by every pending delivery at
//! once when it comes back, and the worker's slots are not spent on attempts that will time
//! out. Deliveries refused by an open breaker are not failed attempts: the worker waits
//! until [`Admission::Refused::until_ms`] and asks again.
//!
//! ```text
//!            N consecutive failures                cooldown over: one probe
//!  Closed ─────────────────────────▶ Open ─────────────────────────────────▶ HalfOpen
//!    ▲                                ▲                                         │
//!    │                                └──── probe fails (cooldown × 2, ≤ max) ──┤
//!    └────────────────────────── probe succeeds (cooldown reset) ──────────────┘
//! ```
//!
//! Pure: every method takes `now_ms` (Unix milliseconds) from the caller.

use std::time::Duration;

use crate::DeliveryError;

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open the first time.
    pub cooldown: Duration,
    /// The longest cooldown doubling may reach.
    pub max_cooldown: Duration,
    /// How long a probe may stay unanswered before another is let through: a probe whose
    /// result never comes back (the worker lost it) must not leave the target shut forever.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    /// 5 failures in a row, 30 s first cooldown doubling up to 10 min, 60 s per probe
    /// (longer than any sensible request timeout).
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass; `consecutive_failures` so far.
    Closed { consecutive_failures: u32 },
    /// Calls are refused until `until_ms`.
    Open { until_ms: i64 },
    /// One probe is out since `probe_since_ms`; other calls are refused.
    HalfOpen { probe_since_ms: i64 },
}

impl BreakerState {
    /// The state's metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// What a let-through call is, to be handed back with its result: only the probe's result
/// may close or re-open a half-open breaker. A call let through while closed and answered
/// late (the breaker having opened meanwhile) must not count as the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    Normal,
    Probe,
}

/// May the worker call the target now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed(Ticket),
    /// Not before `until_ms`.
    Refused {
        until_ms: i64,
    },
}

/// Invariant: `cooldown` is between the config's `cooldown` and `max_cooldown`; it is reset
/// to the former whenever the breaker closes.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    cooldown: Duration,
}

impl CircuitBreaker {
    /// A closed breaker. Refuses a threshold of 0 (it would never close), zero durations,
    /// and a `max_cooldown` below `cooldown`.
    pub fn new(config: BreakerConfig) -> Result<CircuitBreaker, DeliveryError> {
        let reason = if config.failure_threshold == 0 {
            "failure_threshold must be at least 1"
        } else if config.cooldown.is_zero() {
            "cooldown must be longer than zero"
        } else if config.max_cooldown < config.cooldown {
            "max_cooldown must be at least cooldown"
        } else if config.probe_timeout.is_zero() {
            "probe_timeout must be longer than zero"
        } else {
            return Ok(CircuitBreaker {
                config,
                state: BreakerState::Closed {
                    consecutive_failures: 0,
                },
                cooldown: config.cooldown,
            });
        };
        Err(DeliveryError::InvalidBreakerConfig {
            reason: reason.to_string(),
        })
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The cooldown the next opening will last.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// Asks to call the target at `now_ms`. Moving from open to half-open happens here, on
    /// the first request after the cooldown, which becomes the probe.
    pub fn admit(&mut self, now_ms: i64) -> Admission {
        let refused_until_ms = match self.state {
            BreakerState::Closed { .. } => return Admission::Allowed(Ticket::Normal),
            BreakerState::Open { until_ms } => until_ms,
            BreakerState::HalfOpen { probe_since_ms } => {
                add_ms(probe_since_ms, self.config.probe_timeout)
            }
        };
        if now_ms < refused_until_ms {
            return Admission::Refused {
                until_ms: refused_until_ms,
            };
        }
        // The cooldown is over, or the last probe went unanswered: this call is the probe.
        self.state = BreakerState::HalfOpen {
            probe_since_ms: now_ms,
        };
        Admission::Allowed(Ticket::Probe)
    }

    /// The call admitted with `ticket` succeeded.
    pub fn record_success(&mut self, ticket: Ticket, _now_ms: i64) {
        match (self.state, ticket) {
            (BreakerState::Closed { .. }, _) | (BreakerState::HalfOpen { .. }, Ticket::Probe) => {
                self.close();
            }
            // Late answers to calls made before the breaker opened say nothing about now.
            (BreakerState::Open { .. }, _) | (BreakerState::HalfOpen { .. }, Ticket::Normal) => {}
        }
    }

    /// The call admitted with `ticket` failed (see [`crate::Verdict::trips_breaker`]).
    pub fn record_failure(&mut self, ticket: Ticket, now_ms: i64) {
        match (self.state, ticket) {
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                _,
            ) => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.open(now_ms);
                } else {
                    self.state = BreakerState::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            (BreakerState::HalfOpen { .. }, Ticket::Probe) => {
                self.cooldown = self
                    .cooldown
                    .saturating_mul(2)
                    .min(self.config.max_cooldown);
                self.open(now_ms);
            }
            (BreakerState::Open { .. }, _) | (BreakerState::HalfOpen { .. }, Ticket::Normal) => {}
        }
    }

    fn open(&mut self, now_ms: i64) {
        self.state = BreakerState::Open {
            until_ms: add_ms(now_ms, self.cooldown),
        };
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed {
            consecutive_failures: 0,
        };
        self.cooldown = self.config.cooldown;
    }
}

/// `at_ms + duration`, saturating: no clock value can make it wrap.
fn add_ms(at_ms: i64, duration: Duration) -> i64 {
    at_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BreakerConfig = BreakerConfig {
        failure_threshold: 3,
        cooldown: Duration::from_secs(10),
        max_cooldown: Duration::from_secs(40),
        probe_timeout: Duration::from_secs(5),
    };

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(CONFIG).unwrap()
    }

    fn closed(consecutive_failures: u32) -> BreakerState {
        BreakerState::Closed {
            consecutive_failures,
        }
    }

    /// Fails `n` normal calls at `now_ms`, each admitted first.
    fn fail_calls(breaker: &mut CircuitBreaker, n: u32, now_ms: i64) {
        for _ in 0..n {
            assert_eq!(breaker.admit(now_ms), Admission::Allowed(Ticket::Normal));
            breaker.record_failure(Ticket::Normal, now_ms);
        }
    }

    #[test]
    fn the_full_cycle() {
        let mut breaker = breaker();
        assert_eq!(breaker.state(), closed(0));

        // Failures below the threshold, then a success, start the count again.
        fail_calls(&mut breaker, 2, 0);
        assert_eq!(breaker.state(), closed(2));
        breaker.record_success(Ticket::Normal, 100);
        assert_eq!(breaker.state(), closed(0));

        // The third consecutive failure opens it for the cooldown.
        fail_calls(&mut breaker, 3, 1_000);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 11_000 });
        assert_eq!(
            breaker.admit(1_000),
            Admission::Refused { until_ms: 11_000 }
        );
        assert_eq!(
            breaker.admit(10_999),
            Admission::Refused { until_ms: 11_000 }
        );

        // Cooldown over: one probe, and only one.
        assert_eq!(breaker.admit(11_000), Admission::Allowed(Ticket::Probe));
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen {
                probe_since_ms: 11_000
            }
        );
        assert_eq!(
            breaker.admit(11_001),
            Admission::Refused { until_ms: 16_000 }
        );

        // The probe fails: open again, cooldown doubled (10 s → 20 s).
        breaker.record_failure(Ticket::Probe, 12_000);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 32_000 });
        assert_eq!(breaker.cooldown(), Duration::from_secs(20));

        // 20 s → 40 s, then capped at 40 s.
        assert_eq!(breaker.admit(32_000), Admission::Allowed(Ticket::Probe));
        breaker.record_failure(Ticket::Probe, 32_000);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 72_000 });
        assert_eq!(breaker.admit(72_000), Admission::Allowed(Ticket::Probe));
        breaker.record_failure(Ticket::Probe, 72_500);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 112_500 });
        assert_eq!(breaker.cooldown(), CONFIG.max_cooldown);

        // The probe succeeds: closed, and the cooldown is back to its first value.
        assert_eq!(breaker.admit(112_500), Admission::Allowed(Ticket::Probe));
        breaker.record_success(Ticket::Probe, 113_000);
        assert_eq!(breaker.state(), closed(0));
        assert_eq!(breaker.cooldown(), CONFIG.cooldown);
        assert_eq!(breaker.admit(113_000), Admission::Allowed(Ticket::Normal));
        fail_calls(&mut breaker, 3, 200_000);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 210_000 });
    }

    #[test]
    fn an_unanswered_probe_is_replaced_after_its_timeout() {
        let mut breaker = breaker();
        fail_calls(&mut breaker, 3, 0);
        assert_eq!(breaker.admit(10_000), Admission::Allowed(Ticket::Probe));
        assert_eq!(
            breaker.admit(14_999),
            Admission::Refused { until_ms: 15_000 }
        );
        assert_eq!(breaker.admit(15_000), Admission::Allowed(Ticket::Probe));
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen {
                probe_since_ms: 15_000
            }
        );
        assert_eq!(
            breaker.admit(15_001),
            Admission::Refused { until_ms: 20_000 }
        );
    }

    #[test]
    fn late_answers_to_normal_calls_do_not_move_an_open_or_half_open_breaker() {
        let mut breaker = breaker();
        fail_calls(&mut breaker, 3, 0);
        let open = breaker.state();
        // Calls admitted before it opened, answered now.
        breaker.record_failure(Ticket::Normal, 5_000);
        assert_eq!(
            breaker.state(),
            open,
            "a late failure does not extend the cooldown"
        );
        breaker.record_success(Ticket::Normal, 6_000);
        assert_eq!(breaker.state(), open, "a late success does not close it");

        assert_eq!(breaker.admit(10_000), Admission::Allowed(Ticket::Probe));
        let half_open = breaker.state();
        breaker.record_success(Ticket::Normal, 10_500);
        assert_eq!(breaker.state(), half_open);
        breaker.record_failure(Ticket::Normal, 10_600);
        assert_eq!(breaker.state(), half_open);
        assert_eq!(breaker.cooldown(), CONFIG.cooldown);
    }

    #[test]
    fn a_threshold_of_one_opens_on_the_first_failure() {
        let mut breaker = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            ..CONFIG
        })
        .unwrap();
        fail_calls(&mut breaker, 1, 7);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 10_007 });
    }

    #[test]
    fn extreme_clocks_saturate_instead_of_wrapping() {
        let mut breaker = breaker();
        fail_calls(&mut breaker, 3, i64::MAX - 1);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: i64::MAX });
        assert_eq!(breaker.admit(0), Admission::Refused { until_ms: i64::MAX });
        assert_eq!(breaker.admit(i64::MAX), Admission::Allowed(Ticket::Probe));
        breaker.record_failure(Ticket::Probe, i64::MAX);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: i64::MAX });
        assert_eq!(breaker.cooldown(), Duration::from_secs(20));
        // A clock at its very start: the opening time is far in the future, not wrapped.
        let mut early = CircuitBreaker::new(CONFIG).unwrap();
        fail_calls(&mut early, 3, i64::MIN);
        assert_eq!(
            early.state(),
            BreakerState::Open {
                until_ms: i64::MIN + 10_000
            }
        );
    }

    #[test]
    fn refuses_settings_that_could_not_work() {
        let cases = [
            (
                BreakerConfig {
                    failure_threshold: 0,
                    ..CONFIG
                },
                "failure_threshold must be at least 1",
            ),
            (
                BreakerConfig {
                    cooldown: Duration::ZERO,
                    ..CONFIG
                },
                "cooldown must be longer than zero",
            ),
            (
                BreakerConfig {
                    max_cooldown: Duration::from_secs(9),
                    ..CONFIG
                },
                "max_cooldown must be at least cooldown",
            ),
            (
                BreakerConfig {
                    probe_timeout: Duration::ZERO,
                    ..CONFIG
                },
                "probe_timeout must be longer than zero",
            ),
        ];
        for (config, reason) in cases {
            assert_eq!(
                CircuitBreaker::new(config).unwrap_err(),
                DeliveryError::InvalidBreakerConfig {
                    reason: reason.to_string()
                }
            );
        }
        assert!(CircuitBreaker::new(BreakerConfig::default()).is_ok());
    }

    #[test]
    fn state_labels() {
        assert_eq!(closed(3).as_str(), "closed");
        assert_eq!(BreakerState::Open { until_ms: 0 }.as_str(), "open");
        assert_eq!(
            BreakerState::HalfOpen { probe_since_ms: 0 }.as_str(),
            "half_open"
        );
    }
}
