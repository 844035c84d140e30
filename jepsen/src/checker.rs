//! Linearizability checker for per-key registers.
//!
//! # Model
//!
//! Each key is an independent register whose state is `Option<Value>`
//! (initially `None`, the key is absent). Because the keys do not interact,
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
//!
//! Values are interned to `u32` per key (0 = absent) so that model states are
//! cheap to copy, compare and hash.
//!
//! # Algorithm
//!
//! Wing & Gong's search with Lowe's memoisation, as in Porcupine
//! (`checkSingle`): every completed op contributes a *call* entry at its
//! invocation time and a *return* entry at its completion time, in one list
//! sorted by time (at equal times calls come first, i.e. touching intervals
//! count as concurrent: with a single clock we cannot tell their order, and
//! assuming one could only invent anomalies). A DFS walks the list from its
//! head: a call entry before the first return entry is an op that may take
//! effect now (it was invoked before every still-outstanding op returned). If
//! the model accepts it, the op is *linearized*: both its entries are unlinked
//! from the list (dancing links, so undo is O(1)), the op is pushed on a stack
//! and the walk restarts at the head. Reaching a return entry means the op
//! that returned first among the outstanding ones cannot be placed next:
//! backtrack, i.e. pop the last op, restore the state, relink it, and try the
//! next candidate after it. The history is linearizable iff every completed op
//! gets linearized.
//!
//! **Memoisation.** The rest of the search depends only on *which* ops are
//! linearized and the model state, not on their order. So each configuration
//! `(bitset of linearized ops, state)` is stored in a hash set when first
//! reached, and reaching it again is pruned (a configuration in the set was
//! either already explored without success or is an ancestor on the current
//! path). The bitset is hashed incrementally (Zobrist: XOR of a random word
//! per op) so a lookup costs one bitset comparison. This turns the naive
//! `n!` search into one bounded by the number of reachable configurations:
//! with at most `c` ops concurrent at any time it is roughly
//! `O(n · 2^c · values)`, in practice close to linear for histories from a
//! correct system, which linearize greedily with little backtracking.
//!
//! # Indeterminate operations
//!
//! An op whose outcome is unknown (timeout, cut connection, "outcome unknown")
//! may take effect at any point after its invocation, or never. It has no
//! return entry (its completion time is +infinity); instead such ops live in a
//! second list sorted by invocation, and at a dead end (the walk reached the
//! first return entry, at time `t`) the search also tries every not yet
//! linearized indeterminate op invoked at or before `t`. They are *optional*:
//! the search succeeds as soon as all completed ops are linearized. ("Never"
//! and "at the very end" are indistinguishable, so this is exactly Porcupine's
//! treatment with return time +infinity, minus the useless tail.) An
//! indeterminate CAS is modelled only as *applied* (state must equal
//! `expected`): the not-applied case is the same as not linearizing it. An
//! indeterminate read has no effect and is dropped, as are `Fail` ops.
//!
//! Indeterminate ops never leave the pending set, so without care each one
//! doubles the configurations (with and without it) long after its effect was
//! overwritten, and a failing search over `k` crashed writes costs `2^k`.
//! Three measures keep this in check:
//!
//! 1. Completed candidates are tried before indeterminate ones, and an
//!    indeterminate op is only linearized if some current candidate could
//!    directly follow it (one-step lookahead, no memoised state created).
//! 2. A blind write (write, delete) may not directly follow an indeterminate
//!    op. If a linearization has one there, nothing observed the
//!    indeterminate op's effect, so the same linearization without it (it
//!    "never happened") is also valid: searching only linearizations without
//!    that pattern loses nothing. Whether the last op was indeterminate is
//!    part of the memoised configuration, since it narrows what may follow.
//! 3. Dominance: a configuration `(B, s)` is pruned when `(B \ W, s)` was
//!    already reached, for `W` a set of indeterminate ops in `B` (we look up
//!    "all of them" and each of the 8 most recent singly). That is sound
//!    because `(B \ W, s)` *dominates* `(B, s)`: the ops of `W` are optional
//!    and impose no real-time constraint, so every completion from `(B, s)` is
//!    one from `(B \ W, s)`, whose subtree is (being) explored anyway.
//!
//! The randomized test against a brute-force enumeration of all
//! linearizations (`tests::brute::brute_force_agrees_on_*`) guards these
//! shortcuts. Measured effect on a 10,000-op, 2-key, 10-client history with
//! 3% indeterminate ops: without rule 2 a debug-build check takes over 70 s,
//! with all three about 5 s (0.6–1.8 s release), against 0.1 s release with no
//! indeterminate ops at all.
//!
//! # Budget and verdicts
//!
//! The problem is NP-complete in general, so each key's search is bounded by a
//! [`Budget`] (wall time and/or number of configurations). A search that runs
//! out yields [`Verdict::Unknown`], and **Unknown is a failure**:
//! [`Report::ok`] is false for it. A checker that passes when it gives up would
//! let exactly the hardest histories — the ones with many concurrent or
//! indeterminate ops, which is what faults produce — through unchecked; the
//! fix for an Unknown is a bigger budget or a smaller test, never silence.
//!
//! When a key is not linearizable the report carries an [`Anomaly`]: the
//! longest linearizable prefix the search found, the register state after it,
//! and the op that could not be placed after it (the earliest-returning
//! outstanding op), with the other candidates that were pending there.

