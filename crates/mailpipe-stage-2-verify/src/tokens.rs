//! Mailgun one-time tokens, recorded in Redis so that every verify instance (and every
//! restart) sees them: `mail.raw` is keyed by request id, so re-posts of one token land on
//! any partition and any instance.
//!
//! One call per Mailgun request: `SET {prefix}vt:<hash> <request id> NX EX <ttl> GET`
//! (Redis ≥ 7.0) answers, atomically, nil (first use: this request recorded it), this
//! request's own id (a redelivery of the same `mail.raw` record after a crash or rebalance:
//! not a replay) or another request's id (a replay: rejected).
//!
//! Invariant: nothing passes unchecked. While Redis does not answer, the call is retried
//! with backoff: the handler holds (and, through the in-flight limit, the consumer pauses),
//! so no request is verified without its token being recorded and none is rejected for an
//! outage.

use std::time::Duration;

use mailpipe_runtime::backoff;
use mailpipe_telemetry::names;
use mailpipe_verify_core::{OneTimeToken, Reason, Rejected, Rejection, Verified};
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// `{prefix}vt:` + hex of the first 16 bytes of SHA-256 over the provider and the token
/// (length-prefixed): bounded size whatever the token, and no sender bytes in key names.
/// Not per source: a token captured from one source is refused on every other one too.
pub fn token_key(prefix: &str, provider: &str, token: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [provider, token] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}vt:{hex}")
}

/// How long Redis keeps a token: what the library asks for, plus how far behind its
/// receipt the stage records it (a lagging stage still covers the whole window).
pub fn ttl_secs(token: &OneTimeToken, received_at_secs: i64, now_secs: i64) -> u64 {
    let lag = u64::try_from(now_secs.saturating_sub(received_at_secs)).unwrap_or(0);
    token.remember_for_secs.saturating_add(lag).max(1)
}

/// What Redis' previous value says about a request's use of a token.
pub fn judge(previous: Option<&str>, request_id: &str) -> Result<(), Rejection> {
    match previous {
        None => Ok(()),
        Some(id) if id == request_id => Ok(()),
        Some(_) => Err(Rejection::new(
            Reason::Replayed,
            "token was already used by another request",
        )),
    }
}

/// The token store of one stage process.
pub struct UsedTokens {
    connection: ConnectionManager,
    key_prefix: String,
}

impl UsedTokens {
    /// Connects lazily, so a Redis that is down at start-up only holds the first Mailgun
    /// request.
    pub fn new(url: &str, key_prefix: &str, timeout: Duration) -> anyhow::Result<UsedTokens> {
        Ok(UsedTokens {
            connection: mailpipe_runtime::redis::connect(url, timeout)?,
            key_prefix: key_prefix.to_string(),
        })
    }

    /// A verified request carrying a one-time token (Mailgun) is accepted only once the
    /// token is recorded in Redis as this request's; another request's token is a replay.
    pub async fn accept(
        &mut self,
        provider: &str,
        verified: Verified,
    ) -> Result<Verified, Rejected> {
        let Some(token) = verified.one_time_token() else {
            return Ok(verified);
        };
        let request = verified.request();
        let now_secs = mailpipe_stage::now_ms() / 1000;
        let ttl = ttl_secs(token, request.received_at_secs(), now_secs);
        match self
            .record(provider, &token.token, &request.request_id, ttl)
            .await
        {
            Ok(()) => Ok(verified),
            Err(rejection) => Err(verified.reject(rejection)),
        }
    }

    /// Records `token` as used by `request_id` for `ttl` seconds, unless another request
    /// already did (then `replayed`). Retries with backoff until Redis answers.
    pub async fn record(
        &mut self,
        provider: &str,
        token: &str,
        request_id: &str,
        ttl: u64,
    ) -> Result<(), Rejection> {
        let mut command = redis::cmd("SET");
        command
            .arg(token_key(&self.key_prefix, provider, token))
            .arg(request_id)
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            .arg("GET");
        let mut attempt = 0u32;
        loop {
            let reply: redis::RedisResult<Option<String>> =
                command.query_async(&mut self.connection).await;
            match reply {
                Ok(previous) => return judge(previous.as_deref(), request_id),
                Err(e) => {
                    metrics::counter!(names::VERIFY_REDIS_ERRORS).increment(1);
                    tracing::warn!(error = %e, attempt,
                        "redis unavailable; Mailgun token not recorded, holding and retrying");
                }
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_and_redelivery_pass_another_request_is_a_replay() {
        assert_eq!(judge(None, "r1"), Ok(()));
        assert_eq!(judge(Some("r1"), "r1"), Ok(()), "redelivery");
        assert_eq!(
            judge(Some("r1"), "r2").unwrap_err().reason,
            Reason::Replayed
        );
    }

    #[test]
    fn keys_are_prefixed_bounded_and_separate_provider_from_token() {
        let key = token_key("mp:", "mailgun", &"t".repeat(256));
        assert!(key.starts_with("mp:vt:"));
        assert_eq!(key.len(), "mp:vt:".len() + 32);
        assert_eq!(key, token_key("mp:", "mailgun", &"t".repeat(256)));
        assert_ne!(token_key("", "mailgun", "a"), token_key("", "mailgun", "b"));
        assert_ne!(token_key("", "ab", "c"), token_key("", "a", "bc"));
    }

    #[test]
    fn ttl_adds_the_stages_lag() {
        let token = OneTimeToken {
            token: "t".into(),
            remember_for_secs: 600,
        };
        assert_eq!(ttl_secs(&token, 1000, 1000), 600);
        assert_eq!(ttl_secs(&token, 1000, 4600), 4200, "an hour behind");
        assert_eq!(ttl_secs(&token, 1000, 900), 600, "clock behind: no lag");
    }
}
