//! Which offsets may be committed: pure bookkeeping, no Kafka inside.
//!
//! Per partition we remember the offsets received but not yet completed. The offset to
//! commit (Kafka's "next offset to read") is the smallest of those, or one past the highest
//! offset received when nothing is outstanding. So a completion out of order never moves
//! the commit past an earlier message that is still being worked on.
//!
//! A commit counts as done only once its result says it succeeded
//! ([`OffsetTracker::commit_succeeded`]): until then the same offset is offered again at
//! every [`OffsetTracker::commits_due`], so a failed commit on a partition that receives
//! nothing more is still retried.

use std::collections::{BTreeSet, HashMap};

/// A partition of a topic.
pub type TopicPartition = (String, i32);

#[derive(Debug)]
struct PartitionState {
    /// Distinguishes this assignment of the partition from earlier ones, so completions of
    /// work started before a revoke are ignored after the partition comes back.
    epoch: u64,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
    /// The offset of the last commit known to have succeeded, to skip commits that would
    /// change nothing. Set only from a commit's result, never when a commit is sent.
    last_committed: Option<i64>,
    paused: bool,
}

impl PartitionState {
    fn committable(&self) -> i64 {
        self.in_flight.first().copied().unwrap_or(self.next)
    }
}

/// The completion state of every partition this consumer owns.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, PartitionState>,
    next_epoch: u64,
}

impl OffsetTracker {
    /// Records that `offset` was received; returns the partition's epoch (to hand back in
    /// [`OffsetTracker::completed`]) and how many of its messages are now in flight.
    pub fn received(&mut self, tp: &TopicPartition, offset: i64) -> (u64, usize) {
        if !self.partitions.contains_key(tp) {
            self.next_epoch += 1;
            self.partitions.insert(
                tp.clone(),
                PartitionState {
                    epoch: self.next_epoch,
                    in_flight: BTreeSet::new(),
                    next: offset,
                    last_committed: None,
                    paused: false,
                },
            );
        }
        let state = self.partitions.get_mut(tp).expect("inserted above");
        state.in_flight.insert(offset);
        state.next = state.next.max(offset + 1);
        (state.epoch, state.in_flight.len())
    }

