//! The fault schedule, without side effects: which kind comes next, how long
//! each step waits and holds, and the tally of what was actually injected.
//!
//! Owns: [`Fault`] (the kinds), [`Schedule`] (a seeded order that cycles
//! through the enabled kinds: each cycle is a fresh shuffle of all of them),
//! [`step_times`] (quiet time and hold, shortened while kinds are still
//! waiting for their first injection so that they all fit in the run),
//! [`plan`] (what to tell the user at start), and [`Tally`] (injections and
//! skips per kind, and the failures they imply).
//!
//! Invariants: for a seed, the order of kinds depends on nothing else (no
//! clock, no cluster state), so a replay meets the same kinds in the same
//! order; every enabled kind appears exactly once in each cycle of
//! `kinds.len()` steps (plus at most one retry per kind, at the end of the
//! cycle in which it was skipped); a requested kind that ends the run with
//! zero injections is a failure ([`Tally::failures`]).
//!
//! Does not: touch processes or the network, or decide whether a fault
//! could be injected (see `nemesis.rs`).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Fault {
    /// Isolate the leader from every other node.
    PartitionLeader,
    /// Random majority/minority halves.
    PartitionHalves,
    /// Two sides that cannot talk, and one node that sees both.
    PartitionBridge,
    /// Drop packets in one direction between two nodes.
    OneWay,
    KillFollower,
    KillLeader,
    KillMajority,
    KillAll,
    /// SIGSTOP the leader, SIGCONT later.
    PauseLeader,
    /// Remove a follower, wipe it, add it back.
    Membership,
    /// Restart a node with its wall clock skewed (libfaketime).
    ClockSkew,
}

impl Fault {
    pub fn all() -> Vec<Fault> {
        <Fault as clap::ValueEnum>::value_variants().to_vec()
    }

    /// Faults that need the current leader (they wait for one).
    pub fn needs_leader(self) -> bool {
        matches!(
            self,
            Fault::PartitionLeader
                | Fault::KillFollower
                | Fault::KillLeader
                | Fault::PauseLeader
                | Fault::Membership
        )
    }
}

