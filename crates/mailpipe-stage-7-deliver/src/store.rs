//! The durable schedule of deliveries, in Redis (shared by every replica of the worker and
//! by `mailpipe deliveries`). Keys under `[delivery] redis_prefix`:
//! - `jobs`: hash, action id → the [`Job`] as JSON (pending deliveries);
//! - `due`: sorted set, action id → when its next attempt is due (Unix ms);
//! - `done:<action id>`: set when a delivery ended, kept 30 days, so a `mail.actions`
//!   record read again (a redelivery after a crash) never starts it over;
//! - `failed`: hash, action id → the job of a delivery that failed for good, for an
//!   operator's `retry`;
//! - `outbox`: hash of records to write to Kafka, each written in the same step as the
//!   result it reports and removed once Kafka has it, so a crash between the two neither
//!   loses a record nor repeats a delivery: `<action id>#<n>` → attempt n's
//!   `mail.deliveries` record, `<action id>` → the outcome record of the delivery's end;
//! - `disabled`: hash, target → why and when (410 Gone, or an operator);
//! - `unreadable`: hash, action id → a stored job that no longer parses (written by another
//!   version?), set aside with an error in the log so it never blocks the others;
//!   `unwritable`: hash, outbox key → an outbox entry Kafka refuses for good, likewise.
//!
//! - `leases`: hash, action id → the token of the claim that holds it.
//!
//! Why a delivery is attempted once per answer: claiming moves its due time a lease ahead
//! and writes a fresh lease token (atomically, so two workers never claim it together),
//! and the attempt's result is stored in one step with the next due time or the end —
//! only if the lease is still the attempt's (fencing: a worker that stalled past its lease,
//! while another claimed the delivery, has its late result discarded, never written over
//! the other's). A worker that dies mid-attempt leaves the delivery to be claimed again
//! when the lease runs out: only an attempt that never got its answer recorded is
//! repeated, under the same `webhook-id`.
//!
//! Durability: what is here must survive a restart of Redis, so Redis must persist
//! (`appendonly yes`; the local stack runs it so).

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::job::Job;

/// How long the end of a delivery is remembered against redeliveries of its record.
pub const DONE_TTL_SECONDS: u64 = 30 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("a stored delivery is not readable: {0}")]
    Corrupt(String),
}

/// What `retry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// A pending delivery: due now.
    Rescheduled,
    /// A delivery that had failed: pending again, due now, attempts from zero.
    Revived,
    /// Being attempted right now (its lease is live): nothing changed; try again shortly.
    Busy,
    /// No delivery of that id is pending or failed.
    Unknown,
}

#[derive(Clone)]
pub struct Store {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

const ENQUEUE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
   or redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
";

const CLAIM: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[1], id)
  if job then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('HSET', KEYS[3], id, ARGV[4])
    table.insert(out, id)
    table.insert(out, job)
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
";

const RESCHEDULE: &str = r"
if ARGV[4] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[4] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
end
return 1
";

const FINISH: &str = r"
if ARGV[7] ~= '' and redis.call('HGET', KEYS[6], ARGV[1]) ~= ARGV[7] then
  return 0
end
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
end
return 1
";

const RETRY: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  local due = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0')
  if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 1 and due > tonumber(ARGV[2]) then
    return 3
  end
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
local failed = redis.call('HGET', KEYS[4], ARGV[1])
if failed then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('DEL', KEYS[3])
  return 2
end
return 0
";

const OUTBOX_WRITTEN: &str = r"
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
";

/// Whether a result was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Yes,
    /// The attempt's lease was taken over (it outlasted it): the result is discarded.
    LeaseLost,
}

