//! Linearizability checker for per-key registers.
//!
//! This module owns the public entry point, [`check`], and the [`Budget`]; it
//! splits a history by key and runs the keys in parallel. The work is split
//! across three files:
//!
//! - `model.rs`: the register model (a key's state and each op's
//!   legal transitions) and the per-key preparation of a history into model
//!   ops with interned values.
//! - `search.rs`: the Wing & Gong / Lowe search with memoisation
//!   (Porcupine's `checkSingle`) and its treatment of indeterminate ops. It
//!   answers linearizable / not / budget exhausted, and on failure the
//!   longest dead end it met, in model terms only.
//! - `report.rs`: everything a user sees: [`Verdict`],
//!   [`KeyReport`], [`Report`], [`Anomaly`] (built from the search's dead end
//!   and the history), and their printed form.
//!
//! Invariants kept here: every key of the history gets exactly one
//! [`KeyReport`], keys are reported sorted, and a key whose events are
//! malformed is [`Verdict::Invalid`], never skipped. This module does not
//! decide what counts as a pass: [`Report::ok`] does.
//!
//! # Model
//!
//! Each key is an independent register whose state is `Option<Value>`
//! (initially `None`, the key is absent), plus the TTL class of the value. Because the keys do not interact,
//! a history is linearizable iff each key's sub-history is (linearizability is
//! *local*, Herlihy & Wing), so keys are checked separately, in parallel on
//! std threads. Operations and their sequential specification:
//!
//! | op                      | result        | legal iff            | new state  |
//! |-------------------------|---------------|----------------------|------------|
//! | read                    | `v`           | state == v           | unchanged  |
//! | write(v)                | ok            | always               | `Some(v)`  |
//! | cas(e -> n)             | true          | state == e           | `Some(n)`  |
//! | cas(e -> n)             | false (412)   | state != e           | unchanged  |
//! | delete                  | ok            | always               | `None`     |
//! | write(v, ttl)           | ok            | always               | `Some(v)`, TTL class of `ttl` |
//! | write(v, keepttl)       | ok            | always               | `Some(v)`, the TTL class it had (none if absent) |
//! | expire(ttl) / persist   | found         | state != None        | unchanged value, class of `ttl` / none |
//! | expire(ttl) / persist   | not found     | state == None        | unchanged  |
//! | *expiry* (no op)        |               | value has a short TTL | `None`    |
//!
//! A TTL is *short* when it may pass within the history (then the key may
//! become absent at any moment after the write: with skewed clocks the
//! harness cannot say when), *long* when it cannot, whatever the skew
//! ([`TtlParams::long_after`]); a plain write or CAS (a PUT without `ttl`)
//! and persist clear it. So an absent key stays absent until written again,
//! and a value without a TTL or with a long one never becomes absent by
//! itself: both are linearizability conditions. How expiry is folded into
//! the ops is explained in `model.rs`. The wall-clock side of TTLs (a read
//! long after a deadline, deadlines that change on their own) is not a
//! linearizability question: see [`ttl`].
//!
//! Values are interned per key (0 = absent) and packed with their TTL class
//! into a `u32`, so that model states are cheap to copy, compare and hash.
//!
//! # Budget
//!
//! The problem is NP-complete in general, so each key's search is bounded by a
//! [`Budget`] (wall time and/or number of configurations). A search that runs
//! out yields [`Verdict::Unknown`], which is a failure (see `report.rs` for
//! why). The search algorithm and its shortcuts are described in `search.rs`.

pub mod bank;
pub mod counter;
mod model;
mod report;
mod search;
pub mod ttl;

use crate::history::History;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use model::TtlClass;
use model::{Interner, prepare};
pub use report::{Anomaly, KeyReport, OpRef, Overall, PlacedOp, Report, Verdict};
use search::{Search, SearchOutcome};

/// Bounds on the search, applied to each key separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock limit for one key's search.
    pub max_time_per_key: Option<Duration>,
    /// Limit on configurations (memoised states) explored for one key; also
    /// bounds memory (each costs about `ops/8 + 40` bytes).
    pub max_states_per_key: Option<u64>,
}

impl Default for Budget {
    /// 60 s and 5 million configurations per key.
    fn default() -> Self {
        Budget {
            max_time_per_key: Some(Duration::from_secs(60)),
            max_states_per_key: Some(5_000_000),
        }
    }
}

