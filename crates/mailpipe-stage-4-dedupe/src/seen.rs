//! Seen event ids in Redis: one pipelined `SET key coordinates NX EX ttl GET` per batch to
//! claim, one pipelined `SET key coordinates:c XX KEEPTTL` per batch of acknowledged
//! outputs to confirm.
//!
//! The value of an id's key is the input coordinates (`partition:offset`) of the message
//! that first claimed it, suffixed with `:c` once that message's output was acknowledged by
//! Kafka ([`confirmed`]). `SET … NX GET` (Redis ≥ 7.0) answers, atomically per key, either
//! nil (this call claimed the id: new) or the value already there ([`verdict`]):
//!
//! - this message's own coordinates, unconfirmed: the id was claimed by this very message
//!   before a crash or a failed round trip, and its output may never have been acknowledged:
//!   it is emitted again (never lost). That also makes a retried pipeline idempotent: the
//!   keys a half-executed attempt set answer with their own coordinates;
//! - this message's own coordinates, confirmed: its output is known written; the
//!   redelivery is completed without output;
//! - anything else: a duplicate.
//!
//! In exactly-once mode "acknowledged" means "committed in the transaction that also
//! committed the input's offset", so a redelivery always finds its claim unconfirmed.
//!
//! The confirmation is an optimization. It is written after the outputs' acks, and a failed
//! one (Redis down) is only logged and counted: the unconfirmed value then costs at most an
//! extra copy on a redelivery, as without it. Overwriting with `XX` cannot hide an id: the
//! write happens only after this id's output was acknowledged, whatever value it replaces;
//! `XX` never recreates an expired key and `KEEPTTL` keeps the claim's expiry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mailpipe_runtime::backoff;
use mailpipe_telemetry::names;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// Redis round trips attempted by this process (failed ones included), for the bench's
/// round-trips-per-event figure.
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// Redis round trips attempted so far by every [`SeenIds`] of this process.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

/// What to do with one event, from its key's previous value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First sighting: forward.
    New,
    /// Claimed earlier by this same message, output not confirmed (redelivered after a
    /// crash before the confirmation): forward again.
    Redelivered,
    /// Claimed earlier by this same message whose output was acknowledged (redelivered after
    /// a crash between the confirmation and the commit): complete without output.
    Confirmed,
    /// Claimed by another message: complete without output.
    Duplicate,
}

/// Classifies the reply of `SET … NX GET` for a message whose coordinates are `own`.
pub fn verdict(previous: Option<&[u8]>, own: &[u8]) -> Verdict {
    match previous {
        None => Verdict::New,
        Some(value) if value == own => Verdict::Redelivered,
        Some(value) if value.strip_suffix(CONFIRMED_SUFFIX.as_bytes()) == Some(own) => {
            Verdict::Confirmed
        }
        Some(_) => Verdict::Duplicate,
    }
}

/// Appended to the coordinates once the claiming message's output is acknowledged. No
/// coordinates end with it (they end with a digit), so the two states cannot be confused.
const CONFIRMED_SUFFIX: &str = ":c";

/// The value marking `coordinates`' output as acknowledged by Kafka.
pub fn confirmed(coordinates: &str) -> String {
    format!("{coordinates}{CONFIRMED_SUFFIX}")
}

/// The value stored under an id's key: where the claiming message sits in the input.
pub fn coordinates(partition: i32, offset: i64) -> String {
    format!("{partition}:{offset}")
}

/// `{prefix}dd:` + the first 16 bytes of SHA-256 over provider, source and event id, each
/// length-prefixed so that no two different triples hash the same input. 16 bytes keep
/// collisions out of reach (2^64 ids for a 50 % chance) at a third of a hex id's size.
pub fn dedupe_key(prefix: &str, provider: &str, source: &str, event_id: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in [provider, source, event_id] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut key = Vec::with_capacity(prefix.len() + 3 + 16);
    key.extend_from_slice(prefix.as_bytes());
    key.extend_from_slice(b"dd:");
    key.extend_from_slice(&digest[..16]);
    key
}

/// An id claimed by a message: its key and the message's coordinates.
pub type Claim = (Vec<u8>, String);

/// The seen-id store of one stage process.
pub struct SeenIds {
    connection: ConnectionManager,
    ttl_seconds: u64,
}

/// Writes confirmations; a cheap clone of the store's connection, for the tasks that wait
/// for the outputs' acknowledgements.
#[derive(Clone)]
pub struct Confirmations {
    connection: ConnectionManager,
}