    /// Records the consumer's position of `tp` (the next offset it will return): past the
    /// last message received when it skipped transaction markers, which then count as
    /// consumed, so a fully processed partition commits its end offset.
    pub fn advance(&mut self, tp: &TopicPartition, position: i64) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.next = state.next.max(position);
        }
    }

    /// Records a completion. Returns the partition's remaining in-flight count, or `None`
    /// when the completion belongs to an earlier assignment (or an unknown partition) and
    /// was ignored.
    pub fn completed(&mut self, tp: &TopicPartition, offset: i64, epoch: u64) -> Option<usize> {
        let state = self.partitions.get_mut(tp).filter(|s| s.epoch == epoch)?;
        state.in_flight.remove(&offset);
        Some(state.in_flight.len())
    }

    /// Whether `epoch` is the partition's current assignment.
    pub fn is_current(&self, tp: &TopicPartition, epoch: u64) -> bool {
        self.partitions.get(tp).is_some_and(|s| s.epoch == epoch)
    }

    /// Offsets worth committing now: the contiguous completed prefix of every partition
    /// whose prefix differs from its last successful commit. Marks nothing: an offset stays
    /// due until [`OffsetTracker::commit_succeeded`] reports it, so a failed (or lost)
    /// commit is offered again at the next call.
    pub fn commits_due(&self) -> Vec<(TopicPartition, i64)> {
        let mut commits: Vec<_> = self
            .partitions
            .iter()
            .map(|(tp, state)| (tp, state, state.committable()))
            .filter(|(_, state, offset)| state.last_committed != Some(*offset))
            .map(|(tp, _, offset)| (tp.clone(), offset))
            .collect();
        commits.sort();
        commits
    }

    /// Records that the broker confirmed a commit of `offset` for `tp`. A result for a
    /// partition no longer owned is ignored; one from an earlier assignment of a partition
    /// owned again can only name an offset at or below the current prefix (the new
    /// assignment starts at the committed offset), so at worst it causes one more commit.
    pub fn commit_succeeded(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.last_committed = Some(offset);
        }
    }

    /// The committable offset of every partition, changed or not (for the final commit).
    pub fn all_commits(&self) -> Vec<(TopicPartition, i64)> {
        let mut commits: Vec<_> = self
            .partitions
            .iter()
            .map(|(tp, state)| (tp.clone(), state.committable()))
            .collect();
        commits.sort();
        commits
    }

    /// Forgets a revoked partition; returns its committable offset to commit before it goes.
    pub fn revoke(&mut self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.remove(tp).map(|s| s.committable())
    }

    /// Messages received but not completed, over all partitions.
    pub fn total_in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.in_flight.len()).sum()
    }

    pub fn is_paused(&self, tp: &TopicPartition) -> bool {
        self.partitions.get(tp).is_some_and(|s| s.paused)
    }

    pub fn set_paused(&mut self, tp: &TopicPartition, paused: bool) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.paused = paused;
        }
    }

    /// The partitions currently paused.
    pub fn paused(&self) -> Vec<TopicPartition> {
        let mut paused: Vec<_> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect();
        paused.sort();
        paused
    }

    /// Messages of `tp` received but not completed.
    pub fn in_flight(&self, tp: &TopicPartition) -> usize {
        self.partitions.get(tp).map_or(0, |s| s.in_flight.len())
    }

    /// The current assignment's epoch of `tp`, if owned.
    pub fn epoch(&self, tp: &TopicPartition) -> Option<u64> {
        self.partitions.get(tp).map(|s| s.epoch)
    }

    pub fn paused_count(&self) -> usize {
        self.partitions.values().filter(|s| s.paused).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".to_string(), p)
    }

    /// The offsets due, each committed successfully.
    fn commit_all(t: &mut OffsetTracker) -> Vec<(TopicPartition, i64)> {
        let due = t.commits_due();
        for (tp, offset) in &due {
            t.commit_succeeded(tp, *offset);
        }
        due
    }

    #[test]
    fn a_failed_commit_is_offered_again_until_one_succeeds() {
        let mut t = OffsetTracker::default();
        let (e, _) = t.received(&tp(0), 0);
        t.completed(&tp(0), 0, e);
        // The commit of 1 is sent and fails (no success reported); nothing else arrives on
        // the partition, so only the retry can ever commit it.
        assert_eq!(t.commits_due(), vec![(tp(0), 1)]);
        assert_eq!(
            t.commits_due(),
            vec![(tp(0), 1)],
            "offered again after the failure"
        );
        t.commit_succeeded(&tp(0), 1);
        assert!(t.commits_due().is_empty(), "done once it succeeded");
    }

    #[test]
    fn a_success_for_an_older_offset_leaves_the_newer_one_due() {
        let mut t = OffsetTracker::default();
        let (e, _) = t.received(&tp(0), 0);
        t.received(&tp(0), 1);
        t.completed(&tp(0), 0, e);
        assert_eq!(t.commits_due(), vec![(tp(0), 1)]);
        t.completed(&tp(0), 1, e);
        // The result of the commit of 1 arrives after the prefix moved to 2.
        t.commit_succeeded(&tp(0), 1);
        assert_eq!(t.commits_due(), vec![(tp(0), 2)]);
        // A result for a partition no longer owned changes nothing.
        t.commit_succeeded(&tp(5), 9);
        assert_eq!(t.commits_due(), vec![(tp(0), 2)]);
    }

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::default();
        let epoch = (10..15).map(|o| t.received(&tp(0), o).0).last().unwrap();
        // Complete 14, 12, 11 out of order: 10 is still outstanding.
        for o in [14, 12, 11] {
            t.completed(&tp(0), o, epoch);
        }
        assert_eq!(commit_all(&mut t), vec![(tp(0), 10)]);
        t.completed(&tp(0), 10, epoch);
        // 10..=12 done, 13 outstanding.
        assert_eq!(commit_all(&mut t), vec![(tp(0), 13)]);
        t.completed(&tp(0), 13, epoch);
        assert_eq!(commit_all(&mut t), vec![(tp(0), 15)]);
        assert!(t.commits_due().is_empty(), "nothing moved");
        assert_eq!(t.all_commits(), vec![(tp(0), 15)]);
    }

    #[test]
    fn gaps_in_offsets_do_not_block_commits() {
        // Compacted topics and transaction markers leave holes in offsets.
        let mut t = OffsetTracker::default();
        let (e, _) = t.received(&tp(0), 5);
        t.received(&tp(0), 9);
        t.completed(&tp(0), 5, e);
        assert_eq!(commit_all(&mut t), vec![(tp(0), 9)]);
        t.completed(&tp(0), 9, e);
        assert_eq!(commit_all(&mut t), vec![(tp(0), 10)]);
    }

    #[test]
    fn skipped_transaction_markers_count_as_consumed() {
        let mut t = OffsetTracker::default();
        let (e, _) = t.received(&tp(0), 10);
        // Offset 11 is a commit marker: the consumer's position moves to 12.
        t.advance(&tp(0), 12);
        assert_eq!(commit_all(&mut t), vec![(tp(0), 10)], "10 still in flight");
        t.completed(&tp(0), 10, e);
        assert_eq!(commit_all(&mut t), vec![(tp(0), 12)]);
        t.advance(&tp(0), 5);
        assert!(t.commits_due().is_empty(), "a position never moves back");
        t.advance(&tp(9), 3);
        assert!(t.commits_due().is_empty(), "unknown partitions are ignored");
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        let (e0, _) = t.received(&tp(0), 0);
        let (e1, _) = t.received(&tp(1), 100);
        t.received(&tp(1), 101);
        t.completed(&tp(1), 100, e1);
        assert_eq!(commit_all(&mut t), vec![(tp(0), 0), (tp(1), 101)]);
        t.completed(&tp(0), 0, e0);
        assert_eq!(commit_all(&mut t), vec![(tp(0), 1)]);
        assert_eq!(t.total_in_flight(), 1);
    }

    #[test]
    fn completions_from_before_a_revoke_are_ignored() {
        let mut t = OffsetTracker::default();
        let (old, _) = t.received(&tp(0), 7);
        assert_eq!(t.revoke(&tp(0)), Some(7));
        let (new, _) = t.received(&tp(0), 7);
        assert_ne!(old, new);
        assert_eq!(t.completed(&tp(0), 7, old), None);
        assert_eq!(t.all_commits(), vec![(tp(0), 7)]);
        assert_eq!(t.completed(&tp(0), 7, new), Some(0));
        assert_eq!(t.all_commits(), vec![(tp(0), 8)]);
    }

    #[test]
    fn in_flight_counts_and_pause_flags() {
        let mut t = OffsetTracker::default();
        assert_eq!(t.received(&tp(0), 0).1, 1);
        assert_eq!(t.received(&tp(0), 1).1, 2);
        t.set_paused(&tp(0), true);
        assert!(t.is_paused(&tp(0)));
        assert_eq!(t.paused_count(), 1);
        t.set_paused(&tp(0), false);
        assert_eq!(t.paused_count(), 0);
    }
}
