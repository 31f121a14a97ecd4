//! The rules' shared state in Redis: sliding-window series (thresholds and rates),
//! cooldown and limit claims, windowed engagement scores, segments and the suppression
//! lookup. Every replica of the stage reads and writes the same keys, so a threshold over a
//! recipient domain or a campaign is exact whichever partitions its events come from.
//!
//! One batch of [`Op`]s is one pipelined round trip ([`RulesState::apply`]); each op is one
//! server-side script or command on one key, so each is atomic and the keys can live on
//! different cluster nodes. The exceptions are a counter increment and a score
//! contribution, three commands on one key each (add the member, forget members older than
//! any window, renew the expiry): each is idempotent, and no reader can tell them apart from
//! one script, since counts and scores read windows far younger than what is forgotten; a
//! script costs Redis about three times as much.
//! Consecutive increments of one batch are sent per series, not per increment: one `ZADD NX`
//! of all their members, one trim at the oldest bound any of them needs, one expiry at the
//! longest retention any of them asks (no op reads the series between them, so nothing can
//! tell; half of a batch's increments hit a series another one already hit, campaigns and
//! domains being few).
//!
//! Invariant: idempotent. Series members are event ids, scores are sums of contributions
//! named by the action's idempotency key, cooldown and limit claims remember their claimant
//! and grant it again: applying the same ops twice answers the same and changes nothing
//! more. That is what lets a redelivered event (after a crash or an aborted transaction)
//! be evaluated again without counting twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::ConnectionManager;
use redis::{Script, Value};

/// Redis round trips attempted by this process's [`RulesState`]s (failed ones included),
/// for the bench's round-trips-per-event figure.
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// Redis round trips attempted so far by every [`RulesState`] of this process.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

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
    /// Reading an engagement history from ClickHouse failed (the `history` condition).
    #[error("engagement history: {0}")]
    History(String),
}

/// One read or write of the shared state. Times are Unix milliseconds chosen by the caller
/// (the event's time: the engine has no clock, and a replay decides as the first run did).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Adds `member` (an event id) at `at_ms` to `series`, keeping entries for twice
    /// `retain_ms` (the longest window read) so a late event one window behind still counts
    /// right.
    Increment {
        series: String,
        member: String,
        at_ms: i64,
        retain_ms: i64,
    },
    /// Answers how many members of `series` lie in `(from_ms, until_ms]`.
    Count {
        series: String,
        from_ms: i64,
        until_ms: i64,
    },
    /// One atomic cooldown-and-limit claim for `claimant` (an event id) of `rule`: refused
    /// as cooled down when another event holds `cooldown` within its duration (by event
    /// time), as limited when `limit` executions are already counted in its window; else
    /// taken (both). The claimant asking again is granted again.
    Claim {
        rule: String,
        claimant: String,
        at_ms: i64,
        cooldown: Option<(String, i64)>,
        limit: Option<(u64, i64)>,
    },
    /// Adds `delta` to `recipient`'s score once per `contribution`, keeping contributions for
    /// twice `window_ms` (answers [`Answer::Done`]).
    ScoreAdd {
        recipient: String,
        contribution: String,
        delta: f64,
        at_ms: i64,
        window_ms: i64,
    },
    /// Answers `recipient`'s score: the sum of its contributions in `(at_ms - window_ms,
    /// at_ms]`.
    Score {
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
    /// Records `recipient` as suppressed in `scope`, with `record` (JSON: reason, origin,
    /// time) as the lookup's value.
    Suppress {
        scope: String,
        recipient: String,
        record: String,
    },
    /// Lifts `recipient`'s suppression in `scope`.
    Unsuppress { scope: String, recipient: String },
    /// Answers `recipient`'s suppression record in `scope`, if any.
    Suppressed { scope: String, recipient: String },
    /// Keeps a delayed action (`payload`, JSON) until `due_at_ms`; the same `id` again
    /// changes nothing.
    Schedule {
        id: String,
        due_at_ms: i64,
        payload: String,
    },
    /// Answers up to `max` scheduled actions due at `until_ms`, earliest first, without
    /// removing them (they stay until [`Op::Unschedule`], so a crash before their outputs
    /// were written fires them again, under the same action id).
    Due { until_ms: i64, max: usize },
    /// Forgets a scheduled action once its outputs are written (at `now_ms`), remembering
    /// its id for 30 days so a redelivered event does not schedule it again.
    Unschedule { id: String, now_ms: i64 },
}

/// What an atomic claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAnswer {
    Granted,
    CooledDown,
    Limited,
}

