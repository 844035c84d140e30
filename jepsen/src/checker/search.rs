//! The search: Wing & Gong's linearizability search with Lowe's
//! memoisation, for one key's model ops.
//!
//! Owns: the entry list and its dancing links, the memo of configurations,
//! the treatment of indeterminate ops (optional, with the three pruning rules
//! below), the budget accounting, and the record of the longest dead end.
//!
//! Invariants: the search answers [`SearchOutcome::Linearizable`] only if it
//! found an order of every completed op (plus some indeterminate ones) that
//! the model accepts and that respects real time; it answers
//! [`SearchOutcome::NotLinearizable`] only after exhausting the space (every
//! pruning below is sound, checked against brute force in
//! `tests::brute`); anything else is [`SearchOutcome::Exhausted`]. After a
//! `NotLinearizable`, [`Search::dead_end`] holds the longest prefix found.
//!
//! Does not: read the history (it sees [`KOp`]s only), explain or print an
//! anomaly (see [`super::report`]), or run keys in parallel (see
//! [`super::check`]).
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
//! `expected`): the not-applied case is the same as not linearizing it.
//! Likewise an indeterminate expire or persist is modelled only as having
//! found the key ("not found" changes nothing). An indeterminate read has no
//! effect and is dropped, as are `Fail` ops.
//!
//! Indeterminate ops never leave the pending set, so without care each one
//! doubles the configurations (with and without it) long after its effect was
//! overwritten, and a failing search over `k` crashed writes costs `2^k`.
//! Three measures keep this in check:
//!
//! 1. Completed candidates are tried before indeterminate ones, and an
//!    indeterminate op is only linearized if some current candidate could
//!    directly follow it (one-step lookahead, no memoised state created).
//! 2. A blind write (write with or without a TTL, delete) may not directly
//!    follow an indeterminate op. If a linearization has one there, nothing
//!    observed the indeterminate op's effect, so the same linearization
//!    without it (it "never happened") is also valid: searching only linearizations without
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

use super::Budget;
use super::model::{KOp, State, Step, TtlClass, class_of, value_of};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

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

/// What [`Search::run`] found.
pub(super) enum SearchOutcome {
    Linearizable,
    NotLinearizable,
    Exhausted(String),
}

/// The longest dead end of a failed search, as op indices into the
/// [`KOp`] slice the search was given.
pub(super) struct DeadEnd {
    /// Completed ops in `prefix` (how dead ends are compared).
    completed: usize,
    /// A legal linearization of a prefix of the history, in order.
    pub(super) prefix: Vec<u32>,
    /// The op that could not be placed after `prefix`: the outstanding op
    /// that returned first.
    pub(super) stuck: Option<u32>,
    /// Other candidates at that point (at most 32), then any indeterminate
    /// ops trimmed from the end of the path.
    pub(super) pending: Vec<u32>,
}

pub(super) struct Search<'a> {
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
    /// The other non-blind indeterminate ops (keepttl writes, expire,
    /// persist): few, walked in full by [`Search::observable`].
    indet_other_nonblind: Vec<u32>,
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
    best: Option<DeadEnd>,
}

impl<'a> Search<'a> {
    pub(super) fn new(ops: &'a [KOp]) -> Self {
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
        let mut indet_other_nonblind = Vec::new();
        for &(_, op) in &indets {
            match ops[op as usize].step {
                Step::CasApplied { expected, .. } => {
                    indet_cas_by_expected.entry(expected).or_default().push(op)
                }
                st if !st.is_blind() => indet_other_nonblind.push(op),
                _ => {}
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
            indet_other_nonblind,
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

    /// Searches within `budget` (its time counted from `start`).
    pub(super) fn run(&mut self, budget: &Budget, start: Instant) -> SearchOutcome {
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
        // Never let a blind write (write with or without TTL, delete) directly follow an
        // indeterminate op: nothing could have observed that op's effect,
        // so dropping it ("it never happened") gives an equally valid
        // linearization, and that one is searched. Without this rule every
        // pending indeterminate write doubles the space of a failing search.
        // The flag is part of the memoised configuration, since it narrows
        // what may come next.
        if self.after_indet && kop.step.is_blind() {
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
    /// [`Search::try_push`] only a non-blind op (read, CAS, keepttl write,
    /// expire, persist) may, so if none is legal in `state` the
    /// configuration is a dead end and need not be created. Cheap compared
    /// with a memoised push, and it matters: at every dead end all pending
    /// indeterminate ops are tried.
    fn observable(&self, op: u32, state: State, bound: u64) -> bool {
        let follows = |o: u32| {
            let st = self.ops[o as usize].step;
            !st.is_blind() && st.apply(state).is_some()
        };
        let mut e = self.main.next[0];
        while e != 0 && self.entry_is_call[e as usize] {
            if follows(self.entry_op[e as usize]) {
                return true;
            }
            e = self.main.next[e as usize];
        }
        let pending = |o: u32| {
            o != op
                && self.bits[(o / 64) as usize] & (1 << (o % 64)) == 0
                && self.ops[o as usize].invoke <= bound
        };
        // Indeterminate CASes are legal iff the value is their expected one
        // (or, for a short TTL, absent: it may expire first): look them up
        // by value rather than walk the (long) list of pending
        // indeterminate ops.
        let mut values = vec![value_of(state)];
        if class_of(state) == TtlClass::Short {
            values.push(0);
        }
        for v in values {
            if let Some(cases) = self.indet_cas_by_expected.get(&v)
                && cases.iter().any(|&o| pending(o))
            {
                return true;
            }
        }
        self.indet_other_nonblind
            .iter()
            .any(|&o| pending(o) && self.ops[o as usize].step.apply(state).is_some())
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
        self.best = Some(DeadEnd {
            completed,
            prefix: self.stack[..len].iter().map(|f| f.op).collect(),
            stuck,
            pending,
        });
    }

    /// Configurations memoised so far.
    pub(super) fn states(&self) -> u64 {
        self.cache.len() as u64
    }

    /// After [`SearchOutcome::NotLinearizable`]: the longest dead end met.
    pub(super) fn dead_end(&self) -> Option<&DeadEnd> {
        self.best.as_ref()
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
}
