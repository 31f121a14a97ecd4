//! Token buckets in Redis, shared by every receiver replica: one Lua script call per
//! request refills and takes from both buckets atomically, on Redis' own clock (`TIME`),
//! so replicas with skewed clocks agree.
//!
//! Failure policy: the limiter protects us, it must never lose an ESP's event. When Redis
//! does not answer within `redis_timeout_ms`, the request is allowed, counted in
//! `mailpipe_receiver_rate_limit_fallbacks_total`, and Redis is skipped for a second so a
//! dead Redis adds no latency to every request.
//!
//! All keys share one hash tag (`{<prefix>rl}`), so the script also runs on Redis Cluster.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mailpipe_telemetry::names;
use redis::aio::ConnectionManager;
use redis::Script;

use super::{ip_key, Decision, Rate, Scope};

/// KEYS: bucket keys. ARGV: per key, rate per second and burst. Returns
/// {allowed (0/1), wait in ms, 1-based index of the key that refused}.
const TOKEN_BUCKETS_LUA: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local tokens = {}
local wait, refused_by = 0, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local t, ts = tonumber(state[1]), tonumber(state[2])
  if t == nil or ts == nil then t, ts = burst, now_ms end
  t = math.min(burst, t + math.max(0, now_ms - ts) * rate / 1000)
  tokens[i] = t
  if t < 1 then
    local w = math.ceil((1 - t) * 1000 / rate)
    if w > wait then wait, refused_by = w, i end
  end
end
if wait > 0 then return {0, wait, refused_by} end
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i] - 1), 'ts', now_ms)
  -- A bucket left alone refills completely within burst / rate: then it can go.
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst * 1000 / rate) + 1000)
end
return {1, 0, 0}
";

/// How long Redis is skipped after it failed to answer.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct RedisLimiter {
    connection: ConnectionManager,
    script: Script,
    tag: String,
    per_source: Option<Rate>,
    per_ip: Option<Rate>,
    timeout: Duration,
    /// Redis is skipped until this many ms after `epoch` (0: not skipped).
    skip_until_ms: AtomicU64,
    epoch: Instant,
}

impl RedisLimiter {
    /// Connects lazily: a Redis that is down at start-up does not stop the receiver.
    pub fn new(
        url: &str,
        key_prefix: &str,
        per_source: Option<Rate>,
        per_ip: Option<Rate>,
        timeout: Duration,
    ) -> anyhow::Result<RedisLimiter> {
        let connection = mailpipe_runtime::redis::connect(url, timeout)?;
        Ok(RedisLimiter {
            connection,
            script: Script::new(TOKEN_BUCKETS_LUA),
            tag: format!("{{{key_prefix}rl}}"),
            per_source,
            per_ip,
            timeout,
            skip_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    pub async fn check(&self, source: &str, ip: Option<IpAddr>) -> Decision {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        if now_ms < self.skip_until_ms.load(Ordering::Relaxed) {
            metrics::counter!(names::RECEIVER_RATE_LIMIT_FALLBACKS).increment(1);
            return Decision::Allow;
        }
        let mut invocation = self.script.prepare_invoke();
        let mut scopes = Vec::with_capacity(2);
        if let Some(rate) = self.per_source {
            invocation
                .key(format!("{}:s:{source}", self.tag))
                .arg(rate.per_second)
                .arg(rate.burst);
            scopes.push(Scope::Source);
        }
        if let (Some(rate), Some(ip)) = (self.per_ip, ip) {
            invocation
                .key(format!("{}:ip:{:032x}", self.tag, ip_key(ip)))
                .arg(rate.per_second)
                .arg(rate.burst);
            scopes.push(Scope::Ip);
        }
        if scopes.is_empty() {
            return Decision::Allow;
        }
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<(i64, i64, usize)>(&mut connection);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((1, _, _))) => Decision::Allow,
            Ok(Ok((_, wait_ms, refused_by))) => Decision::Limit {
                scope: scopes
                    .get(refused_by.saturating_sub(1))
                    .copied()
                    .unwrap_or(Scope::Source),
                retry_after: Duration::from_millis(wait_ms.max(1) as u64),
            },
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.timeout),
                };
                let until = now_ms + SKIP_AFTER_FAILURE.as_millis() as u64;
                // Log once per skip window, not once per request.
                if self.skip_until_ms.swap(until, Ordering::Relaxed) <= now_ms {
                    tracing::warn!(error, "rate limiter: Redis unavailable; allowing requests");
                }
                metrics::counter!(names::RECEIVER_RATE_LIMIT_FALLBACKS).increment(1);
                Decision::Allow
            }
        }
    }
}