impl fmt::Display for Fault {
    /// The command-line name, e.g. `kill-leader`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// The seed of one independent random stream of a run, derived from the
/// run seed (SplitMix64 of seed and stream), so streams never coincide: the
/// schedule, the fault parameters and each client draw from their own.
pub fn stream_seed(run_seed: u64, stream: u64) -> u64 {
    let mut x = run_seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Stream numbers for [`stream_seed`]; clients use `CLIENT_STREAM + i`,
/// TTL clients `TTL_CLIENT_STREAM + i`, bank clients `BANK_CLIENT_STREAM + i`,
/// RESP clients `RESP_CLIENT_STREAM + i`.
pub const SCHEDULE_STREAM: u64 = 1;
pub const PARAM_STREAM: u64 = 2;
pub const CLIENT_STREAM: u64 = 1000;
pub const TTL_CLIENT_STREAM: u64 = 2000;
pub const BANK_CLIENT_STREAM: u64 = 3000;
pub const RESP_CLIENT_STREAM: u64 = 4000;

/// The order of fault kinds: cycles of shuffled decks of every enabled kind.
pub struct Schedule {
    kinds: Vec<Fault>,
    rng: StdRng,
    deck: VecDeque<Fault>,
    last: Option<Fault>,
    retried: BTreeSet<Fault>,
}

impl Schedule {
    pub fn new(kinds: &[Fault], seed: u64) -> Schedule {
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        Schedule {
            kinds,
            rng: StdRng::seed_from_u64(stream_seed(seed, SCHEDULE_STREAM)),
            deck: VecDeque::new(),
            last: None,
            retried: BTreeSet::new(),
        }
    }

    /// The next kind (None only if no kind is enabled).
    pub fn next_fault(&mut self) -> Option<Fault> {
        if self.deck.is_empty() {
            let mut deck = self.kinds.clone();
            deck.shuffle(&mut self.rng);
            // No kind twice in a row across a cycle boundary.
            if deck.len() > 1 && deck.first() == self.last.as_ref() {
                deck.swap(0, 1);
            }
            self.deck = deck.into();
        }
        let f = self.deck.pop_front()?;
        self.last = Some(f);
        Some(f)
    }

    /// One more chance for a kind that could not be injected: it goes to
    /// the end of the current cycle. At most once per kind and run, so a
    /// kind that can never be injected cannot crowd out the others.
    pub fn retry(&mut self, f: Fault) -> bool {
        if self.kinds.contains(&f) && self.retried.insert(f) {
            self.deck.push_back(f);
            true
        } else {
            false
        }
    }
}

/// Quiet time before a fault, drawn from this range (ms).
pub const QUIET_MS: (u64, u64) = (500, 1500);
/// How long a fault is held, drawn from this range (ms).
pub const HOLD_MS: (u64, u64) = (1500, 5000);
/// Shortest quiet time and hold when a step is shortened (ms).
pub const MIN_QUIET_MS: u64 = 200;
pub const MIN_HOLD_MS: u64 = 1000;
/// A step's cost beyond quiet time and hold (finding the leader, restarts,
/// checking a skewed clock), as budgeted when sizing steps (ms).
pub const STEP_OVERHEAD_MS: u64 = 1000;
/// The nemesis starts no step in the last this-many seconds of a run.
pub const TAIL: Duration = Duration::from_secs(2);

/// Quiet time and hold for the next step, drawn from [`QUIET_MS`] and
/// [`HOLD_MS`]. While `pending` kinds have not been injected yet, the step
/// is shortened (both scaled down, not below [`MIN_QUIET_MS`] and
/// [`MIN_HOLD_MS`]) so that every pending kind still fits into `left`.
pub fn step_times(rng: &mut StdRng, left: Duration, pending: usize) -> (Duration, Duration) {
    let quiet = rng.gen_range(QUIET_MS.0..=QUIET_MS.1);
    let hold = rng.gen_range(HOLD_MS.0..=HOLD_MS.1);
    if pending == 0 {
        return (Duration::from_millis(quiet), Duration::from_millis(hold));
    }
    let usable = left.saturating_sub(TAIL).as_millis() as u64;
    let slot = (usable / pending as u64).saturating_sub(STEP_OVERHEAD_MS);
    let (quiet, hold) = if quiet + hold > slot {
        (
            (quiet * slot / (quiet + hold)).max(MIN_QUIET_MS),
            (hold * slot / (quiet + hold)).max(MIN_HOLD_MS),
        )
    } else {
        (quiet, hold)
    };
    (Duration::from_millis(quiet), Duration::from_millis(hold))
}

/// What a run of a given length can expect for its fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// One full cycle fits with the usual quiet times and holds.
    Comfortable,
    /// Steps are shortened until every kind has been injected once.
    Shortened { cycle_secs: u64 },
    /// Even shortened steps may not fit: some kind may never be injected
    /// (which fails the run); `needed_secs` is about what would fit them.
    TooShort { needed_secs: u64 },
}

/// How `kinds` kinds fit into `duration`.
pub fn plan(duration: Duration, kinds: usize) -> Plan {
    let usable = duration.saturating_sub(TAIL).as_millis() as u64;
    let k = kinds as u64;
    let full = k * (QUIET_MS.1 + HOLD_MS.1 + STEP_OVERHEAD_MS);
    let short = k * (MIN_QUIET_MS + MIN_HOLD_MS + STEP_OVERHEAD_MS);
    if full <= usable {
        Plan::Comfortable
    } else if short <= usable {
        Plan::Shortened {
            cycle_secs: full.div_ceil(1000),
        }
    } else {
        Plan::TooShort {
            needed_secs: (short + TAIL.as_millis() as u64).div_ceil(1000),
        }
    }
}

/// What the nemesis did, per kind.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    injected: BTreeMap<Fault, u32>,
    skipped: BTreeMap<Fault, Vec<String>>,
}

impl Tally {
    pub fn injected(&mut self, f: Fault) {
        *self.injected.entry(f).or_default() += 1;
    }

    pub fn skipped(&mut self, f: Fault, reason: impl Into<String>) {
        self.skipped.entry(f).or_default().push(reason.into());
    }

    pub fn count(&self, f: Fault) -> u32 {
        self.injected.get(&f).copied().unwrap_or(0)
    }

    pub fn skips(&self, f: Fault) -> &[String] {
        self.skipped.get(&f).map_or(&[], Vec::as_slice)
    }