impl Confirmations {
    /// Marks every claim's output as acknowledged, in one pipelined round trip, once. Never
    /// retried and never blocking anything: on failure (Redis down or slow, bounded by
    /// `redis_timeout_ms`) the ids stay unconfirmed, which costs at most an extra copy on a
    /// redelivery.
    pub async fn confirm(&mut self, claims: &[Claim]) {
        if claims.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (key, coords) in claims {
            pipe.cmd("SET")
                .arg(key)
                .arg(confirmed(coords))
                .arg("XX")
                .arg("KEEPTTL")
                .ignore();
        }
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let reply: redis::RedisResult<()> = pipe.query_async(&mut self.connection).await;
        let outcome = if reply.is_ok() { "ok" } else { "error" };
        metrics::histogram!(names::DEDUPE_REDIS_SECONDS, "step" => "confirm", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        match reply {
            Ok(()) => {
                metrics::counter!(names::DEDUPE_CONFIRMED).increment(claims.len() as u64);
            }
            Err(e) => {
                metrics::counter!(names::DEDUPE_CONFIRM_ERRORS).increment(1);
                tracing::warn!(error = %e, events = claims.len(),
                    "redis unavailable; outputs acknowledged but not confirmed (a redelivery \
                     would emit them again)");
            }
        }
    }
}

impl SeenIds {
    /// Connects lazily, so a Redis that is down at start-up only delays the first batch.
    pub fn new(url: &str, ttl_seconds: u64, timeout: Duration) -> anyhow::Result<SeenIds> {
        Ok(SeenIds {
            connection: mailpipe_runtime::redis::connect(url, timeout)?,
            ttl_seconds,
        })
    }

    /// A handle writing confirmations over the same connection.
    pub fn confirmations(&self) -> Confirmations {
        Confirmations {
            connection: self.connection.clone(),
        }
    }

    /// Claims every `(key, coordinates)` in one pipelined round trip and returns their
    /// verdicts in order (a key repeated within the batch is a duplicate after its first
    /// occurrence, since Redis runs the pipeline in order). Retries with backoff until Redis
    /// answers: meanwhile the batch's acks stay open, so the consumer loop pauses the
    /// partitions once their in-flight limit is reached. Nothing is let through unchecked.
    pub async fn claim(&mut self, claims: &[Claim]) -> Vec<Verdict> {
        if claims.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        for (key, coords) in claims {
            pipe.cmd("SET")
                .arg(key)
                .arg(coords)
                .arg("NX")
                .arg("EX")
                .arg(self.ttl_seconds)
                .arg("GET");
        }
        let mut attempt = 0u32;
        loop {
            ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let reply: redis::RedisResult<Vec<Option<Vec<u8>>>> =
                pipe.query_async(&mut self.connection).await;
            let outcome = if reply.is_ok() { "ok" } else { "error" };
            metrics::histogram!(names::DEDUPE_REDIS_SECONDS, "step" => "claim", "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            match reply {
                Ok(previous) if previous.len() == claims.len() => {
                    return claims
                        .iter()
                        .zip(&previous)
                        .map(|((_, own), prev)| verdict(prev.as_deref(), own.as_bytes()))
                        .collect();
                }
                Ok(previous) => {
                    // Cannot happen with a well-behaved server; never guess verdicts.
                    tracing::error!(
                        sent = claims.len(),
                        got = previous.len(),
                        "redis answered a pipeline with the wrong number of replies; retrying"
                    );
                }
                Err(e) => tracing::warn!(error = %e, attempt, events = claims.len(),
                    "redis unavailable; batch held, retrying"),
            }
            metrics::counter!(names::DEDUPE_REDIS_ERRORS).increment(1);
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_stored_coordinates() {
        assert_eq!(verdict(None, b"3:17"), Verdict::New);
        assert_eq!(verdict(Some(b"3:17"), b"3:17"), Verdict::Redelivered);
        assert_eq!(verdict(Some(b"3:16"), b"3:17"), Verdict::Duplicate);
        assert_eq!(verdict(Some(b"13:7"), b"3:17"), Verdict::Duplicate);
    }

    #[test]
    fn confirmed_coordinates_are_recognised_only_as_ours() {
        assert_eq!(confirmed("3:17"), "3:17:c");
        let own = coordinates(3, 17);
        let mine = confirmed(&own);
        assert_eq!(
            verdict(Some(mine.as_bytes()), own.as_bytes()),
            Verdict::Confirmed
        );
        // Another message's confirmed claim is a duplicate, whatever the overlap.
        for other in [
            "3:16:c", "13:17:c", "3:171:c", "3:1:c", ":c", "c", "3:17:c:c", "3:17c",
        ] {
            assert_eq!(
                verdict(Some(other.as_bytes()), own.as_bytes()),
                Verdict::Duplicate,
                "{other}"
            );
        }
        // The unconfirmed and confirmed forms of one message never equal each other.
        assert_ne!(mine, own);
        assert_eq!(
            verdict(Some(own.as_bytes()), own.as_bytes()),
            Verdict::Redelivered
        );
    }

    #[test]
    fn keys_are_prefixed_compact_and_separate_their_parts() {
        let key = dedupe_key("mp:", "sendgrid", "main", "ev-1");
        assert!(key.starts_with(b"mp:dd:"));
        assert_eq!(key.len(), "mp:dd:".len() + 16);
        assert_eq!(key, dedupe_key("mp:", "sendgrid", "main", "ev-1"));
        assert_ne!(key, dedupe_key("mp:", "sendgrid", "main", "ev-2"));
        assert_ne!(key, dedupe_key("mp:", "sendgrid", "other", "ev-1"));
        assert_ne!(key, dedupe_key("mp:", "mailgun", "main", "ev-1"));
        // Length prefixes: moving a character across a boundary changes the key.
        assert_ne!(
            dedupe_key("", "ab", "c", "x"),
            dedupe_key("", "a", "bc", "x")
        );
    }

    #[test]
    fn coordinates_name_partition_and_offset() {
        assert_eq!(coordinates(3, 17), "3:17");
    }
}
