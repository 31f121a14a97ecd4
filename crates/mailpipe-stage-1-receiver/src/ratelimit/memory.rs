//! In-process token buckets. Time is passed in (`now`), so tests drive the clock.
//!
//! Memory is bounded: source buckets exist only for configured sources (unknown sources
//! are refused before the limiter), and per-IP buckets are capped at `max_keys` — when
//! the cap is reached, full (idle) buckets are dropped, since a full bucket is the same as
//! no bucket; if every bucket is in use, all are dropped, so the limiter forgets rather
//! than grows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ip_key, Decision, Rate, Scope};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// How long until a token is available; `None` when one is there now.
    fn wait(&self, rate: Rate) -> Option<Duration> {
        (self.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - self.tokens) / rate.per_second))
    }

    fn is_full_at(&self, rate: Rate, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(rate, now);
        probe.tokens >= rate.burst
    }
}

#[derive(Default)]
struct Buckets {
    sources: HashMap<String, Bucket>,
    ips: HashMap<u128, Bucket>,
}

/// Token buckets in this process.
pub struct MemoryLimiter {
    per_source: Option<Rate>,
    per_ip: Option<Rate>,
    max_keys: usize,
    buckets: Mutex<Buckets>,
}

impl MemoryLimiter {
    pub fn new(per_source: Option<Rate>, per_ip: Option<Rate>, max_keys: usize) -> MemoryLimiter {
        MemoryLimiter {
            per_source,
            per_ip,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Takes a token from the source's and the IP's bucket at time `now`, or from neither.
    pub fn check_at(&self, source: &str, ip: Option<IpAddr>, now: Instant) -> Decision {
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Buckets { sources, ips } = &mut *guard;
        let source_bucket = match self.per_source {
            Some(rate) => {
                // Look up by &str first: the key is allocated once per source, not per request.
                if !sources.contains_key(source) {
                    sources.insert(source.to_owned(), Bucket::full(rate, now));
                }
                sources.get_mut(source).map(|bucket| {
                    bucket.refill(rate, now);
                    (rate, bucket)
                })
            }
            None => None,
        };
        let ip_bucket = match (self.per_ip, ip) {
            (Some(rate), Some(ip)) => {
                let key = ip_key(ip);
                if !ips.contains_key(&key) && ips.len() >= self.max_keys {
                    ips.retain(|_, b| !b.is_full_at(rate, now));
                    if ips.len() >= self.max_keys {
                        ips.clear();
                    }
                }
                let bucket = ips.entry(key).or_insert_with(|| Bucket::full(rate, now));
                bucket.refill(rate, now);
                Some((rate, bucket))
            }
            _ => None,
        };
        let source_wait = source_bucket.as_ref().and_then(|(r, b)| b.wait(*r));
        let ip_wait = ip_bucket.as_ref().and_then(|(r, b)| b.wait(*r));
        match (source_wait, ip_wait) {
            (None, None) => {
                for (_, bucket) in source_bucket.into_iter().chain(ip_bucket) {
                    bucket.tokens -= 1.0;
                }
                Decision::Allow
            }
            // Both empty: the longer wait is the one that matters.
            (Some(s), Some(i)) if i > s => Decision::Limit {
                scope: Scope::Ip,
                retry_after: i,
            },
            (Some(s), _) => Decision::Limit {
                scope: Scope::Source,
                retry_after: s,
            },
            (None, Some(i)) => Decision::Limit {
                scope: Scope::Ip,
                retry_after: i,
            },
        }
    }

    #[cfg(test)]
    fn tracked_ips(&self) -> usize {
        self.buckets.lock().unwrap().ips.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Option<Rate> {
        Rate::new(per_second, burst)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn burst_then_refill_at_the_sustained_rate() {
        let limiter = MemoryLimiter::new(rate(2.0, 3), None, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at("s", None, t0), Decision::Allow);
        }
        let Decision::Limit { scope, retry_after } = limiter.check_at("s", None, t0) else {
            panic!("burst of 3 exceeded but allowed");
        };
        assert_eq!(scope, Scope::Source);
        assert_eq!(retry_after, Duration::from_millis(500));
        // Half a second later one token (2/s) is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check_at("s", None, t1), Decision::Allow);
        assert!(matches!(
            limiter.check_at("s", None, t1),
            Decision::Limit { .. }
        ));
        // Other sources have their own bucket.
        assert_eq!(limiter.check_at("other", None, t1), Decision::Allow);
    }

    #[test]
    fn an_ip_refusal_does_not_drain_the_source() {
        let limiter = MemoryLimiter::new(rate(1.0, 2), rate(1.0, 1), 100);
        let t0 = Instant::now();
        assert_eq!(limiter.check_at("s", ip("192.0.2.1"), t0), Decision::Allow);
        let refused = limiter.check_at("s", ip("192.0.2.1"), t0);
        assert!(
            matches!(
                refused,
                Decision::Limit {
                    scope: Scope::Ip,
                    ..
                }
            ),
            "{refused:?}"
        );
        // The source still has its second token for another client.
        assert_eq!(limiter.check_at("s", ip("192.0.2.2"), t0), Decision::Allow);
        let refused = limiter.check_at("s", ip("192.0.2.3"), t0);
        assert!(
            matches!(
                refused,
                Decision::Limit {
                    scope: Scope::Source,
                    ..
                }
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn ip_buckets_are_bounded() {
        let limiter = MemoryLimiter::new(None, rate(1.0, 1), 3);
        let t0 = Instant::now();
        for i in 0..10u8 {
            let client = Some(IpAddr::from([10, 0, 0, i]));
            assert_eq!(limiter.check_at("s", client, t0), Decision::Allow);
            assert!(limiter.tracked_ips() <= 3, "{}", limiter.tracked_ips());
        }
    }

    #[test]
    fn idle_ip_buckets_are_dropped_before_busy_ones() {
        let limiter = MemoryLimiter::new(None, rate(1.0, 1), 3);
        let [a, b, c, d] = [1u8, 2, 3, 4].map(|i| Some(IpAddr::from([10, 0, 0, i])));
        let t0 = Instant::now();
        assert_eq!(limiter.check_at("s", a, t0), Decision::Allow);
        assert_eq!(limiter.check_at("s", b, t0), Decision::Allow);
        // Ten seconds on, a and b have refilled (idle); c is drained now.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(limiter.check_at("s", c, t1), Decision::Allow);
        // A fourth client at the cap evicts a and b, not c: c is still limited.
        assert_eq!(limiter.check_at("s", d, t1), Decision::Allow);
        assert_eq!(limiter.tracked_ips(), 2);
        assert!(matches!(
            limiter.check_at("s", c, t1),
            Decision::Limit { .. }
        ));
    }

    #[test]
    fn no_limits_configured_allows_everything() {
        let limiter = MemoryLimiter::new(None, None, 10);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.check_at("s", ip("192.0.2.1"), t0), Decision::Allow);
        }
    }
}