    /// Requested kinds not injected yet.
    pub fn pending(&self, requested: &[Fault]) -> usize {
        requested.iter().filter(|&&f| self.count(f) == 0).count()
    }

    /// One line per requested kind (and any other kind seen), e.g.
    /// `kill-leader: 3 injected, 1 skipped (no leader within 10 s)`.
    pub fn summary(&self, requested: &[Fault]) -> Vec<String> {
        let mut kinds: BTreeSet<Fault> = requested.iter().copied().collect();
        kinds.extend(self.injected.keys());
        kinds.extend(self.skipped.keys());
        kinds
            .into_iter()
            .map(|f| {
                let skips = self.skips(f);
                let mut line = format!("{f}: {} injected", self.count(f));
                if !skips.is_empty() {
                    line += &format!(", {} skipped ({})", skips.len(), distinct(skips));
                }
                line
            })
            .collect()
    }

    /// A failure for every requested kind that was never injected.
    pub fn failures(&self, requested: &[Fault]) -> Vec<String> {
        let mut seen = BTreeSet::new();
        requested
            .iter()
            .filter(|&&f| seen.insert(f) && self.count(f) == 0)
            .map(|&f| {
                let skips = self.skips(f);
                if skips.is_empty() {
                    format!(
                        "fault {f} was requested but never injected (never scheduled: the run is too short for all kinds)"
                    )
                } else {
                    format!(
                        "fault {f} was requested but never injected ({} attempts skipped: {})",
                        skips.len(),
                        distinct(skips)
                    )
                }
            })
            .collect()
    }
}

