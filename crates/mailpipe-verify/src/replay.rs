//! Refusing replays of one-time tokens (Mailgun signs `timestamp ‖ token`, not the body, so a
//! captured triple could be re-posted with another body). A pure, bounded data structure;
//! time comes from the caller (the request's receipt time), never from a clock inside.
//!
//! Per process: each verify replica remembers only the tokens it verified itself. A replay
//! routed to another partition/replica is not caught here; downstream dedupe still counts
//! each event once.

use std::collections::{BTreeSet, HashMap};

/// Tokens seen recently, each remembered until its signed timestamp leaves the tolerance
/// window (after which the request would be `stale_timestamp` anyway).
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    /// token → (forget at, request id that used it).
    tokens: HashMap<String, (i64, String)>,
    /// (forget at, token), to expire and evict in time order.
    by_expiry: BTreeSet<(i64, String)>,
}

/// The token was already used by a different request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AlreadyUsed;

impl ReplayCache {
    /// Remembers at most `capacity` tokens; past it the soonest-expiring are forgotten first
    /// (a flood of valid tokens can thus push out older ones: the bound protects memory).
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            tokens: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Records `token` as used by `request_id` until `forget_at`; refuses it when another
    /// request used it and it is not yet forgotten. The same request id again (a redelivery
    /// of the same `mail.raw` record) is not a replay. `now` and `forget_at` are Unix seconds.
    pub(crate) fn use_token(
        &mut self,
        token: &str,
        request_id: &str,
        forget_at: i64,
        now: i64,
    ) -> Result<(), AlreadyUsed> {
        self.forget_expired(now);
        if let Some((until, used_by)) = self.tokens.get(token) {
            if *until >= now && used_by != request_id {
                return Err(AlreadyUsed);
            }
            let key = (*until, token.to_string());
            self.by_expiry.remove(&key);
        }
        self.tokens
            .insert(token.to_string(), (forget_at, request_id.to_string()));
        self.by_expiry.insert((forget_at, token.to_string()));
        while self.tokens.len() > self.capacity {
            let Some(soonest) = self.by_expiry.pop_first() else {
                break;
            };
            self.tokens.remove(&soonest.1);
        }
        Ok(())
    }

    fn forget_expired(&mut self, now: i64) {
        while let Some((until, _)) = self.by_expiry.first() {
            if *until >= now {
                break;
            }
            if let Some((_, token)) = self.by_expiry.pop_first() {
                self.tokens.remove(&token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_by_another_request_is_refused_until_forgotten() {
        let mut cache = ReplayCache::new(10);
        assert_eq!(cache.use_token("t", "req-1", 100, 50), Ok(()));
        assert_eq!(
            cache.use_token("t", "req-1", 100, 60),
            Ok(()),
            "redelivery of the same record"
        );
        assert_eq!(cache.use_token("t", "req-2", 100, 60), Err(AlreadyUsed));
        assert_eq!(
            cache.use_token("t", "req-2", 100, 100),
            Err(AlreadyUsed),
            "still remembered at forget_at"
        );
        assert_eq!(
            cache.use_token("t", "req-3", 300, 101),
            Ok(()),
            "forgotten after"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn bounded_by_evicting_soonest_expiry() {
        let mut cache = ReplayCache::new(2);
        cache.use_token("a", "1", 100, 0).unwrap();
        cache.use_token("b", "2", 300, 0).unwrap();
        cache.use_token("c", "3", 200, 0).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.use_token("a", "9", 100, 0), Ok(()), "a was evicted");
        assert_eq!(cache.use_token("b", "9", 300, 0), Err(AlreadyUsed));
        assert!(!cache.is_empty());
    }

    #[test]
    fn expired_entries_are_dropped_on_use() {
        let mut cache = ReplayCache::new(100);
        for i in 0..50 {
            cache.use_token(&format!("t{i}"), "r", 10, 0).unwrap();
        }
        cache.use_token("late", "r", 1000, 500).unwrap();
        assert_eq!(cache.len(), 1);
    }
}
