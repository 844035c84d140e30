//! What a check reports: verdicts, anomaly descriptions, and their printed
//! form.
//!
//! Owns: [`Verdict`], [`KeyReport`], [`Overall`], [`Report`] (with
//! [`Report::ok`], the single pass/fail answer), [`Anomaly`] with [`OpRef`]
//! and [`PlacedOp`], building an anomaly from the search's dead end, and the
//! `Display` of all of these.
//!
//! Invariants: [`Report::ok`] is true only if every key is
//! [`Verdict::Linearizable`]; an anomaly's prefix replays legally through the
//! model, op by op, from the absent state; [`OpRef::event_index`] always
//! indexes the checked [`History`]'s events.
//!
//! Does not: search (see [`super::search`]) or decide the model's legality
//! (see [`super::model`]); it only replays the dead end it is given.
//!
//! # Verdicts
//!
//! A key's search that runs out of its [`Budget`](super::Budget) yields
//! [`Verdict::Unknown`], and **Unknown is a failure**: [`Report::ok`] is
//! false for it. A checker that passes when it gives up would let exactly the
//! hardest histories — the ones with many concurrent or indeterminate ops,
//! which is what faults produce — through unchecked; the fix for an Unknown
//! is a bigger budget or a smaller test, never silence.
//!
//! When a key is not linearizable the report carries an [`Anomaly`]: the
//! longest linearizable prefix the search found, the register state after it,
//! and the op that could not be placed after it (the earliest-returning
//! outstanding op), with the other candidates that were pending there.

use super::model::{Interner, KOp, State, Step, TtlClass, class_of};
use super::search::DeadEnd;
use crate::history::{Event, History, Value};
use std::fmt;
use std::time::Duration;

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
    /// The TTL class of `state_after`.
    pub ttl_after: TtlClass,
}

/// Why a key is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub key: String,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<PlacedOp>,
    /// The register state after `prefix`.
    pub state_after_prefix: Option<Value>,
    /// Its TTL class.
    pub ttl_after_prefix: TtlClass,
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
            writeln!(
                f,
                "    {}  => state {}",
                p.op,
                show_ttl(&p.state_after, p.ttl_after)
            )?;
        }
        writeln!(
            f,
            "  register after prefix: {}",
            show_ttl(&self.state_after_prefix, self.ttl_after_prefix)
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

fn show_ttl(v: &Option<Value>, ttl: TtlClass) -> String {
    match ttl {
        TtlClass::None => show(v),
        TtlClass::Short => format!("{} (short TTL)", show(v)),
        TtlClass::Long => format!("{} (long TTL)", show(v)),
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

/// The result of [`check`](super::check): one [`KeyReport`] per key, sorted by key.
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

/// Explains the search's dead end for `key` in terms of the history: replays
/// its prefix through the model and says why its stuck op cannot follow.
pub(super) fn anomaly(
    history: &History,
    key: &str,
    ops: &[KOp],
    best: &DeadEnd,
    interner: &Interner,
) -> Anomaly {
    let opref = |op: u32| {
        let i = ops[op as usize].event;
        OpRef {
            event_index: i,
            event: history.events[i].clone(),
        }
    };
    let mut state: State = 0;
    let mut prefix = Vec::with_capacity(best.prefix.len());
    for &op in &best.prefix {
        state = ops[op as usize]
            .step
            .apply(state)
            .expect("the recorded prefix is a legal sequence");
        prefix.push(PlacedOp {
            op: opref(op),
            state_after: interner.value(state),
            ttl_after: class_of(state),
        });
    }
    let reason = match best.stuck {
        None => "no op can be placed".to_string(),
        Some(op) => {
            let st = ops[op as usize].step;
            let cur = interner.describe(state);
            // A short TTL may have expired: the op is checked on absent too.
            let or_absent = if class_of(state) == TtlClass::Short {
                " (nor absent, had it expired)"
            } else {
                ""
            };
            match (st.apply(state), st) {
                (None, Step::Read(v)) => format!(
                    "it read {} but the register holds {cur}, and no pending op can make it so first",
                    show(&interner.value(v))
                ),
                (None, Step::CasApplied { expected, .. }) => format!(
                    "it reports a successful CAS from {} but the register holds {cur}{or_absent}, and no pending op can make it so first",
                    show(&interner.value(expected))
                ),
                (None, Step::CasMismatch { .. }) => format!(
                    "it reports a CAS mismatch but the register holds its expected value {cur}, and no pending op can change it first"
                ),
                (None, Step::SetTtl(_)) => format!(
                    "it found the key (expire/persist answered 200) but the register holds {cur}, and no pending op can write it first"
                ),
                (None, Step::SetTtlMissing) => format!(
                    "it did not find the key (expire/persist answered 404) but the register holds {cur}, and no pending op can remove it first"
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
        ttl_after_prefix: class_of(state),
        stuck: best.stuck.map(opref),
        reason,
        pending: best.pending.iter().map(|&op| opref(op)).collect(),
    }
}
