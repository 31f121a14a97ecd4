//! The one Redis connection setup (the receiver's rate limits, dedupe's seen ids, verify's
//! Mailgun tokens): a lazily connecting connection manager with bounded timeouts. While
//! Redis does not answer, callers wait [`crate::backoff`] between tries.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Connects lazily, so a Redis that is down at start-up only holds (or, for the receiver's
/// limiter, skips) the first work that needs it. `timeout` bounds both the connection and
/// each response.
pub fn connect(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).context("redis.url")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    ConnectionManager::new_lazy_with_config(client, config)
        .context("creating the Redis connection manager")
}
