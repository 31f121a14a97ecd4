//! What a consumer loop tells about its health, for the stage's `GET /readyz`: whether it
//! has joined its group, how many partitions it holds, how much work is in flight and when
//! it last completed an input.
//!
//! Ready means "assigned and making progress, or idle": the loop has joined its group
//! (an empty assignment counts — a replica beyond the partition count is idle, not broken)
//! and either nothing is in flight or an input was completed within the stall bound. A
//! stage whose store is down (ClickHouse, Redis) holds its inputs, completes nothing and
//! turns not ready once the bound has passed.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared, lock-free view of one consumer loop. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct LoopHealth(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    joined: AtomicBool,
    stopping: AtomicBool,
    assigned: AtomicUsize,
    in_flight: AtomicUsize,
    /// Unix ms of the last completed input, or of the moment work arrived while idle.
    last_progress_ms: AtomicI64,
}

/// A copy of the health at one moment, for [`readiness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub joined: bool,
    pub stopping: bool,
    pub assigned: usize,
    pub in_flight: usize,
    pub last_progress_ms: i64,
}

/// The answer of `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready(String),
    NotReady(String),
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready(_))
    }

    pub fn detail(&self) -> &str {
        match self {
            Readiness::Ready(d) | Readiness::NotReady(d) => d,
        }
    }
}

impl LoopHealth {
    /// A group assignment (or the first, possibly empty, one) took effect.
    pub(crate) fn assigned(&self, partitions: usize) {
        self.0.assigned.store(partitions, Ordering::Relaxed);
        self.0.joined.store(true, Ordering::Relaxed);
    }

    /// The loop's work in flight changed; `progressed` when an input was completed.
    pub(crate) fn work(&self, in_flight: usize, progressed: bool) {
        let before = self.0.in_flight.swap(in_flight, Ordering::Relaxed);
        // Work arriving at an idle loop starts the stall clock now, not at the last
        // completion long ago.
        if progressed || before == 0 {
            self.0.last_progress_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// The loop is draining for shutdown: not ready any more.
    pub(crate) fn stopping(&self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            joined: self.0.joined.load(Ordering::Relaxed),
            stopping: self.0.stopping.load(Ordering::Relaxed),
            assigned: self.0.assigned.load(Ordering::Relaxed),
            in_flight: self.0.in_flight.load(Ordering::Relaxed),
            last_progress_ms: self.0.last_progress_ms.load(Ordering::Relaxed),
        }
    }

    /// Readiness now, with `stall_after_ms` as the bound on work in flight without progress.
    pub fn readiness(&self, stall_after_ms: i64) -> Readiness {
        readiness(self.snapshot(), now_ms(), stall_after_ms)
    }
}

/// Readiness of `h` at `now_ms` (pure; see the module doc).
pub fn readiness(h: HealthSnapshot, now_ms: i64, stall_after_ms: i64) -> Readiness {
    if h.stopping {
        return Readiness::NotReady("shutting down".into());
    }
    if !h.joined {
        return Readiness::NotReady("waiting for a partition assignment".into());
    }
    if h.in_flight == 0 {
        return Readiness::Ready(format!("idle, {} partitions assigned", h.assigned));
    }
    let quiet_ms = now_ms.saturating_sub(h.last_progress_ms);
    if quiet_ms > stall_after_ms {
        return Readiness::NotReady(format!(
            "{} inputs in flight and none completed for {} s",
            h.in_flight,
            quiet_ms / 1000
        ));
    }
    Readiness::Ready(format!(
        "{} partitions assigned, {} inputs in flight",
        h.assigned, h.in_flight
    ))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(joined: bool, in_flight: usize, last: i64) -> HealthSnapshot {
        HealthSnapshot {
            joined,
            stopping: false,
            assigned: 2,
            in_flight,
            last_progress_ms: last,
        }
    }

    #[test]
    fn not_ready_before_joining() {
        assert!(!readiness(snap(false, 0, 0), 1_000, 60_000).is_ready());
    }

    #[test]
    fn idle_is_ready_however_long() {
        assert!(readiness(snap(true, 0, 0), 10_000_000, 60_000).is_ready());
    }

    #[test]
    fn work_in_flight_ready_while_progressing_then_stalled() {
        assert!(readiness(snap(true, 5, 100_000), 150_000, 60_000).is_ready());
        let stalled = readiness(snap(true, 5, 100_000), 170_001, 60_000);
        assert_eq!(
            stalled,
            Readiness::NotReady("5 inputs in flight and none completed for 70 s".into())
        );
    }

    #[test]
    fn stopping_is_not_ready() {
        let mut h = snap(true, 0, 0);
        h.stopping = true;
        assert!(!readiness(h, 0, 60_000).is_ready());
    }

    #[test]
    fn work_arriving_at_an_idle_loop_starts_the_clock() {
        let health = LoopHealth::default();
        health.assigned(1);
        health.work(3, false);
        let s = health.snapshot();
        assert!(s.last_progress_ms > 0);
        assert_eq!(s.in_flight, 3);
        assert!(health.readiness(60_000).is_ready());
    }
}