use crate::history::{Event, History, Op, Outcome, Ret, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// An event of the history, by index, with a copy for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRef {
    /// Index into `History::events`.
    pub event_index: usize,
    pub event: Event,
}

impl fmt::Display for OpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.event_index, self.event)
    }
}

/// An op of a linearization and the register state right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOp {
    pub op: OpRef,
    pub state_after: Option<Value>,
}

/// Why a key is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub key: String,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<PlacedOp>,
    /// The register state after `prefix`.
    pub state_after_prefix: Option<Value>,
    /// The op that could not be placed after `prefix`: of the ops still
    /// outstanding, the one that returned first.
    pub stuck: Option<OpRef>,
    /// Why `stuck` cannot be placed there (model-level explanation).
    pub reason: String,
    /// Other ops that were candidates at that point (invoked before `stuck`
    /// returned, not in the prefix); at most 32.
    pub pending: Vec<OpRef>,
}

/// How many prefix ops [`Anomaly`]'s `Display` shows.
const SHOWN_PREFIX: usize = 12;

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?} is not linearizable", self.key)?;
        let skip = self.prefix.len().saturating_sub(SHOWN_PREFIX);
        writeln!(
            f,
            "  longest linearizable prefix: {} ops{}",
            self.prefix.len(),
            if skip > 0 {
                format!(" (last {SHOWN_PREFIX} shown)")
            } else {
                String::new()
            }
        )?;
        for p in &self.prefix[skip..] {
            writeln!(f, "    {}  => state {}", p.op, show(&p.state_after))?;
        }
        writeln!(
            f,
            "  register after prefix: {}",
            show(&self.state_after_prefix)
        )?;
        match &self.stuck {
            Some(s) => writeln!(f, "  cannot place next: {s}")?,
            None => writeln!(f, "  cannot place next: (no op)")?,
        }
        writeln!(f, "  because: {}", self.reason)?;
        if !self.pending.is_empty() {
            writeln!(f, "  other candidates at that point:")?;
            for p in &self.pending {
                writeln!(f, "    {p}")?;
            }
        }
        Ok(())
    }
}

fn show(v: &Option<Value>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "absent".into(),
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Box<Anomaly>),
    /// The budget ran out before a verdict: counts as a failure.
    Unknown {
        reason: String,
    },
    /// The history of this key is malformed (e.g. a read with a write's
    /// result): counts as a failure.
    Invalid {
        reason: String,
    },
}

/// The result for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    pub key: String,
    pub verdict: Verdict,
    /// Ops that took part in the search (after dropping `Fail`s and
    /// indeterminate reads).
    pub ops: usize,
    /// Configurations memoised by the search.
    pub states: u64,
    pub elapsed: Duration,
}

/// The overall verdict, the worst of the per-key verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    Linearizable,
    NotLinearizable,
    Invalid,
    Unknown,
}

/// The result of [`check`]: one [`KeyReport`] per key, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub keys: Vec<KeyReport>,
    pub elapsed: Duration,
}

impl Report {
    /// True iff every key is linearizable. Unknown and Invalid are failures.
    pub fn ok(&self) -> bool {
        self.overall() == Overall::Linearizable
    }

