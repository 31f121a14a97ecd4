//! The rules' shared state in Redis: sliding-window series (thresholds and rates),
//! cooldown and limit claims, windowed engagement scores, segments and the suppression
//! lookup. Every replica of the stage reads and writes the same keys, so a threshold over a
//! recipient domain or a campaign is exact whichever partitions its events come from.
//!
//! One batch of [`Op`]s is one pipelined round trip ([`RulesState::apply`]); each op is one
//! server-side script or command on one key, so each is atomic and the keys can live on
//! different cluster nodes.
//!
//! Invariant: idempotent. Series members are event ids, scores are sums of contributions
//! named by the action's idempotency key, cooldown and limit claims remember their claimant
//! and grant it again: applying the same ops twice answers the same and changes nothing
//! more. That is what lets a redelivered event (after a crash or an aborted transaction)
//! be evaluated again without counting twice.

use redis::aio::ConnectionManager;
use redis::{Script, Value};

/// What can go wrong talking to the state store. Every variant is transient for the stage:
/// it holds the partition and retries, it never skips an event.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis answered {got} replies to {sent} operations")]
    ReplyCount { sent: usize, got: usize },
    #[error("unexpected redis reply to {op}: {reply}")]
    Reply { op: &'static str, reply: String },
}

/// One read or write of the shared state. Times are Unix milliseconds chosen by the caller
/// (the event's time for series, the processing time for claims): nothing here reads a clock.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Adds `member` (an event id) at `at_ms` to `series` and answers how many members lie
    /// in the window `(at_ms - window_ms, at_ms]` (this one included).
    WindowAdd {
        series: String,
        member: String,
        at_ms: i64,
        window_ms: i64,
    },
    /// Answers how many members of `series` lie in `(at_ms - window_ms, at_ms]`.
    WindowCount {
        series: String,
        at_ms: i64,
        window_ms: i64,
    },
    /// Claims `key` for `cooldown_ms`: granted when nobody holds it, or when `claimant`
    /// already does (a redelivery of the event that took it).
    Cooldown {
        key: String,
        claimant: String,
        cooldown_ms: i64,
    },
    /// Claims one of `max` executions counted in `(at_ms - window_ms, at_ms]`; granted when
    /// `claimant` already holds one.
    Limit {
        key: String,
        claimant: String,
        at_ms: i64,
        window_ms: i64,
        max: u64,
    },
    /// Adds `delta` to `recipient`'s score once per `contribution`, and answers the score:
    /// the sum of contributions in `(at_ms - window_ms, at_ms]`.
    ScoreAdd {
        recipient: String,
        contribution: String,
        delta: f64,
        at_ms: i64,
        window_ms: i64,
    },
    /// Answers `recipient`'s score as [`Op::ScoreAdd`] computes it.
    ScoreGet {
        recipient: String,
        at_ms: i64,
        window_ms: i64,
    },
    /// Puts `recipient` in `segment`.
    SegmentAdd { segment: String, recipient: String },
    /// Takes `recipient` out of `segment`.
    SegmentRemove { segment: String, recipient: String },
    /// Answers whether `recipient` is in `segment`.
    SegmentHas { segment: String, recipient: String },
    /// Records `recipient` as suppressed in `scope`, with `record` (JSON: reason, source,
    /// time, rule) as the lookup's value.
    Suppress {
        scope: String,
        recipient: String,
        record: String,
    },
    /// Lifts `recipient`'s suppression in `scope`.
    Unsuppress { scope: String, recipient: String },
    /// Answers `recipient`'s suppression record in `scope`, if any.
    Suppressed { scope: String, recipient: String },
}

/// The answer to one [`Op`], in the order of the ops.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Count(u64),
    Granted(bool),
    Score(f64),
    Member(bool),
    Suppression(Option<String>),
    Done,
}

/// Adds a member (NX: a redelivered event is not added twice), forgets members that no
/// window can need any more (older than two windows), keeps the key two windows, counts.
/// KEYS[1] series; ARGV: member, at, trim bound (inclusive), count bound ("(" exclusive),
/// ttl ms.
const WINDOW_ADD: &str = r"
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return redis.call('ZCOUNT', KEYS[1], ARGV[4], ARGV[2])
";

/// KEYS[1] cooldown key; ARGV: claimant, cooldown ms.
const COOLDOWN: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS[1] limit key; ARGV: claimant, at, expired bound (inclusive), max, ttl ms.
const LIMIT: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
";