/// The answer to one [`Op`], in the order of the ops.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Count(u64),
    Claim(ClaimAnswer),
    Score(f64),
    Member(bool),
    Suppression(Option<String>),
    /// Due actions: (id, payload).
    Due(Vec<(String, String)>),
    Done,
}

/// KEYS[1] cooldown key, KEYS[2] limit key (same hash slot: both carry `{rule}`).
/// ARGV: claimant, at, cooldown ms (0: none), cooldown ttl ms, limit (0: none), limit
/// expired bound (inclusive), limit ttl ms. The cooldown's value is `<at> <claimant>`.
/// Answers 1 granted, 2 cooled down, 3 limited. A malformed cooldown value counts as none.
const CLAIM: &str = r"
local claimant, at = ARGV[1], tonumber(ARGV[2])
local cooldown, limit = tonumber(ARGV[3]), tonumber(ARGV[5])
if limit > 0 and redis.call('ZSCORE', KEYS[2], claimant) then return 1 end
local held_at = nil
if cooldown > 0 then
  local held = redis.call('GET', KEYS[1])
  local space = held and string.find(held, ' ', 1, true)
  if space then
    held_at = tonumber(string.sub(held, 1, space - 1))
    if string.sub(held, space + 1) == claimant then return 1 end
    if held_at and math.abs(at - held_at) < cooldown then return 2 end
  end
end
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])
  if redis.call('ZCARD', KEYS[2]) >= limit then return 3 end
  redis.call('ZADD', KEYS[2], ARGV[2], claimant)
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
-- The cooldown remembers the latest execution by event time: a late, older event that
-- was granted does not move it back.
if cooldown > 0 and (held_at == nil or at > held_at) then
  redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. claimant, 'PX', ARGV[4])
end
return 1
";

/// KEYS[1] the due times (sorted set), KEYS[2] the payloads (hash), KEYS[3] the ids
/// fired in the last 30 days (sorted set), one hash slot. ARGV: id, due at, payload.
/// An id already scheduled or fired is not scheduled again (a redelivered event).
const SCHEDULE: &str = r"
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
return 0
";

/// KEYS as [`SCHEDULE`]; ARGV: until, max. Answers id, payload, id, payload, …
const DUE: &str = r"
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  table.insert(out, id)
  table.insert(out, redis.call('HGET', KEYS[2], id) or '')
end
return out
";

/// KEYS as [`SCHEDULE`]; ARGV: id, now, fired ids older than this are forgotten.
const UNSCHEDULE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])
return 0
";

/// How long a fired action's id is remembered, so a redelivered event does not schedule
/// it again.
const FIRED_MEMORY_MS: i64 = 30 * DAY_MS;

/// Contributions are members `<contribution>|<delta>` (written by plain commands,
/// [`Op::ScoreAdd`]); the score is their sum in the window, returned as text (a Lua number
/// would be truncated to an integer reply). KEYS[1] score key; ARGV: at, count bound.
const SCORE: &str = r"
local sum = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[1])) do
  local delta = tonumber(string.match(member, '|([^|]*)$'))
  if delta then sum = sum + delta end
end
return tostring(sum)
";

/// The rules' state in one Redis, under a key prefix (tests use their own).
pub struct RulesState {
    connection: ConnectionManager,
    encoder: Encoder,
    /// Engagement histories (ClickHouse) for `history` conditions; without one, those
    /// conditions find no state and are false.
    history: Option<crate::history::HistoryReader>,
}

/// How ops become Redis commands: the key prefix and the scripts. Needs no connection, so a
/// batch's ops can be encoded ahead, off the path that waits on Redis ([`Encoded`]).
#[derive(Clone)]
pub struct Encoder {
    prefix: String,
    /// `[privacy] hash_key`: a suppression is also looked up by the recipient's keyed hash
    /// (an erased recipient stays suppressed without their address).
    recipient_hash_key: Option<Vec<u8>>,
    claim: Script,
    score: Script,
    schedule: Script,
    due: Script,
    unschedule: Script,
}

/// Ops encoded as one pipeline, for [`RulesState::apply_encoded`] with the same ops.
pub struct Encoded {
    pipe: redis::Pipeline,
    /// Per op, whether it has a reply: a run of increments is sent per series, its replies
    /// ignored (they only say the writes were taken).
    own_reply: Vec<bool>,
    replies: usize,
}

