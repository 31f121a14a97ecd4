//! Property test of the offset bookkeeping (`mailpipe_kafka::offsets`), pure, no broker.
//!
//! A seeded model drives an [`OffsetTracker`] the way the consumer loop does, against a
//! simulated group coordinator: messages arrive, complete in random order, commits are sent
//! at random ticks and fail at random (their results come back late, in order, possibly
//! after the partition was revoked and assigned again), partitions are revoked (with a
//! synchronous commit that may fail too) and assigned again (redelivery from the committed
//! offset), and completions of earlier assignments arrive late. After every step:
//!
//! - the coordinator's committed offset of each partition is a contiguous completed prefix:
//!   every offset below it was completed (accepted by the tracker) at least once;
//!
//! and once every message is completed and commits succeed, the committed offset of every
//! partition is its end, and nothing is due any more.
//!
//! Reproduce a failure with `OFFSETS_SEED=<seed> cargo test -p mailpipe-kafka --test
//! offset_bookkeeping`; the failing seed and its last steps are printed.

use std::collections::{BTreeSet, VecDeque};

use mailpipe_kafka::offsets::{OffsetTracker, TopicPartition};

const PARTITIONS: i32 = 3;
const SEEDS: u64 = 400;
const STEPS: usize = 400;

/// SplitMix64: small, seeded, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One partition as the broker and the coordinator see it.
struct Partition {
    tp: TopicPartition,
    /// Offsets that exist (compaction and transaction markers leave holes).
    offsets: Vec<i64>,
    /// The group's committed offset at the coordinator.
    committed: i64,
    /// Offsets whose completion the tracker accepted, in any assignment.
    completed: BTreeSet<i64>,
    assigned: bool,
    /// Index in `offsets` of the next message delivered while assigned.
    fetch: usize,
}

impl Partition {
    fn end(&self) -> i64 {
        self.offsets.last().map_or(0, |o| o + 1)
    }

    /// Every existing offset below the committed one was completed.
    fn committed_is_a_completed_prefix(&self) -> bool {
        self.offsets
            .iter()
            .take_while(|o| **o < self.committed)
            .all(|o| self.completed.contains(o))
    }
}

struct Model {
    rng: Rng,
    tracker: OffsetTracker,
    partitions: Vec<Partition>,
    /// Received messages not completed yet: (partition index, offset, epoch). Entries of
    /// revoked assignments stay: the stage may still complete them late.
    in_flight: Vec<(usize, i64, u64)>,
    /// Asynchronous commits sent, not yet applied by the coordinator (in order).
    sent: VecDeque<(usize, i64)>,
    /// Results of applied commits not yet delivered to the loop: (partition, offset, ok).
    results: VecDeque<(usize, i64, bool)>,
    /// Chance in percent that a commit fails.
    fail_percent: u64,
    trace: VecDeque<String>,
}

impl Model {
    fn new(seed: u64) -> Model {
        let mut rng = Rng(seed);
        let partitions = (0..PARTITIONS)
            .map(|p| {
                let count = rng.below(40);
                let mut offsets = Vec::with_capacity(count);
                let mut next = rng.below(3) as i64;
                for _ in 0..count {
                    offsets.push(next);
                    next += if rng.chance(15) { 2 } else { 1 };
                }
                Partition {
                    tp: ("t".to_string(), p),
                    offsets,
                    committed: 0,
                    completed: BTreeSet::new(),
                    assigned: true,
                    fetch: 0,
                }
            })
            .collect();
        let fail_percent = [0, 20, 50, 90][rng.below(4)];
        Model {
            rng,
            tracker: OffsetTracker::default(),
            partitions,
            in_flight: Vec::new(),
            sent: VecDeque::new(),
            results: VecDeque::new(),
            fail_percent,
            trace: VecDeque::new(),
        }
    }

    fn note(&mut self, step: String) {
        if self.trace.len() == 40 {
            self.trace.pop_front();
        }
        self.trace.push_back(step);
    }

    fn receive(&mut self, p: usize) {
        let part = &mut self.partitions[p];
        if !part.assigned || part.fetch >= part.offsets.len() {
            return;
        }
        let offset = part.offsets[part.fetch];
        part.fetch += 1;
        let (epoch, _) = self.tracker.received(&part.tp, offset);
        self.in_flight.push((p, offset, epoch));
        self.note(format!("receive p{p}@{offset} epoch {epoch}"));
    }

    fn complete(&mut self, index: usize) {
        let (p, offset, epoch) = self.in_flight.swap_remove(index);
        let part = &mut self.partitions[p];
        let accepted = self.tracker.completed(&part.tp, offset, epoch).is_some();
        if accepted {
            part.completed.insert(offset);
        }
        self.note(format!(
            "complete p{p}@{offset} epoch {epoch} accepted {accepted}"
        ));
    }