/// The distinct reasons, in first-seen order, joined.
fn distinct(reasons: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for r in reasons {
        if !out.contains(&r.as_str()) {
            out.push(r);
        }
    }
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_once_per_cycle_for_many_seeds() {
        let all = Fault::all();
        for seed in 0..500 {
            let mut s = Schedule::new(&all, seed);
            for _cycle in 0..3 {
                let cycle: BTreeSet<Fault> = (0..all.len())
                    .map(|_| s.next_fault().expect("kinds"))
                    .collect();
                assert_eq!(cycle.len(), all.len(), "seed {seed}");
            }
        }
    }

    #[test]
    fn no_kind_twice_in_a_row() {
        let all = Fault::all();
        for seed in 0..200 {
            let mut s = Schedule::new(&all, seed);
            let mut prev = None;
            for _ in 0..100 {
                let f = s.next_fault();
                assert_ne!(f, prev, "seed {seed}");
                prev = f;
            }
        }
    }

    #[test]
    fn the_order_depends_only_on_the_seed() {
        let all = Fault::all();
        let run = |seed| {
            let mut s = Schedule::new(&all, seed);
            (0..30).map(|_| s.next_fault()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn subsets_and_single_kinds() {
        let kinds = [Fault::KillAll, Fault::ClockSkew];
        let mut s = Schedule::new(&kinds, 1);
        let got: BTreeSet<Fault> = (0..2).map(|_| s.next_fault().unwrap()).collect();
        assert_eq!(got, kinds.into_iter().collect());
        let mut one = Schedule::new(&[Fault::OneWay], 1);
        assert!((0..5).all(|_| one.next_fault() == Some(Fault::OneWay)));
        assert_eq!(Schedule::new(&[], 1).next_fault(), None);
    }

    #[test]
    fn a_skipped_kind_is_retried_once_in_the_same_cycle() {
        let all = Fault::all();
        let mut s = Schedule::new(&all, 3);
        let first = s.next_fault().unwrap();
        assert!(s.retry(first));
        assert!(!s.retry(first), "only once per run");
        let rest: Vec<Fault> = (0..all.len()).map(|_| s.next_fault().unwrap()).collect();
        assert_eq!(rest.last(), Some(&first), "retried at the end of the cycle");
        let mut sub = Schedule::new(&[Fault::OneWay], 3);
        assert!(!sub.retry(Fault::KillAll), "not an enabled kind");
    }

    /// Simulates the nemesis loop with the worst-case step (longest quiet
    /// time and hold drawn, full overhead): in runs of 40 to 100 s every one
    /// of the 11 kinds is scheduled before the end.
    #[test]
    fn every_kind_fits_into_a_40_to_100_s_run() {
        let all = Fault::all();
        for secs in [40u64, 45, 60, 80, 100] {
            for seed in 0..50 {
                let mut sched = Schedule::new(&all, seed);
                let mut rng = StdRng::seed_from_u64(seed);
                let mut tally = Tally::default();
                let duration = Duration::from_secs(secs);
                let mut now = Duration::ZERO;
                while now + TAIL < duration {
                    let (quiet, hold) = step_times(&mut rng, duration - now, tally.pending(&all));
                    // Worst case: every step costs its full overhead.
                    now += quiet;
                    let f = sched.next_fault().unwrap();
                    tally.injected(f);
                    now += hold.min(duration.saturating_sub(now))
                        + Duration::from_millis(STEP_OVERHEAD_MS);
                }
                assert!(
                    tally.failures(&all).is_empty(),
                    "{secs} s, seed {seed}: {:?}",
                    tally.failures(&all)
                );
            }
        }
    }

    #[test]
    fn steps_are_not_shortened_once_every_kind_was_injected() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let (q, h) = step_times(&mut rng, Duration::from_secs(3), 0);
            assert!(q >= Duration::from_millis(QUIET_MS.0));
            assert!(h >= Duration::from_millis(HOLD_MS.0));
        }
        let (q, h) = step_times(&mut rng, Duration::from_secs(30), 11);
        assert!(q >= Duration::from_millis(MIN_QUIET_MS));
        assert!(h >= Duration::from_millis(MIN_HOLD_MS));
        assert!(q + h <= Duration::from_millis(28_000 / 11));
    }

    #[test]
    fn streams_differ() {
        let mut seen = BTreeSet::new();
        for seed in [0u64, 1, 2, 0x5eed, u64::MAX] {
            for stream in [
                SCHEDULE_STREAM,
                PARAM_STREAM,
                CLIENT_STREAM,
                CLIENT_STREAM + 1,
                TTL_CLIENT_STREAM,
            ] {
                assert!(seen.insert(stream_seed(seed, stream)));
            }
        }
        assert_eq!(stream_seed(9, 2), stream_seed(9, 2));
    }

    #[test]
    fn plan_says_when_a_run_is_too_short() {
        assert_eq!(plan(Duration::from_secs(100), 11), Plan::Comfortable);
        assert!(matches!(
            plan(Duration::from_secs(40), 11),
            Plan::Shortened { .. }
        ));
        assert_eq!(
            plan(Duration::from_secs(20), 11),
            Plan::TooShort { needed_secs: 27 }
        );
        assert_eq!(plan(Duration::from_secs(20), 2), Plan::Comfortable);
    }

    #[test]
    fn a_requested_kind_never_injected_is_a_failure() {
        let requested = [Fault::KillLeader, Fault::OneWay, Fault::ClockSkew];
        let mut t = Tally::default();
        t.injected(Fault::OneWay);
        t.skipped(Fault::KillLeader, "no leader within 10 s");
        t.skipped(Fault::KillLeader, "no leader within 10 s");
        let failures = t.failures(&requested);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("kill-leader"), "{failures:?}");
        assert!(
            failures[0].contains("2 attempts skipped: no leader within 10 s"),
            "{failures:?}"
        );
        assert!(failures[1].contains("clock-skew"), "{failures:?}");
        assert!(failures[1].contains("never scheduled"), "{failures:?}");
        // Skips do not matter once a kind was injected at least once.
        t.injected(Fault::KillLeader);
        t.injected(Fault::ClockSkew);
        assert!(t.failures(&requested).is_empty());
        assert!(Tally::default().failures(&[]).is_empty(), "control run");
    }

    #[test]
    fn summary_counts_per_kind() {
        let mut t = Tally::default();
        t.injected(Fault::KillAll);
        t.injected(Fault::KillAll);
        t.skipped(Fault::PauseLeader, "no leader within 10 s");
        let lines = t.summary(&[Fault::KillAll, Fault::PauseLeader, Fault::OneWay]);
        assert_eq!(
            lines,
            vec![
                "one-way: 0 injected".to_string(),
                "kill-all: 2 injected".to_string(),
                "pause-leader: 0 injected, 1 skipped (no leader within 10 s)".to_string(),
            ]
        );
    }
}