/// Contributions are members `<contribution>|<delta>`; the score is their sum in the
/// window, returned as text (a Lua number would be truncated to an integer reply).
/// KEYS[1] score key; ARGV: member ("" to only read), at, trim bound, count bound, ttl ms.
const SCORE: &str = r"
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local sum = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[2])) do
  local delta = tonumber(string.match(member, '|([^|]*)$'))
  if delta then sum = sum + delta end
end
return tostring(sum)
";

/// The rules' state in one Redis, under a key prefix (tests use their own).
pub struct RulesState {
    connection: ConnectionManager,
    prefix: String,
    window_add: Script,
    cooldown: Script,
    limit: Script,
    score: Script,
}

impl RulesState {
    /// `prefix` starts every key (e.g. `mailpipe:rules:`).
    pub fn new(connection: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            connection,
            prefix: prefix.into(),
            window_add: Script::new(WINDOW_ADD),
            cooldown: Script::new(COOLDOWN),
            limit: Script::new(LIMIT),
            score: Script::new(SCORE),
        }
    }

    /// Applies `ops` in one pipelined round trip and answers each, in order. Scripts the
    /// server does not know yet (first use, or Redis restarted) are loaded and the whole
    /// batch is sent again, which the ops' idempotence makes safe.
    pub async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Answer>, StateError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        match self.send(ops).await {
            Err(StateError::Redis(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.load_scripts().await?;
                self.send(ops).await
            }
            other => other,
        }
    }

    async fn load_scripts(&mut self) -> Result<(), StateError> {
        let mut pipe = redis::pipe();
        for script in [&self.window_add, &self.cooldown, &self.limit, &self.score] {
            pipe.load_script(script);
        }
        let _: Vec<String> = pipe.query_async(&mut self.connection).await?;
        Ok(())
    }

    async fn send(&mut self, ops: &[Op]) -> Result<Vec<Answer>, StateError> {
        let mut pipe = redis::pipe();
        for op in ops {
            self.push(&mut pipe, op);
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.connection).await?;
        if replies.len() != ops.len() {
            return Err(StateError::ReplyCount {
                sent: ops.len(),
                got: replies.len(),
            });
        }
        ops.iter()
            .zip(replies)
            .map(|(op, reply)| answer(op, reply))
            .collect()
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    fn push(&self, pipe: &mut redis::Pipeline, op: &Op) {
        match op {
            Op::WindowAdd {
                series,
                member,
                at_ms,
                window_ms,
            } => {
                let bounds = Bounds::new(*at_ms, *window_ms);
                pipe.invoke_script(
                    self.window_add
                        .key(self.key("series", series))
                        .arg(member)
                        .arg(at_ms)
                        .arg(bounds.trim)
                        .arg(bounds.count_from)
                        .arg(bounds.ttl_ms),
                );
            }
            Op::WindowCount {
                series,
                at_ms,
                window_ms,
            } => {
                let bounds = Bounds::new(*at_ms, *window_ms);
                pipe.zcount(self.key("series", series), bounds.count_from, at_ms);
            }
            Op::Cooldown {
                key,
                claimant,
                cooldown_ms,
            } => {
                pipe.invoke_script(
                    self.cooldown
                        .key(self.key("cooldown", key))
                        .arg(claimant)
                        .arg(cooldown_ms.max(&1)),
                );
            }
            Op::Limit {
                key,
                claimant,
                at_ms,
                window_ms,
                max,
            } => {
                pipe.invoke_script(
                    self.limit
                        .key(self.key("limit", key))
                        .arg(claimant)
                        .arg(at_ms)
                        .arg(at_ms.saturating_sub(*window_ms))
                        .arg(max)
                        .arg(window_ms.max(&1)),
                );
            }
            Op::ScoreAdd {
                recipient,
                contribution,
                delta,
                at_ms,
                window_ms,
            } => {
                let bounds = Bounds::new(*at_ms, *window_ms);
                let member = format!("{contribution}|{delta}");
                self.push_score(pipe, recipient, &member, *at_ms, &bounds);
            }
            Op::ScoreGet {
                recipient,
                at_ms,
                window_ms,
            } => {
                let bounds = Bounds::new(*at_ms, *window_ms);
                self.push_score(pipe, recipient, "", *at_ms, &bounds);
            }
            Op::SegmentAdd { segment, recipient } => {
                pipe.sadd(self.key("segment", segment), recipient);
            }
            Op::SegmentRemove { segment, recipient } => {
                pipe.srem(self.key("segment", segment), recipient);
            }
            Op::SegmentHas { segment, recipient } => {
                pipe.sismember(self.key("segment", segment), recipient);
            }
            Op::Suppress {
                scope,
                recipient,
                record,
            } => {
                pipe.hset(self.key("suppressions", scope), recipient, record);
            }
            Op::Unsuppress { scope, recipient } => {
                pipe.hdel(self.key("suppressions", scope), recipient);
            }
            Op::Suppressed { scope, recipient } => {
                pipe.hget(self.key("suppressions", scope), recipient);
            }
        }
    }

    fn push_score(
        &self,
        pipe: &mut redis::Pipeline,
        recipient: &str,
        member: &str,
        at_ms: i64,
        bounds: &Bounds,
    ) {
        pipe.invoke_script(
            self.score
                .key(self.key("score", recipient))
                .arg(member)
                .arg(at_ms)
                .arg(bounds.trim)
                .arg(bounds.count_from.as_str())
                .arg(bounds.ttl_ms),
        );
    }
}