    /// The loop's commit tick: send every due offset asynchronously.
    fn tick(&mut self) {
        for (tp, offset) in self.tracker.commits_due() {
            let p = tp.1 as usize;
            // Sometimes the commit call itself fails at once: no result will come.
            if self.rng.chance(self.fail_percent / 4) {
                self.note(format!("send p{p}@{offset}: refused at once"));
                continue;
            }
            self.sent.push_back((p, offset));
            self.note(format!("send p{p}@{offset}"));
        }
    }

    /// The coordinator handles the oldest commit sent.
    fn apply_one(&mut self) {
        let Some((p, offset)) = self.sent.pop_front() else {
            return;
        };
        let ok = !self.rng.chance(self.fail_percent);
        if ok {
            self.partitions[p].committed = offset;
        }
        self.results.push_back((p, offset, ok));
        self.note(format!("coordinator p{p}@{offset} ok {ok}"));
    }

    /// The loop polls and gets the oldest commit result.
    fn deliver_one(&mut self) {
        let Some((p, offset, ok)) = self.results.pop_front() else {
            return;
        };
        if ok {
            let tp = self.partitions[p].tp.clone();
            self.tracker.commit_succeeded(&tp, offset);
        }
        self.note(format!("result p{p}@{offset} ok {ok}"));
    }

    /// A rebalance takes the partition away: commits sent before are handled first (one
    /// connection to the coordinator), then the synchronous commit of the revoked prefix.
    fn revoke(&mut self, p: usize) {
        if !self.partitions[p].assigned {
            return;
        }
        while !self.sent.is_empty() {
            self.apply_one();
        }
        let tp = self.partitions[p].tp.clone();
        let offset = self.tracker.revoke(&tp);
        let ok = !self.rng.chance(self.fail_percent);
        let part = &mut self.partitions[p];
        if let (Some(offset), true) = (offset, ok) {
            part.committed = offset;
        }
        part.assigned = false;
        self.note(format!("revoke p{p}: sync commit {offset:?} ok {ok}"));
    }

    /// The partition comes back: delivery restarts at the committed offset.
    fn assign(&mut self, p: usize) {
        let part = &mut self.partitions[p];
        if part.assigned {
            return;
        }
        part.assigned = true;
        let committed = part.committed;
        part.fetch = part.offsets.partition_point(|o| *o < committed);
        self.note(format!("assign p{p} from {committed}"));
    }

    fn random_step(&mut self) {
        let p = self.rng.below(PARTITIONS as usize);
        match self.rng.below(100) {
            0..=34 => self.receive(p),
            35..=64 if !self.in_flight.is_empty() => {
                let index = self.rng.below(self.in_flight.len());
                self.complete(index);
            }
            65..=74 => self.tick(),
            75..=84 => self.apply_one(),
            85..=93 => self.deliver_one(),
            94..=96 => self.revoke(p),
            97..=99 => self.assign(p),
            _ => {}
        }
    }

    fn check_prefix(&self, seed: u64) {
        for part in &self.partitions {
            assert!(
                part.committed_is_a_completed_prefix(),
                "seed {seed}: partition {} committed {} but not every offset below it was \
                 completed; last steps:\n{}",
                part.tp.1,
                part.committed,
                self.steps()
            );
        }
    }

    fn steps(&self) -> String {
        self.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Everything completes and commits succeed from now on.
    fn settle(&mut self, seed: u64) {
        self.fail_percent = 0;
        for round in 0..4 {
            for p in 0..PARTITIONS as usize {
                self.assign(p);
                while self.partitions[p].fetch < self.partitions[p].offsets.len() {
                    self.receive(p);
                }
            }
            while !self.in_flight.is_empty() {
                let index = self.rng.below(self.in_flight.len());
                self.complete(index);
            }
            self.tick();
            while !self.sent.is_empty() || !self.results.is_empty() {
                self.apply_one();
                self.deliver_one();
                self.check_prefix(seed);
            }
            let settled = self.partitions.iter().all(|p| p.committed == p.end())
                && self.tracker.commits_due().is_empty();
            if settled {
                return;
            }
            self.note(format!("settle round {round} did not settle"));
        }
        let state: Vec<_> = self
            .partitions
            .iter()
            .map(|p| (p.tp.1, p.committed, p.end()))
            .collect();
        panic!(
            "seed {seed}: (partition, committed, end) {state:?}, still due {:?}; last steps:\n{}",
            self.tracker.commits_due(),
            self.steps()
        );
    }
}

fn run(seed: u64) {
    let mut model = Model::new(seed);
    let steps = model.rng.below(STEPS) + 1;
    for _ in 0..steps {
        model.random_step();
        model.check_prefix(seed);
    }
    model.settle(seed);
}

#[test]
fn committed_offsets_are_completed_prefixes_and_reach_the_end() {
    if let Some(seed) = std::env::var("OFFSETS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed);
        return;
    }
    for seed in 0..SEEDS {
        run(seed);
    }
}