impl Store {
    pub fn new(connection: ConnectionManager, prefix: String, timeout: Duration) -> Store {
        Store {
            connection,
            prefix,
            timeout,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn done_key(&self, id: &str) -> String {
        format!("{}done:{id}", self.prefix)
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Schedules a new delivery due at `due_ms`, unless it is already pending, failed or
    /// ended (answers whether it was added).
    pub async fn enqueue(&self, job: &Job, due_ms: i64) -> Result<bool, StoreError> {
        let json = serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut c = self.connection.clone();
        let added: i64 = self
            .bounded(
                Script::new(ENQUEUE)
                    .key(self.key("jobs"))
                    .key(self.key("due"))
                    .key(self.done_key(job.id()))
                    .key(self.key("failed"))
                    .arg(job.id())
                    .arg(json)
                    .arg(due_ms)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(added == 1)
    }

    /// Claims up to `max` deliveries due at `now_ms`, each leased until `lease_until_ms`.
    pub async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        max: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let mut c = self.connection.clone();
        let token = lease_token();
        let claimed: Vec<String> = self
            .bounded(
                Script::new(CLAIM)
                    .key(self.key("jobs"))
                    .key(self.key("due"))
                    .key(self.key("leases"))
                    .arg(now_ms)
                    .arg(lease_until_ms)
                    .arg(max)
                    .arg(&token)
                    .invoke_async(&mut c),
            )
            .await?;
        let mut jobs = Vec::with_capacity(claimed.len() / 2);
        for pair in claimed.chunks(2) {
            let [id, json] = pair else { continue };
            match serde_json::from_str::<Job>(json) {
                Ok(mut job) => {
                    job.lease = token.clone();
                    jobs.push(job);
                }
                Err(e) => {
                    tracing::error!(action_id = %id, error = %e,
                        "a stored delivery does not parse; set aside in the unreadable hash");
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .hset(self.key("unreadable"), id, json)
                        .ignore()
                        .hdel(self.key("jobs"), id)
                        .ignore()
                        .zrem(self.key("due"), id)
                        .ignore();
                    self.bounded(pipe.query_async::<()>(&mut c)).await?;
                }
            }
        }
        Ok(jobs)
    }

    /// Stores the job (its attempts so far) and its next due time, with the record of the
    /// attempt that led there when there was one (`(outbox key, entry)`), in one step — if
    /// the job's lease is still its own.
    pub async fn reschedule(
        &self,
        job: &Job,
        due_ms: i64,
        attempt: Option<(&str, &str)>,
    ) -> Result<Stored, StoreError> {
        let json = serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (attempt_key, attempt_entry) = attempt.unwrap_or(("", ""));
        let mut c = self.connection.clone();
        let stored: i64 = self
            .bounded(
                Script::new(RESCHEDULE)
                    .key(self.key("jobs"))
                    .key(self.key("due"))
                    .key(self.key("leases"))
                    .key(self.key("outbox"))
                    .arg(job.id())
                    .arg(json)
                    .arg(due_ms)
                    .arg(&job.lease)
                    .arg(attempt_key)
                    .arg(attempt_entry)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(if stored == 1 {
            Stored::Yes
        } else {
            Stored::LeaseLost
        })
    }

    /// Ends a delivery in one step: no longer pending, remembered as done, its outcome
    /// record (and its last attempt's, when there was one) in the outbox, and (when it
    /// failed) the job kept for an operator's retry.
    pub async fn finish(
        &self,
        job: &Job,
        outcome_record: &str,
        failed: bool,
        attempt: Option<(&str, &str)>,
    ) -> Result<Stored, StoreError> {
        let (attempt_key, attempt_entry) = attempt.unwrap_or(("", ""));
        let kept = if failed {
            serde_json::to_string(job).map_err(|e| StoreError::Corrupt(e.to_string()))?
        } else {
            String::new()
        };
        let mut c = self.connection.clone();
        let stored: i64 = self
            .bounded(
                Script::new(FINISH)
                    .key(self.key("jobs"))
                    .key(self.key("due"))
                    .key(self.done_key(job.id()))
                    .key(self.key("outbox"))
                    .key(self.key("failed"))
                    .key(self.key("leases"))
                    .arg(job.id())
                    .arg(outcome_record)
                    .arg(DONE_TTL_SECONDS)
                    .arg(kept)
                    .arg(attempt_key)
                    .arg(attempt_entry)
                    .arg(&job.lease)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(if stored == 1 {
            Stored::Yes
        } else {
            Stored::LeaseLost
        })
    }

    /// Up to about `max` records not yet written to Kafka (outbox key → entry as JSON).
    /// Sets an outbox entry that can never be written aside (in `unwritable`), so it no
    /// longer holds the others.
    pub async fn set_aside(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut c = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.key("unwritable"), key, value)
            .ignore()
            .hdel(self.key("outbox"), key)
            .ignore();
        self.bounded(pipe.query_async::<()>(&mut c)).await
    }

    pub async fn outbox(&self, max: usize) -> Result<BTreeMap<String, String>, StoreError> {
        let mut c = self.connection.clone();
        let mut out = BTreeMap::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = self
                .bounded(
                    redis::cmd("HSCAN")
                        .arg(self.key("outbox"))
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(max)
                        .query_async(&mut c),
                )
                .await?;
            out.extend(page);
            cursor = next;
            if cursor == 0 || out.len() >= max {
                return Ok(out);
            }
        }
    }

    /// Forgets outbox entries Kafka acknowledged, each only if it still holds what was
    /// written (an entry rewritten meanwhile, e.g. a revived delivery's new outcome, stays).
    pub async fn outbox_written(&self, entries: &[(String, String)]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut c = self.connection.clone();
        let script = Script::new(OUTBOX_WRITTEN);
        let mut invocation = script.key(self.key("outbox"));
        for (key, value) in entries {
            invocation.arg(key).arg(value);
        }
        let _: i64 = self.bounded(invocation.invoke_async(&mut c)).await?;
        Ok(())
    }

    /// Disabled targets and why.
    pub async fn disabled(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut c = self.connection.clone();
        self.bounded(
            redis::cmd("HGETALL")
                .arg(self.key("disabled"))
                .query_async(&mut c),
        )
        .await
    }

    pub async fn disable(&self, target: &str, why: &str) -> Result<(), StoreError> {
        let mut c = self.connection.clone();
        self.bounded(
            redis::cmd("HSET")
                .arg(self.key("disabled"))
                .arg(target)
                .arg(why)
                .query_async::<()>(&mut c),
        )
        .await
    }

    /// Enables a target again; answers whether it was disabled.
    pub async fn enable(&self, target: &str) -> Result<bool, StoreError> {
        let mut c = self.connection.clone();
        let removed: i64 = self
            .bounded(
                redis::cmd("HDEL")
                    .arg(self.key("disabled"))
                    .arg(target)
                    .query_async(&mut c),
            )
            .await?;
        Ok(removed == 1)
    }

    /// Pending deliveries with their due times, soonest first (at most `max`).
    pub async fn pending(&self, max: usize) -> Result<Vec<(Job, i64)>, StoreError> {
        let mut c = self.connection.clone();
        let due: Vec<(String, i64)> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(self.key("due"))
                    .arg(0)
                    .arg(max.saturating_sub(1))
                    .arg("WITHSCORES")
                    .query_async(&mut c),
            )
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = due.iter().map(|(id, _)| id.as_str()).collect();
        let jobs: Vec<Option<String>> = self
            .bounded(
                redis::cmd("HMGET")
                    .arg(self.key("jobs"))
                    .arg(&ids)
                    .query_async(&mut c),
            )
            .await?;
        let mut out = Vec::with_capacity(due.len());
        for ((_, at), json) in due.iter().zip(jobs) {
            if let Some(json) = json {
                let job =
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                out.push((job, *at));
            }
        }
        Ok(out)
    }

    /// Deliveries that failed for good (kept for `retry`).
    pub async fn failed(&self) -> Result<Vec<Job>, StoreError> {
        let mut c = self.connection.clone();
        let all: BTreeMap<String, String> = self
            .bounded(
                redis::cmd("HGETALL")
                    .arg(self.key("failed"))
                    .query_async(&mut c),
            )
            .await?;
        all.values()
            .map(|j| serde_json::from_str(j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Makes a pending delivery due now, or a failed one pending again (its attempts from
    /// zero).
    pub async fn retry(&self, id: &str, now_ms: i64) -> Result<Retried, StoreError> {
        let mut c = self.connection.clone();
        let failed: Option<String> = self
            .bounded(
                redis::cmd("HGET")
                    .arg(self.key("failed"))
                    .arg(id)
                    .query_async(&mut c),
            )
            .await?;
        let revived = match failed {
            Some(json) => {
                let mut job: Job =
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                job.attempts = 0;
                serde_json::to_string(&job).map_err(|e| StoreError::Corrupt(e.to_string()))?
            }
            None => String::new(),
        };
        let answer: i64 = self
            .bounded(
                Script::new(RETRY)
                    .key(self.key("jobs"))
                    .key(self.key("due"))
                    .key(self.done_key(id))
                    .key(self.key("failed"))
                    .key(self.key("leases"))
                    .arg(id)
                    .arg(now_ms)
                    .arg(revived)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(match answer {
            1 => Retried::Rescheduled,
            2 => Retried::Revived,
            3 => Retried::Busy,
            _ => Retried::Unknown,
        })
    }
}

/// A fresh lease token: random, so no two claims share one.
fn lease_token() -> String {
    use rand_core::RngCore as _;
    format!("{:016x}", rand_core::OsRng.next_u64())
}
