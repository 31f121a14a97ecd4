//! Rate limits: a token bucket per source and one per client IP. A request takes one
//! token from each bucket that applies, or from none: a request refused by the per-IP
//! bucket does not drain its source's bucket.
//!
//! Two backends with the same semantics: [`MemoryLimiter`] (per process, the default) and
//! [`RedisLimiter`] (shared by every receiver replica; allows when Redis does not answer).

mod memory;
mod redis;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mailpipe_settings::{RateLimitBackend, Settings};

pub use memory::MemoryLimiter;
pub use redis::RedisLimiter;

/// Sustained rate and burst of one kind of bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `None` when `per_second` is 0: that limit is off.
    pub fn new(per_second: f64, burst: u32) -> Option<Rate> {
        (per_second > 0.0).then_some(Rate {
            per_second,
            burst: f64::from(burst.max(1)),
        })
    }
}

/// Which bucket refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Source,
    Ip,
}

impl Scope {
    /// The rejection reason label.
    pub fn reason(self) -> &'static str {
        match self {
            Scope::Source => "rate_limited_source",
            Scope::Ip => "rate_limited_ip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allow,
    /// Refused; a token will be there after `retry_after`.
    Limit {
        scope: Scope,
        retry_after: Duration,
    },
}

/// The per-IP bucket key: the IPv4 address, or the /64 of an IPv6 address, because one
/// IPv6 client usually owns a whole /64 and could otherwise rotate through fresh buckets.
pub fn ip_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        // As ::ffff:a.b.c.d: its low 64 bits hold 0xffff, so it never equals a /64 key
        // below, whose low 64 bits are exactly 1.
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 64) - 1)) | 1,
    }
}

/// The configured backend.
pub enum RateLimiter {
    Memory(MemoryLimiter),
    Redis(RedisLimiter),
}

impl RateLimiter {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<RateLimiter> {
        let rl = &settings.receiver.rate_limit;
        let per_source = Rate::new(rl.per_source_per_second, rl.per_source_burst);
        let per_ip = Rate::new(rl.per_ip_per_second, rl.per_ip_burst);
        Ok(match rl.backend {
            RateLimitBackend::Memory => {
                RateLimiter::Memory(MemoryLimiter::new(per_source, per_ip, rl.max_tracked_keys))
            }
            RateLimitBackend::Redis => RateLimiter::Redis(RedisLimiter::new(
                &settings.redis.url,
                &settings.redis.key_prefix,
                per_source,
                per_ip,
                Duration::from_millis(rl.redis_timeout_ms),
            )?),
        })
    }

    /// Takes a token for `source` and `ip` (unknown IP: the source bucket only).
    pub async fn check(&self, source: &str, ip: Option<IpAddr>) -> Decision {
        match self {
            RateLimiter::Memory(limiter) => limiter.check_at(source, ip, Instant::now()),
            RateLimiter::Redis(limiter) => limiter.check(source, ip).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a = ip_key("2001:db8:1:2::1".parse().unwrap());
        let b = ip_key("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = ip_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        // An IPv4 address never collides with an IPv6 /64.
        assert_ne!(
            ip_key("0.0.0.1".parse().unwrap()),
            ip_key("::1".parse().unwrap())
        );
        assert_eq!(
            ip_key("::ffff:192.0.2.1".parse().unwrap()),
            ip_key("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn defaults_let_one_esp_address_post_5000_requests_per_second() {
        // SES through SNS: one request per event, from few addresses. With the default
        // settings, five seconds at 5,000 requests/s from one address to one source are
        // all allowed (simulated clock: the memory backend takes the time as an argument).
        let settings = crate::tests::settings();
        let RateLimiter::Memory(limiter) = RateLimiter::from_settings(&settings).unwrap() else {
            panic!("the default backend is memory");
        };
        let sns: Option<IpAddr> = Some("54.240.217.9".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..25_000u32 {
            let now = t0 + Duration::from_micros(200) * i;
            let decision = limiter.check_at("ses", sns, now);
            assert_eq!(decision, Decision::Allow, "request {i} at {:?}", now - t0);
        }
    }

    #[test]
    fn zero_rate_means_no_limit() {
        assert_eq!(Rate::new(0.0, 10), None);
        assert_eq!(
            Rate::new(2.5, 0),
            Some(Rate {
                per_second: 2.5,
                burst: 1.0
            })
        );
    }
}