impl RulesState {
    /// `prefix` starts every key (e.g. `mailpipe:rules:`).
    pub fn new(connection: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            connection,
            encoder: Encoder {
                prefix: prefix.into(),
                recipient_hash_key: None,
                claim: Script::new(CLAIM),
                score: Script::new(SCORE),
                schedule: Script::new(SCHEDULE),
                due: Script::new(DUE),
                unschedule: Script::new(UNSCHEDULE),
            },
            history: None,
        }
    }

    /// Answers `history` conditions from ClickHouse through `reader`.
    pub fn with_history(mut self, reader: crate::history::HistoryReader) -> Self {
        self.history = Some(reader);
        self
    }

    /// The history reader, if any.
    pub fn history(&mut self) -> Option<&mut crate::history::HistoryReader> {
        self.history.as_mut()
    }

    /// Looks suppressions up by the recipient's keyed hash too (`[privacy] hash_key`;
    /// `mailpipe erase` keeps an erased recipient's suppression that way).
    pub fn with_recipient_hash_key(mut self, key: &str) -> Self {
        self.encoder.recipient_hash_key = (!key.is_empty()).then(|| key.as_bytes().to_vec());
        self
    }

    /// This state's encoder, to encode ops ahead ([`RulesState::apply_encoded`]).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Applies `ops` in one pipelined round trip and answers each, in order. Scripts the
    /// server does not know yet (first use, or Redis restarted) are loaded and the whole
    /// batch is sent again, which the ops' idempotence makes safe.
    pub async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Answer>, StateError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = self.encoder.encode(ops);
        self.apply_encoded(ops, &encoded).await
    }

    /// [`RulesState::apply`] of ops encoded ahead: `encoded` must be this state's
    /// [`Encoder::encode`] of `ops`.
    pub async fn apply_encoded(
        &mut self,
        ops: &[Op],
        encoded: &Encoded,
    ) -> Result<Vec<Answer>, StateError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        match self.send(ops, encoded).await {
            Err(StateError::Redis(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.load_scripts().await?;
                self.send(ops, encoded).await
            }
            other => other,
        }
    }

    /// Every suppressed recipient of `scope` with its record, read in pages (`HSCAN`: Redis
    /// stays responsive however long the list is).
    pub async fn suppressions(&mut self, scope: &str) -> Result<Vec<(String, String)>, StateError> {
        let key = self.encoder.key("suppressions", scope);
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.connection)
                .await?;
            out.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort();
        Ok(out)
    }

    async fn load_scripts(&mut self) -> Result<(), StateError> {
        let mut pipe = redis::pipe();
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        let e = &self.encoder;
        let scripts = [&e.claim, &e.score, &e.schedule, &e.due, &e.unschedule];
        for script in scripts {
            pipe.load_script(script);
        }
        let _: Vec<String> = pipe.query_async(&mut self.connection).await?;
        Ok(())
    }

    async fn send(&mut self, ops: &[Op], encoded: &Encoded) -> Result<Vec<Answer>, StateError> {
        if encoded.own_reply.len() != ops.len() {
            return Err(StateError::ReplyCount {
                sent: ops.len(),
                got: encoded.own_reply.len(),
            });
        }
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        let replies: Vec<Value> = encoded.pipe.query_async(&mut self.connection).await?;
        if replies.len() != encoded.replies {
            return Err(StateError::ReplyCount {
                sent: encoded.replies,
                got: replies.len(),
            });
        }
        let mut replies = replies.into_iter();
        ops.iter()
            .zip(&encoded.own_reply)
            .map(|(op, own)| match own {
                false => Ok(Answer::Done),
                true => answer(op, replies.next().unwrap_or(Value::Nil)),
            })
            .collect()
    }
}

impl Encoder {
    /// `ops` as one pipeline.
    pub fn encode(&self, ops: &[Op]) -> Encoded {
        let mut pipe = redis::pipe();
        let mut own_reply = Vec::with_capacity(ops.len());
        let (mut replies, mut at) = (0, 0);
        while at < ops.len() {
            let run = ops[at..]
                .iter()
                .take_while(|op| matches!(op, Op::Increment { .. }))
                .count();
            if run == 0 {
                let has_reply = self.push(&mut pipe, &ops[at]);
                own_reply.push(has_reply);
                replies += usize::from(has_reply);
                at += 1;
            } else {
                self.push_increments(&mut pipe, &ops[at..at + run]);
                own_reply.extend(std::iter::repeat_n(false, run));
                at += run;
            }
        }
        Encoded {
            pipe,
            own_reply,
            replies,
        }
    }