    /// NotLinearizable beats Invalid beats Unknown beats Linearizable.
    pub fn overall(&self) -> Overall {
        let mut o = Overall::Linearizable;
        for k in &self.keys {
            let v = match k.verdict {
                Verdict::Linearizable => Overall::Linearizable,
                Verdict::NotLinearizable(_) => return Overall::NotLinearizable,
                Verdict::Invalid { .. } => Overall::Invalid,
                Verdict::Unknown { .. } => Overall::Unknown,
            };
            o = match (o, v) {
                (Overall::Invalid, _) | (_, Overall::Invalid) => Overall::Invalid,
                (Overall::Unknown, _) | (_, Overall::Unknown) => Overall::Unknown,
                _ => Overall::Linearizable,
            };
        }
        o
    }

    pub fn key(&self, key: &str) -> Option<&KeyReport> {
        self.keys.iter().find(|k| k.key == key)
    }

    /// The keys whose verdict is not Linearizable.
    pub fn failures(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys
            .iter()
            .filter(|k| k.verdict != Verdict::Linearizable)
    }

    /// The anomalies found, if any.
    pub fn anomalies(&self) -> impl Iterator<Item = &Anomaly> {
        self.keys.iter().filter_map(|k| match &k.verdict {
            Verdict::NotLinearizable(a) => Some(&**a),
            _ => None,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: usize = self.keys.iter().map(|k| k.ops).sum();
        writeln!(
            f,
            "{:?}: {} keys, {} ops checked in {:.3?}",
            self.overall(),
            self.keys.len(),
            ops,
            self.elapsed
        )?;
        for k in &self.keys {
            let v = match &k.verdict {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::NotLinearizable(_) => "NOT LINEARIZABLE".to_string(),
                Verdict::Unknown { reason } => format!("UNKNOWN ({reason})"),
                Verdict::Invalid { reason } => format!("INVALID ({reason})"),
            };
            writeln!(
                f,
                "  key {:?}: {v}; {} ops, {} states, {:.3?}",
                k.key, k.ops, k.states, k.elapsed
            )?;
        }
        for a in self.anomalies() {
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Checks every key of `history` for linearizability against the register
/// model, keys in parallel (one std thread per core), each within `budget`.
/// An empty history is trivially linearizable: harnesses should assert they
/// recorded enough ops.
pub fn check(history: &History, budget: Budget) -> Report {
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
                    let r = check_key(history, key, idx, &budget);
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

// ---------------------------------------------------------------------------
// Per-key preparation

/// Interned register value: 0 = absent.
type State = u32;

/// An op's effect in the model, with values interned.
#[derive(Debug, Clone, Copy)]
enum Step {
    Read(State),
    Write(State),
    /// CAS that applied (or indeterminate CAS, modelled as applied).
    CasApplied {
        expected: State,
        new: State,
    },
    /// CAS that answered "mismatch".
    CasMismatch {
        expected: State,
    },
    Delete,
}

impl Step {
    /// The model: `Some(new_state)` if legal in `state`.
    #[inline]
    fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Read(v) => (state == v).then_some(state),
            Step::Write(v) => Some(v),
            Step::CasApplied { expected, new } => (state == expected).then_some(new),
            Step::CasMismatch { expected } => (state != expected).then_some(state),
            Step::Delete => Some(0),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct KOp {
    event: usize,
    step: Step,
    invoke: u64,
    /// `None` = indeterminate (+infinity).
    ret: Option<u64>,
}

struct Interner {
    ids: HashMap<Value, State>,
    values: Vec<Option<Value>>, // index = id
}

impl Interner {
    fn new() -> Self {
        Interner {
            ids: HashMap::new(),
            values: vec![None],
        }
    }

    fn id(&mut self, v: &Option<Value>) -> State {
        match v {
            None => 0,
            Some(v) => {
                if let Some(&id) = self.ids.get(v) {
                    return id;
                }
                let id = self.values.len() as State;
                // The top bit is taken by `config_state`.
                assert!(id < 1 << 31, "too many distinct values for one key");
                self.ids.insert(v.clone(), id);
                self.values.push(Some(v.clone()));
                id
            }
        }
    }

    fn value(&self, id: State) -> Option<Value> {
        self.values[id as usize].clone()
    }
}

/// Turns a key's events into model ops, dropping those without effect.
fn prepare(history: &History, idx: &[usize], interner: &mut Interner) -> Result<Vec<KOp>, String> {
    let mut ops = Vec::with_capacity(idx.len());
    for &i in idx {
        let e = &history.events[i];
        e.validate().map_err(|r| format!("event #{i}: {r}"))?;
        let step = match (&e.op, &e.outcome) {
            // Known not applied: no effect. (A CAS mismatch is Ok(Cas(false)).)
            (_, Outcome::Fail) => continue,
            // A read with no answer tells nothing.
            (Op::Read, Outcome::Indeterminate) => continue,
            (Op::Read, Outcome::Ok(Ret::Read(v))) => Step::Read(interner.id(v)),
            (Op::Write(v), _) => Step::Write(interner.id(&Some(v.clone()))),
            (Op::Cas { expected, new: _ }, Outcome::Ok(Ret::Cas(false))) => Step::CasMismatch {
                expected: interner.id(expected),
            },
            (Op::Cas { expected, new }, _) => Step::CasApplied {
                expected: interner.id(expected),
                new: interner.id(&Some(new.clone())),
            },
            (Op::Delete, _) => Step::Delete,
            (Op::Read, _) => unreachable!("validate() rejects mismatched results"),
        };
        let ret = match e.outcome {
            Outcome::Indeterminate => None,
            _ => e.complete_ns,
        };
        ops.push(KOp {
            event: i,
            step,
            invoke: e.invoke_ns,
            ret,
        });
    }
    Ok(ops)
}

fn check_key(history: &History, key: &str, idx: &[usize], budget: &Budget) -> KeyReport {
    let start = Instant::now();
    let mut interner = Interner::new();
    let ops = match prepare(history, idx, &mut interner) {
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
            Verdict::NotLinearizable(Box::new(search.anomaly(history, key, &interner)))
        }
    };
    KeyReport {
        key: key.to_string(),
        verdict,
        ops: ops.len(),
        states: search.cache.len() as u64,
        elapsed: start.elapsed(),
    }
}

// ---------------------------------------------------------------------------
// The search

/// Identity hasher: cache keys are already random (Zobrist) words.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A memoised configuration: linearized set (bitset) and model state. Hashes
/// as its Zobrist hash mixed with the state; equality compares the bitsets.
#[derive(Clone, PartialEq, Eq)]
struct Config {
    zobrist: u64,
    state: State,
    bits: Box<[u64]>,
}

impl Hash for Config {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.zobrist ^ (self.state as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Doubly linked circular list over node ids `1..=n`; node 0 is the sentinel.
/// Unlinking keeps a node's own pointers, so relinking in reverse order
/// restores the list exactly (dancing links).
struct Links {
    next: Vec<u32>,
    prev: Vec<u32>,
}

impl Links {
    fn new(n: usize) -> Self {
        let len = n + 1;
        Links {
            next: (0..len).map(|i| ((i + 1) % len) as u32).collect(),
            prev: (0..len).map(|i| ((i + len - 1) % len) as u32).collect(),
        }
    }
    #[inline]
    fn unlink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }
    #[inline]
    fn relink(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = x;
        self.prev[n as usize] = x;
    }
}

const NONE: u32 = u32::MAX;

/// The state memoised with a configuration: the register state plus, in the
/// top bit, whether the last op linearized was indeterminate.
#[inline]
fn config_state(state: State, after_indet: bool) -> u32 {
    state | (after_indet as u32) << 31
}
/// How many recently linearized indeterminate ops are tried singly for the
/// dominance check.
const DOMINANCE_SINGLES: usize = 8;

#[derive(Clone, Copy)]
enum Cursor {
    /// At this node of the main (call/return entry) list.
    Main(u32),
    /// Trying indeterminate ops from this node of their list, while invoked
    /// at or before `bound` (the time of the first outstanding return).
    Indet { node: u32, bound: u64 },
}

struct Frame {
    op: u32,
    prev_state: State,
    prev_after_indet: bool,
    /// For indeterminate ops: the bound in force when it was tried.
    bound: u64,
}

enum SearchOutcome {
    Linearizable,
    NotLinearizable,
    Exhausted(String),
}

struct Best {
    completed: usize,
    prefix: Vec<u32>,
    stuck: Option<u32>,
    pending: Vec<u32>,
}

struct Search<'a> {
    ops: &'a [KOp],
    // Main list: entries of completed ops; entry ids 1..=2m.
    main: Links,
    entry_op: Vec<u32>,
    entry_is_call: Vec<bool>,
    entry_time: Vec<u64>,
    call_entry: Vec<u32>, // per op, NONE for indeterminate
    ret_entry: Vec<u32>,
    // Indeterminate ops sorted by invocation; node ids 1..=k.
    indet: Links,
    node_op: Vec<u32>,
    op_node: Vec<u32>, // per op, NONE for completed
    zobrist: Vec<u64>,
    /// Indeterminate CASes by expected value (see [`Search::observable`]).
    indet_cas_by_expected: HashMap<State, Vec<u32>>,
    // Search state.
    bits: Vec<u64>,
    ibits: Vec<u64>,
    hash: u64,
    ihash: u64,
    state: State,
    /// The last op linearized is indeterminate (see [`Search::try_push`]).
    after_indet: bool,
    remaining: usize,
    stack: Vec<Frame>,
    indet_stack: Vec<u32>,
    cache: HashSet<Config, BuildHasherDefault<IdHasher>>,
    scratch: Config,
    best: Option<Best>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [KOp]) -> Self {
        let n = ops.len();
        // (time, is_return, op): calls before returns at equal times.
        let mut entries: Vec<(u64, bool, u32)> = Vec::new();
        let mut indets: Vec<(u64, u32)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op.ret {
                Some(r) => {
                    entries.push((op.invoke, false, i as u32));
                    entries.push((r, true, i as u32));
                }
                None => indets.push((op.invoke, i as u32)),
            }
        }
        entries.sort_unstable();
        indets.sort_unstable();
        let mut entry_op = vec![NONE];
        let mut entry_is_call = vec![false];
        let mut entry_time = vec![0];
        let mut call_entry = vec![NONE; n];
        let mut ret_entry = vec![NONE; n];
        for (k, &(t, is_ret, op)) in entries.iter().enumerate() {
            let id = (k + 1) as u32;
            entry_op.push(op);
            entry_is_call.push(!is_ret);
            entry_time.push(t);
            if is_ret {
                ret_entry[op as usize] = id;
            } else {
                call_entry[op as usize] = id;
            }
        }
        let mut node_op = vec![NONE];
        let mut op_node = vec![NONE; n];
        for (k, &(_, op)) in indets.iter().enumerate() {
            node_op.push(op);
            op_node[op as usize] = (k + 1) as u32;
        }
        let mut indet_cas_by_expected: HashMap<State, Vec<u32>> = HashMap::new();
        for &(_, op) in &indets {
            if let Step::CasApplied { expected, .. } = ops[op as usize].step {
                indet_cas_by_expected.entry(expected).or_default().push(op);
            }
        }
        let words = n.div_ceil(64).max(1);
        Search {
            ops,
            main: Links::new(entries.len()),
            entry_op,
            entry_is_call,
            entry_time,
            call_entry,
            ret_entry,
            indet: Links::new(indets.len()),
            node_op,
            op_node,
            indet_cas_by_expected,
            zobrist: (0..n as u64)
                .map(|i| splitmix64(i ^ 0x5EED_0FC0_FFEE))
                .collect(),
            bits: vec![0; words],
            ibits: vec![0; words],
            hash: 0,
            ihash: 0,
            state: 0,
            after_indet: false,
            remaining: entries.len() / 2,
            stack: Vec::new(),
            indet_stack: Vec::new(),
            cache: HashSet::default(),
            scratch: Config {
                zobrist: 0,
                state: 0,
                bits: vec![0; words].into_boxed_slice(),
            },
            best: None,
        }
    }

    fn run(&mut self, budget: &Budget, start: Instant) -> SearchOutcome {
        // The root configuration.
        self.cache.insert(Config {
            zobrist: 0,
            state: 0,
            bits: self.bits.clone().into_boxed_slice(),
        });
        let max_states = budget.max_states_per_key.unwrap_or(u64::MAX);
        let mut iterations: u64 = 0;
        let mut cursor = Cursor::Main(self.main.next[0]);
        loop {
            if self.remaining == 0 {
                return SearchOutcome::Linearizable;
            }
            iterations += 1;
            // Reading the clock every step would cost more than the step.
            if iterations.is_multiple_of(1024)
                && let Some(t) = budget.max_time_per_key
                && start.elapsed() > t
            {
                return SearchOutcome::Exhausted(format!(
                    "time budget {t:?} exhausted after {} states",
                    self.cache.len()
                ));
            }
            if self.cache.len() as u64 > max_states {
                return SearchOutcome::Exhausted(format!("state budget {max_states} exhausted"));
            }
            match cursor {
                Cursor::Main(e) => {
                    // remaining > 0 means an outstanding return entry exists,
                    // and the walk meets it before the end of the list.
                    debug_assert_ne!(e, 0);
                    if self.entry_is_call[e as usize] {
                        let op = self.entry_op[e as usize];
                        cursor = if self.try_push(op, 0) {
                            Cursor::Main(self.main.next[0])
                        } else {
                            Cursor::Main(self.main.next[e as usize])
                        };
                    } else {
                        // The earliest outstanding return: no completed op
                        // invoked before it can go next. Try the optional ops.
                        cursor = Cursor::Indet {
                            node: self.indet.next[0],
                            bound: self.entry_time[e as usize],
                        };
                    }
                }
                Cursor::Indet { node, bound } => {
                    if node != 0 && self.ops[self.node_op[node as usize] as usize].invoke <= bound {
                        let op = self.node_op[node as usize];
                        cursor = if self.try_push(op, bound) {
                            Cursor::Main(self.main.next[0])
                        } else {
                            Cursor::Indet {
                                node: self.indet.next[node as usize],
                                bound,
                            }
                        };
                    } else {
                        // Dead end: backtrack.
                        self.record_best(bound);
                        let Some(frame) = self.stack.pop() else {
                            return SearchOutcome::NotLinearizable;
                        };
                        cursor = self.undo(frame);
                    }
                }
            }
        }
    }

    #[inline]
    fn flip(bits: &mut [u64], op: u32) {
        bits[(op / 64) as usize] ^= 1 << (op % 64);
    }

    /// Linearizes `op` next if the model allows and the resulting
    /// configuration is new and not dominated.
    fn try_push(&mut self, op: u32, bound: u64) -> bool {
        let kop = self.ops[op as usize];
        // Never let a blind write (write, delete) directly follow an
        // indeterminate op: nothing could have observed that op's effect,
        // so dropping it ("it never happened") gives an equally valid
        // linearization, and that one is searched. Without this rule every
        // pending indeterminate write doubles the space of a failing search.
        // The flag is part of the memoised configuration, since it narrows
        // what may come next.
        if self.after_indet && matches!(kop.step, Step::Write(_) | Step::Delete) {
            return false;
        }
        let Some(new_state) = kop.step.apply(self.state) else {
            return false;
        };
        let indet = kop.ret.is_none();
        if indet && !self.observable(op, new_state, bound) {
            return false;
        }
        let z = self.zobrist[op as usize];
        Self::flip(&mut self.bits, op);
        let config = Config {
            zobrist: self.hash ^ z,
            state: config_state(new_state, indet),
            bits: self.bits.clone().into_boxed_slice(),
        };
        if !self.cache.insert(config) {
            Self::flip(&mut self.bits, op);
            return false;
        }
        if indet {
            Self::flip(&mut self.ibits, op);
        }
        let ihash = if indet { self.ihash ^ z } else { self.ihash };
        if ihash != 0
            && self.dominated(
                op,
                indet,
                self.hash ^ z,
                ihash,
                config_state(new_state, indet),
            )
        {
            // Left in the cache: it is covered by its dominator's subtree.
            Self::flip(&mut self.bits, op);
            if indet {
                Self::flip(&mut self.ibits, op);
            }
            return false;
        }
        self.stack.push(Frame {
            op,
            prev_state: self.state,
            prev_after_indet: self.after_indet,
            bound,
        });
        self.state = new_state;
        self.after_indet = indet;
        self.hash ^= z;
        self.ihash = ihash;
        if indet {
            self.indet_stack.push(op);
            self.indet.unlink(self.op_node[op as usize]);
        } else {
            let (c, r) = (self.call_entry[op as usize], self.ret_entry[op as usize]);
            self.main.unlink(c);
            self.main.unlink(r);
            self.remaining -= 1;
        }
        true
    }

    /// One-step lookahead for indeterminate `op` leading to `state`: whether
    /// some current candidate could directly follow it. By the rule in
    /// [`Search::try_push`] only a non-blind op (read, CAS) may, so if none
    /// is legal in `state` the configuration is a dead end and need not be
    /// created. Cheap compared with a memoised push, and it matters: at
    /// every dead end all pending indeterminate ops are tried.
    fn observable(&self, op: u32, state: State, bound: u64) -> bool {
        let follows = |o: u32| {
            let st = self.ops[o as usize].step;
            !matches!(st, Step::Write(_) | Step::Delete) && st.apply(state).is_some()
        };
        let mut e = self.main.next[0];
        while e != 0 && self.entry_is_call[e as usize] {
            if follows(self.entry_op[e as usize]) {
                return true;
            }
            e = self.main.next[e as usize];
        }
        // The only non-blind indeterminate ops are CASes, legal iff the
        // state is their expected value: look them up by value rather than
        // walk the (long) list of pending indeterminate ops.
        let Some(cases) = self.indet_cas_by_expected.get(&state) else {
            return false;
        };
        cases.iter().any(|&o| {
            o != op
                && self.bits[(o / 64) as usize] & (1 << (o % 64)) == 0
                && self.ops[o as usize].invoke <= bound
        })
    }

    /// Whether `(bits, state)` (with `op` already in `bits`) is dominated by
    /// an already reached configuration lacking some indeterminate ops.
    /// `state` is a [`config_state`]: configurations with the "after an
    /// indeterminate op" restriction are compared with restricted ones, which
    /// is sound as that restriction depends only on what comes next.
    fn dominated(&mut self, op: u32, indet: bool, hash: u64, ihash: u64, state: u32) -> bool {
        self.scratch.state = state;
        // All indeterminate ops removed.
        for (s, (b, i)) in self
            .scratch
            .bits
            .iter_mut()
            .zip(self.bits.iter().zip(&self.ibits))
        {
            *s = b & !i;
        }
        self.scratch.zobrist = hash ^ ihash;
        if self.cache.contains(&self.scratch) {
            return true;
        }
        let count = self.indet_stack.len() + indet as usize;
        if count <= 1 {
            return false; // the single removal is the one just tried
        }
        let recent = (indet.then_some(op).into_iter())
            .chain(self.indet_stack.iter().rev().copied())
            .take(DOMINANCE_SINGLES);
        let recent: Vec<u32> = recent.collect();
        for w in recent {
            self.scratch.bits.copy_from_slice(&self.bits);
            Self::flip(&mut self.scratch.bits, w);
            self.scratch.zobrist = hash ^ self.zobrist[w as usize];
            if self.cache.contains(&self.scratch) {
                return true;
            }
        }
        false
    }

    /// Pops `frame`'s op; returns where the walk resumes (after that op).
    fn undo(&mut self, frame: Frame) -> Cursor {
        let op = frame.op;
        let z = self.zobrist[op as usize];
        self.state = frame.prev_state;
        self.after_indet = frame.prev_after_indet;
        self.hash ^= z;
        Self::flip(&mut self.bits, op);
        if self.ops[op as usize].ret.is_none() {
            self.ihash ^= z;
            Self::flip(&mut self.ibits, op);
            self.indet_stack.pop();
            let node = self.op_node[op as usize];
            self.indet.relink(node);
            Cursor::Indet {
                node: self.indet.next[node as usize],
                bound: frame.bound,
            }
        } else {
            let (c, r) = (self.call_entry[op as usize], self.ret_entry[op as usize]);
            self.main.relink(r);
            self.main.relink(c);
            self.remaining += 1;
            Cursor::Main(self.main.next[c as usize])
        }
    }

    /// At a dead end: remember the path if it is the longest so far, with
    /// the op that blocks it and the other candidates.
    /// Paths are compared by completed ops linearized; trailing
    /// indeterminate ops are left out of the recorded prefix (they were
    /// tried only because the path was stuck, and would mislead a reader).
    fn record_best(&mut self, bound: u64) {
        let completed = self.stack.len() - self.indet_stack.len();
        if let Some(b) = &self.best
            && b.completed >= completed
        {
            return;
        }
        let mut pending = Vec::new();
        let mut stuck = None;
        let mut e = self.main.next[0];
        while e != 0 {
            let op = self.entry_op[e as usize];
            if self.entry_is_call[e as usize] {
                if pending.len() < 32 {
                    pending.push(op);
                }
            } else {
                stuck = Some(op);
                break;
            }
            e = self.main.next[e as usize];
        }
        let mut node = self.indet.next[0];
        while node != 0 && pending.len() < 32 {
            let op = self.node_op[node as usize];
            if self.ops[op as usize].invoke > bound {
                break;
            }
            pending.push(op);
            node = self.indet.next[node as usize];
        }
        pending.retain(|&p| Some(p) != stuck);
        let mut len = self.stack.len();
        while len > 0 && self.ops[self.stack[len - 1].op as usize].ret.is_none() {
            len -= 1;
            pending.push(self.stack[len].op);
        }
        self.best = Some(Best {
            completed,
            prefix: self.stack[..len].iter().map(|f| f.op).collect(),
            stuck,
            pending,
        });
    }

    fn anomaly(&self, history: &History, key: &str, interner: &Interner) -> Anomaly {
        let opref = |op: u32| {
            let i = self.ops[op as usize].event;
            OpRef {
                event_index: i,
                event: history.events[i].clone(),
            }
        };
        let best = self
            .best
            .as_ref()
            .expect("a failed search records a dead end");
        let mut state: State = 0;
        let mut prefix = Vec::with_capacity(best.prefix.len());
        for &op in &best.prefix {
            state = self.ops[op as usize]
                .step
                .apply(state)
                .expect("the recorded prefix is a legal sequence");
            prefix.push(PlacedOp {
                op: opref(op),
                state_after: interner.value(state),
            });
        }
        let reason = match best.stuck {
            None => "no op can be placed".to_string(),
            Some(op) => {
                let st = self.ops[op as usize].step;
                let cur = show(&interner.value(state));
                match (st.apply(state), st) {
                    (None, Step::Read(v)) => format!(
                        "it read {} but the register holds {cur}, and no pending op can make it so first",
                        show(&interner.value(v))
                    ),
                    (None, Step::CasApplied { expected, .. }) => format!(
                        "it reports a successful CAS from {} but the register holds {cur}, and no pending op can make it so first",
                        show(&interner.value(expected))
                    ),
                    (None, Step::CasMismatch { .. }) => format!(
                        "it reports a CAS mismatch but the register holds its expected value {cur}, and no pending op can change it first"
                    ),
                    _ => format!(
                        "it is legal on {cur}, but every way of continuing after it reaches a dead end"
                    ),
                }
            }
        };
        Anomaly {
            key: key.to_string(),
            prefix,
            state_after_prefix: interner.value(state),
            stuck: best.stuck.map(opref),
            reason,
            pending: best.pending.iter().map(|&op| opref(op)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_unlink_relink_restores_order() {
        let mut l = Links::new(4);
        l.unlink(2);
        l.unlink(3);
        assert_eq!(l.next[1], 4);
        l.relink(3);
        l.relink(2);
        let mut order = vec![];
        let mut x = l.next[0];
        while x != 0 {
            order.push(x);
            x = l.next[x as usize];
        }
        assert_eq!(order, vec![1, 2, 3, 4]);
    }

    #[test]
    fn model_steps() {
        assert_eq!(Step::Read(0).apply(0), Some(0));
        assert_eq!(Step::Read(1).apply(0), None);
        assert_eq!(Step::Write(2).apply(1), Some(2));
        assert_eq!(
            Step::CasApplied {
                expected: 1,
                new: 3
            }
            .apply(1),
            Some(3)
        );
        assert_eq!(
            Step::CasApplied {
                expected: 1,
                new: 3
            }
            .apply(2),
            None
        );
        assert_eq!(Step::CasMismatch { expected: 1 }.apply(1), None);
        assert_eq!(Step::CasMismatch { expected: 1 }.apply(2), Some(2));
        assert_eq!(Step::Delete.apply(5), Some(0));
    }
}