/// The score bounds of a window `(at - window, at]` over members scored by time.
struct Bounds {
    /// Members at or below this are dropped: no window ending at or after `at - window`
    /// can need them (late events up to one window behind still count right).
    trim: i64,
    /// `ZCOUNT`'s exclusive lower bound.
    count_from: String,
    /// How long the key outlives its last write: two windows.
    ttl_ms: i64,
}

impl Bounds {
    fn new(at_ms: i64, window_ms: i64) -> Self {
        let window_ms = window_ms.max(1);
        Self {
            trim: at_ms.saturating_sub(window_ms.saturating_mul(2)),
            count_from: format!("({}", at_ms.saturating_sub(window_ms)),
            ttl_ms: window_ms.saturating_mul(2),
        }
    }
}

fn answer(op: &Op, reply: Value) -> Result<Answer, StateError> {
    let unexpected = |name: &'static str, reply: &Value| StateError::Reply {
        op: name,
        reply: format!("{reply:?}"),
    };
    Ok(match op {
        Op::WindowAdd { .. } | Op::WindowCount { .. } => match reply {
            Value::Int(n) => Answer::Count(n.max(0) as u64),
            other => return Err(unexpected("window", &other)),
        },
        Op::Cooldown { .. } | Op::Limit { .. } => match reply {
            Value::Int(n) => Answer::Granted(n == 1),
            other => return Err(unexpected("claim", &other)),
        },
        Op::ScoreAdd { .. } | Op::ScoreGet { .. } => {
            let text: String =
                redis::from_redis_value(reply.clone()).map_err(|_| unexpected("score", &reply))?;
            Answer::Score(text.parse().map_err(|_| unexpected("score", &reply))?)
        }
        Op::SegmentHas { .. } => match reply {
            Value::Int(n) => Answer::Member(n == 1),
            Value::Boolean(b) => Answer::Member(b),
            other => return Err(unexpected("segment", &other)),
        },
        Op::Suppressed { .. } => {
            let record: Option<String> = redis::from_redis_value(reply.clone())
                .map_err(|_| unexpected("suppressed", &reply))?;
            Answer::Suppression(record)
        }
        Op::SegmentAdd { .. }
        | Op::SegmentRemove { .. }
        | Op::Suppress { .. }
        | Op::Unsuppress { .. } => Answer::Done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_after_its_start_and_keeps_two_windows() {
        let bounds = Bounds::new(10_000, 3_000);
        assert_eq!(bounds.count_from, "(7000");
        assert_eq!(bounds.trim, 4_000);
        assert_eq!(bounds.ttl_ms, 6_000);
    }

    #[test]
    fn a_zero_window_still_gives_a_positive_ttl() {
        assert_eq!(Bounds::new(5, 0).ttl_ms, 2);
    }

    #[test]
    fn answers_of_the_wrong_shape_are_errors_not_panics() {
        let op = Op::WindowCount {
            series: "s".into(),
            at_ms: 0,
            window_ms: 1,
        };
        assert!(answer(&op, Value::Nil).is_err());
        let op = Op::ScoreGet {
            recipient: "r".into(),
            at_ms: 0,
            window_ms: 1,
        };
        assert!(answer(&op, Value::Nil).is_err());
    }
}
