//! The stages' way to Redis (dedupe's seen ids, verify's Mailgun tokens): one lazily
//! connecting connection manager with bounded timeouts, and the backoff used while Redis
//! does not answer (the stage holds; nothing passes unchecked).

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Connects lazily, so a Redis that is down at start-up only holds the first work that
/// needs it. `timeout` bounds both the connection and each response.
pub fn connect(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).context("redis.url")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    ConnectionManager::new_lazy_with_config(client, config)
        .context("creating the Redis connection manager")
}

/// Doubles from 100 ms up to 5 s, so a recovered Redis is used again within 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(6), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }
}