    /// A run of [`Op::Increment`]s, per series in the order they first appear: adds every
    /// member (NX: a redelivered event is not added twice), forgets members no window of
    /// any of them can need any more (the oldest bound among them), keeps the key as long
    /// as the longest of them asks. No replies: a failed command still fails the whole
    /// pipeline (the client checks ignored replies for errors too).
    fn push_increments(&self, pipe: &mut redis::Pipeline, run: &[Op]) {
        struct Series<'o> {
            name: &'o str,
            members: Vec<(i64, &'o str)>,
            trim_below: i64,
            retain: i64,
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(run.len());
        let mut series: Vec<Series> = Vec::with_capacity(run.len());
        for op in run {
            let Op::Increment {
                series: name,
                member,
                at_ms,
                retain_ms,
            } = op
            else {
                continue;
            };
            let retain = (*retain_ms).max(1).saturating_mul(2);
            let trim_below = trim_point(*at_ms).saturating_sub(retain);
            let slot = *index.entry(name.as_str()).or_insert_with(|| {
                series.push(Series {
                    name,
                    members: Vec::new(),
                    trim_below,
                    retain,
                });
                series.len() - 1
            });
            let entry = &mut series[slot];
            entry.members.push((*at_ms, member));
            entry.trim_below = entry.trim_below.min(trim_below);
            entry.retain = entry.retain.max(retain);
        }
        for entry in &series {
            let key = self.key("series", entry.name);
            pipe.cmd("ZADD")
                .arg(&key)
                .arg("NX")
                .arg(&entry.members)
                .ignore();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(entry.trim_below)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(entry.retain).ignore();
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// Adds `op`'s commands; answers whether it has a reply (writes whose replies only say
    /// they were taken have none).
    fn push(&self, pipe: &mut redis::Pipeline, op: &Op) -> bool {
        match op {
            Op::Increment { .. } => {
                self.push_increments(pipe, std::slice::from_ref(op));
                return false;
            }
            Op::Count {
                series,
                from_ms,
                until_ms,
            } => {
                pipe.zcount(self.key("series", series), format!("({from_ms}"), until_ms);
            }
            Op::Claim {
                rule,
                claimant,
                at_ms,
                cooldown,
                limit,
            } => {
                // `{rule}` puts both keys in one cluster hash slot, as a script needs.
                let (cooldown_key, cooldown_ms) = match cooldown {
                    Some((value, ms)) => (format!("{{{rule}}}:{value}"), (*ms).max(1)),
                    None => (format!("{{{rule}}}:-"), 0),
                };
                let (max, window_ms) = limit.map_or((0, 1), |(max, ms)| (max, ms.max(1)));
                // The cooldown is judged by event time; its key outlives the cooldown by a
                // day so a lagging stage still finds it.
                let cooldown_ttl = cooldown_ms.saturating_mul(2).saturating_add(DAY_MS);
                pipe.invoke_script(
                    self.claim
                        .key(self.key("cooldown", &cooldown_key))
                        .key(self.key("limit", &format!("{{{rule}}}")))
                        .arg(claimant)
                        .arg(at_ms)
                        .arg(cooldown_ms)
                        .arg(cooldown_ttl)
                        .arg(max)
                        .arg(trim_point(*at_ms).saturating_sub(window_ms))
                        .arg(window_ms.saturating_mul(2)),
                );
            }
            Op::ScoreAdd {
                recipient,
                contribution,
                delta,
                at_ms,
                window_ms,
            } => {
                // Plain commands, as for a counter increment (each idempotent, no reader can
                // tell them from one script, and a third of a script's cost): add the
                // contribution once, forget those no window can need, renew the expiry.
                let key = self.key("score", recipient);
                let window_ms = (*window_ms).max(1);
                pipe.cmd("ZADD")
                    .arg(&key)
                    .arg("NX")
                    .arg(at_ms)
                    .arg(format!("{contribution}|{delta}"))
                    .ignore();
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(trim_point(*at_ms).saturating_sub(window_ms.saturating_mul(2)))
                    .ignore();
                pipe.cmd("PEXPIRE")
                    .arg(&key)
                    .arg(window_ms.saturating_mul(2))
                    .ignore();
                return false;
            }
            Op::Score {
                recipient,
                at_ms,
                window_ms,
            } => {
                self.push_score(pipe, recipient, *at_ms, *window_ms);
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
                let key = self.key("suppressions", scope);
                match &self.recipient_hash_key {
                    Some(hash_key) => {
                        let hash = mailpipe_model::privacy::recipient_hash(hash_key, recipient);
                        pipe.cmd("HMGET").arg(key).arg(recipient).arg(hash);
                    }
                    None => {
                        pipe.hget(key, recipient);
                    }
                }
            }
            Op::Schedule {
                id,
                due_at_ms,
                payload,
            } => {
                let [times, payloads, fired] = self.schedule_keys();
                pipe.invoke_script(
                    self.schedule
                        .key(times)
                        .key(payloads)
                        .key(fired)
                        .arg(id)
                        .arg(due_at_ms)
                        .arg(payload),
                );
            }
            Op::Due { until_ms, max } => {
                let [times, payloads, _] = self.schedule_keys();
                pipe.invoke_script(self.due.key(times).key(payloads).arg(until_ms).arg(max));
            }
            Op::Unschedule { id, now_ms } => {
                let [times, payloads, fired] = self.schedule_keys();
                pipe.invoke_script(
                    self.unschedule
                        .key(times)
                        .key(payloads)
                        .key(fired)
                        .arg(id)
                        .arg(now_ms)
                        .arg(now_ms.saturating_sub(FIRED_MEMORY_MS)),
                );
            }
        }
        true
    }

    /// The schedule's keys (due times, payloads, fired ids), in one cluster hash slot.
    fn schedule_keys(&self) -> [String; 3] {
        ["times", "payloads", "fired"].map(|k| self.key("schedule", &format!("{{due}}:{k}")))
    }

    fn push_score(&self, pipe: &mut redis::Pipeline, recipient: &str, at_ms: i64, window_ms: i64) {
        let window_ms = window_ms.max(1);
        pipe.invoke_script(
            self.score
                .key(self.key("score", recipient))
                .arg(at_ms)
                .arg(format!("({}", at_ms.saturating_sub(window_ms))),
        );
    }
}

const DAY_MS: i64 = 86_400_000;

/// Where trimming counts back from: the entry's time, but never later than the wall clock,
/// so one event dated in the future (a provider's skewed clock, seconds taken for
/// milliseconds) cannot trim away a series, a score or a limit's history.
fn trim_point(at_ms: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| {
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        });
    at_ms.min(now)
}

fn answer(op: &Op, reply: Value) -> Result<Answer, StateError> {
    // Only the reply's shape: a reply can hold scheduled payloads (webhook headers,
    // recipients), which never go into an error or a log line.
    let unexpected = |name: &'static str, reply: &Value| StateError::Reply {
        op: name,
        reply: shape(reply),
    };
    Ok(match op {
        Op::Count { .. } => match reply {
            Value::Int(n) => Answer::Count(n.max(0) as u64),
            other => return Err(unexpected("count", &other)),
        },
        Op::Claim { .. } => match reply {
            Value::Int(1) => Answer::Claim(ClaimAnswer::Granted),
            Value::Int(2) => Answer::Claim(ClaimAnswer::CooledDown),
            Value::Int(3) => Answer::Claim(ClaimAnswer::Limited),
            other => return Err(unexpected("claim", &other)),
        },
        Op::Score { .. } => {
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
            // HGET (one value) or HMGET by address and by hash (the first one held).
            let record: Option<String> = match &reply {
                Value::Array(values) => values
                    .iter()
                    .find(|v| !matches!(v, Value::Nil))
                    .map(|v| redis::from_redis_value(v.clone()))
                    .transpose(),
                other => redis::from_redis_value(other.clone()),
            }
            .map_err(|_| unexpected("suppressed", &reply))?;
            Answer::Suppression(record)
        }
        Op::Due { .. } => {
            let flat: Vec<String> =
                redis::from_redis_value(reply.clone()).map_err(|_| unexpected("due", &reply))?;
            let pairs = flat
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            Answer::Due(pairs)
        }
        Op::Increment { .. }
        | Op::ScoreAdd { .. }
        | Op::Schedule { .. }
        | Op::Unschedule { .. }
        | Op::SegmentAdd { .. }
        | Op::SegmentRemove { .. }
        | Op::Suppress { .. }
        | Op::Unsuppress { .. } => Answer::Done,
    })
}

/// A reply's kind and size, never its content.
fn shape(reply: &Value) -> String {
    match reply {
        Value::Nil => "nil".into(),
        Value::Int(_) => "an integer".into(),
        Value::BulkString(b) => format!("a string of {} bytes", b.len()),
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::SimpleString(_) => "a status".into(),
        Value::Okay => "OK".into(),
        _ => "another kind of reply".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_the_wrong_shape_are_errors_not_panics() {
        let count = Op::Count {
            series: "s".into(),
            from_ms: 0,
            until_ms: 1,
        };
        assert!(answer(&count, Value::Nil).is_err());
        let score = Op::Score {
            recipient: "r".into(),
            at_ms: 0,
            window_ms: 1,
        };
        assert!(answer(&score, Value::Nil).is_err());
        let claim = Op::Claim {
            rule: "r".into(),
            claimant: "e".into(),
            at_ms: 0,
            cooldown: None,
            limit: None,
        };
        assert!(answer(&claim, Value::Int(7)).is_err());
    }
}