impl Budget {
    pub fn unlimited() -> Self {
        Budget {
            max_time_per_key: None,
            max_states_per_key: None,
        }
    }

    pub fn with_time(mut self, d: Duration) -> Self {
        self.max_time_per_key = Some(d);
        self
    }

    pub fn with_states(mut self, n: u64) -> Self {
        self.max_states_per_key = Some(n);
        self
    }
}

/// What the checks assume about the nodes' clocks (for TTLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlParams {
    /// The largest skew of any node's wall clock from the harness's, either
    /// way (ms): the nemesis's clock-skew fault, 0 without it.
    pub max_skew_ms: u64,
    /// The nodes' `cache.expiry_tick_ms`.
    pub tick_ms: u64,
    /// Allowance for measurement: deadlines and clocks in whole ms, wall
    /// clock steps, the node's clock read after the harness's (ms).
    pub slack_ms: u64,
}

impl Default for TtlParams {
    /// The harness's: 90 s skew, 100 ms tick, 250 ms slack.
    fn default() -> Self {
        TtlParams {
            max_skew_ms: 90_000,
            tick_ms: 100,
            slack_ms: 250,
        }
    }
}

impl TtlParams {
    /// The TTL (ms) above which a value written `span_ns` before the key's
    /// last observation cannot expire within the history: its deadline is
    /// at least its invocation + TTL - skew (stamped by a leader whose clock
    /// may run behind), and no leader's clock (hence no stamp and no
    /// replicated time) is ahead of real time by more than the skew, so it
    /// cannot pass before the history ends unless TTL <= span + 2 x skew.
    /// One more second of slack.
    pub fn long_after(&self, span_ns: u64) -> u64 {
        span_ns.div_ceil(1_000_000) + 2 * self.max_skew_ms + 1_000
    }

    /// How far past its deadline (by the lowest the serving leader's clock
    /// can have been) a linearizable read may return a value: the tick,
    /// plus slack.
    pub fn late_margin_ms(&self) -> u64 {
        self.tick_ms + self.slack_ms
    }
}

/// Checks every key of `history` for linearizability against the register
/// model, keys in parallel (one std thread per core), each within `budget`.
/// An empty history is trivially linearizable: harnesses should assert they
/// recorded enough ops. TTLs are classified with the default
/// [`TtlParams`]; see [`check_with`].
pub fn check(history: &History, budget: Budget) -> Report {
    check_with(history, budget, &TtlParams::default())
}

/// [`check`] with the clock assumptions of the run that recorded `history`
/// (they decide which TTLs are short enough to expire within it).
pub fn check_with(history: &History, budget: Budget, params: &TtlParams) -> Report {
    let start = Instant::now();
    let mut keys: Vec<(&str, Vec<usize>)> = history.by_key().into_iter().collect();
    // Largest keys first, for load balance.
    keys.sort_by_key(|(_, idx)| std::cmp::Reverse(idx.len()));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(keys.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(keys.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, idx)) = keys.get(i) else { break };
                    let r = check_key(history, key, idx, &budget, params);
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                }
            });
        }
    });
    let mut keys = results.into_inner().unwrap_or_else(|e| e.into_inner());
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    Report {
        keys,
        elapsed: start.elapsed(),
    }
}

fn check_key(
    history: &History,
    key: &str,
    idx: &[usize],
    budget: &Budget,
    params: &TtlParams,
) -> KeyReport {
    let start = Instant::now();
    let mut interner = Interner::new();
    let ops = match prepare(history, idx, &mut interner, params) {
        Ok(ops) => ops,
        Err(reason) => {
            return KeyReport {
                key: key.to_string(),
                verdict: Verdict::Invalid { reason },
                ops: 0,
                states: 0,
                elapsed: start.elapsed(),
            };
        }
    };
    let mut search = Search::new(&ops);
    let outcome = search.run(budget, start);
    let verdict = match outcome {
        SearchOutcome::Linearizable => Verdict::Linearizable,
        SearchOutcome::Exhausted(reason) => Verdict::Unknown { reason },
        SearchOutcome::NotLinearizable => {
            let dead_end = search
                .dead_end()
                .expect("a failed search records a dead end");
            Verdict::NotLinearizable(Box::new(report::anomaly(
                history, key, &ops, dead_end, &interner,
            )))
        }
    };
    KeyReport {
        key: key.to_string(),
        verdict,
        ops: ops.len(),
        states: search.states(),
        elapsed: start.elapsed(),
    }
}
