//! Engagement histories for the rules' `history` condition: read from ClickHouse
//! (`mailpipe_clickhouse::engagement`) and kept for `[insight] history_cache_seconds`, so a
//! recipient seen again soon costs no query. A history is as fresh as `email_events` (the
//! aggregate stage's load delay) plus the cache's age; the README says so.
//!
//! A ClickHouse failure is a state failure like a Redis one: the batch is retried and the
//! partition held, nothing is skipped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mailpipe_insight::history::{EngagementHistory, Scope};
use mailpipe_rules_core::KeyKind;
use mailpipe_settings::Settings;

use crate::state::StateError;

/// Reads and caches histories.
pub struct HistoryReader {
    client: clickhouse::Client,
    history_days: u32,
    timeout: Duration,
    ttl: Duration,
    capacity: usize,
    /// `[privacy] hash_recipients`: `email_events` holds hashed recipients, so a recipient
    /// is looked up by its hashed form.
    hash_key: Option<Vec<u8>>,
    cache: HashMap<(KeyKind, String), (Instant, EngagementHistory)>,
}

impl HistoryReader {
    pub fn from_settings(settings: &Settings) -> HistoryReader {
        let insight = &settings.insight;
        let privacy = &settings.privacy;
        HistoryReader {
            client: mailpipe_clickhouse::client(&settings.clickhouse)
                .with_database(&settings.clickhouse.database),
            history_days: insight.history_days,
            timeout: Duration::from_millis(insight.query_timeout_ms),
            ttl: Duration::from_secs(insight.history_cache_seconds),
            capacity: insight.history_cache_entries,
            hash_key: privacy
                .hash_recipients
                .then(|| privacy.hash_key.as_bytes().to_vec()),
            cache: HashMap::new(),
        }
    }

    /// The history of `key` (a recipient or a domain per `per`) before `as_of_ms` (the
    /// event's time), from the cache when it was read less than the cache's time ago and for
    /// a time at most that far from `as_of_ms` (a backlog spanning days is not answered with
    /// one history).
    pub async fn get(
        &mut self,
        per: KeyKind,
        key: &str,
        as_of_ms: i64,
    ) -> Result<&EngagementHistory, StateError> {
        let cache_key = (per, key.to_string());
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let fresh = self.cache.get(&cache_key).is_some_and(|(at, h)| {
            at.elapsed() < self.ttl && (h.as_of_ms - as_of_ms).abs() <= ttl_ms
        });
        if !fresh {
            let scope = match per {
                KeyKind::Domain => Scope::Domain,
                _ => Scope::Recipient,
            };
            let stored =
                mailpipe_clickhouse::engagement::stored_key(scope, key, self.hash_key.as_deref());
            let query = mailpipe_clickhouse::engagement::history(
                &self.client,
                scope,
                &stored,
                as_of_ms,
                self.history_days,
            );
            let history = match tokio::time::timeout(self.timeout, query).await {
                Ok(Ok(history)) => history,
                Ok(Err(e)) => return Err(StateError::History(e.to_string())),
                Err(_) => {
                    return Err(StateError::History(format!(
                        "query timed out after {:?}",
                        self.timeout
                    )))
                }
            };
            if self.cache.len() >= self.capacity {
                let ttl = self.ttl;
                self.cache.retain(|_, (at, _)| at.elapsed() < ttl);
                if self.cache.len() >= self.capacity {
                    // Still full of fresh entries: start over rather than track recency.
                    self.cache.clear();
                }
            }
            self.cache
                .insert(cache_key.clone(), (Instant::now(), history));
        }
        Ok(&self.cache[&cache_key].1)
    }
}
