//! The register model and the per-key preparation of a history.
//!
//! Owns: [`State`] (a key's register state: its value interned to `u32`, 0 =
//! absent, and the value's [`TtlClass`]), [`Step`] (an op's effect and its
//! legality in a state: the sequential specification in the table of
//! [`super`], with expiry), [`KOp`] (a model op with its real-time interval)
//! and [`prepare`], which turns one key's events into model ops and decides
//! which TTLs are short (may pass within the history) and which long.
//!
//! # Expiry
//!
//! A value written with a short TTL may become absent at *any* moment after
//! its write took effect (the clocks are skewed, so the harness cannot say
//! when): expiry is a model transition `(v, short) -> absent`. Nothing else
//! happens by itself: an absent key stays absent until the next write, and a
//! value with no TTL or a long one stays until changed. The transition is
//! folded into [`Step::apply`] lazily: an op on a short-TTL state is legal
//! if it is legal on that state or on absent (the key expired just before
//! it). This is exact: an expiry between two ops can only matter to the
//! next op, so a linearization with explicit expiries can move each one to
//! just before the op that observes it. When an op is legal both ways with
//! different results (a CAS mismatch on another value, a keepttl write),
//! the unexpired result is kept, because it *subsumes* the expired one:
//! `(v, short)` can do everything `absent` can (it may expire first) and
//! `(v, short)` everything `(v, none)` can; this relation is a simulation
//! (checked case by case in `ttl_steps` and against a brute force with
//! explicit expiry transitions in `tests::brute`). So the model stays
//! deterministic and the search, its memo and its pruning rules are
//! unchanged.
//!
//! Invariants: interned ids are stable for one key's check and below `2^29`
//! (the TTL class and the search's memo flag live above); `prepare` keeps
//! the events' order and drops exactly the ops that cannot affect the
//! verdict (`Fail`s and indeterminate reads); every returned [`KOp`] of a
//! completed op has `ret >= invoke` (validated per event).
//!
//! Does not: search, decide verdicts, or format anything for people.

use super::TtlParams;
use crate::history::{History, Op, Outcome, Ret, Value};
use std::collections::HashMap;

/// A key's register state: the interned value in the low [`VALUE_BITS`]
/// bits (0 = absent) and its TTL class ([`TtlClass`]) above them. The top
/// bit is reserved by the search's memoised state. Absent is always 0 (no
/// class).
pub(super) type State = u32;

/// Bits of a [`State`] that hold the interned value.
const VALUE_BITS: u32 = 29;
const VALUE_MASK: u32 = (1 << VALUE_BITS) - 1;

/// What a value's time to live lets it do by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TtlClass {
    /// No deadline: it stays until changed.
    None,
    /// A deadline that may pass within the history: the key may become
    /// absent at any moment (expiry is a model transition).
    Short,
    /// A deadline that cannot pass within the history, whatever the clocks
    /// (see [`TtlParams::long_after`]): it stays until changed.
    Long,
}

impl TtlClass {
    fn bits(self) -> u32 {
        match self {
            TtlClass::None => 0,
            TtlClass::Short => 1,
            TtlClass::Long => 2,
        }
    }
}

/// The interned value of a state (0 = absent).
#[inline]
pub(super) fn value_of(s: State) -> State {
    s & VALUE_MASK
}

/// The TTL class of a state (absent: [`TtlClass::None`]).
#[inline]
pub(super) fn class_of(s: State) -> TtlClass {
    match s >> VALUE_BITS & 3 {
        1 => TtlClass::Short,
        2 => TtlClass::Long,
        _ => TtlClass::None,
    }
}

#[inline]
fn state(value: State, class: TtlClass) -> State {
    if value == 0 {
        0
    } else {
        value | class.bits() << VALUE_BITS
    }
}

/// An op's effect in the model, with values interned (value ids, no class).
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    Read(State),
    /// A plain write (class None) or a write with a TTL.
    Write(State, TtlClass),
    /// A write that keeps the key's TTL class (none if it was absent).
    WriteKeep(State),
    /// CAS that applied (or indeterminate CAS, modelled as applied); a CAS
    /// is a plain PUT, so it clears the TTL.
    CasApplied {
        expected: State,
        new: State,
    },
    /// CAS that answered "mismatch".
    CasMismatch {
        expected: State,
    },
    Delete,
    /// Expire (class Short or Long) or persist (class None) that found the
    /// key (or indeterminate, modelled as found: not found changes nothing).
    SetTtl(TtlClass),
    /// Expire or persist that answered "not found".
    SetTtlMissing,
}

impl Step {
    /// The model: `Some(new_state)` if legal in `state`.
    ///
    /// Expiry is folded in lazily: a key with a short TTL may expire at any
    /// moment, so an op is also legal if it is legal on the absent state,
    /// and then the key expired just before it. When both are legal the
    /// unexpired outcome is taken: it *subsumes* the expired one (every
    /// continuation legal after the expired outcome is legal after the
    /// unexpired one, which can still expire before its next op; see the
    /// module docs), so nothing is lost and the model stays deterministic.
    #[inline]
    pub(super) fn apply(self, s: State) -> Option<State> {
        match self.apply_now(s) {
            Some(n) => Some(n),
            None if class_of(s) == TtlClass::Short => self.apply_now(0),
            None => None,
        }
    }

    /// The sequential specification without expiry.
    #[inline]
    fn apply_now(self, s: State) -> Option<State> {
        let v = value_of(s);
        match self {
            Step::Read(r) => (v == r).then_some(s),
            Step::Write(n, class) => Some(state(n, class)),
            Step::WriteKeep(n) => Some(state(n, class_of(s))),
            Step::CasApplied { expected, new } => (v == expected).then_some(new),
            Step::CasMismatch { expected } => (v != expected).then_some(s),
            Step::Delete => Some(0),
            Step::SetTtl(class) => (v != 0).then_some(state(v, class)),
            Step::SetTtlMissing => (v == 0).then_some(0),
        }
    }

    /// A blind op: legal in every state, with a result that does not depend
    /// on it (the search's rule about indeterminate ops relies on this).
    #[inline]
    pub(super) fn is_blind(self) -> bool {
        matches!(self, Step::Write(..) | Step::Delete)
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct KOp {
    /// Index into `History::events`.
    pub(super) event: usize,
    pub(super) step: Step,
    pub(super) invoke: u64,
    /// `None` = indeterminate (+infinity).
    pub(super) ret: Option<u64>,
}

pub(super) struct Interner {
    ids: HashMap<Value, State>,
    values: Vec<Option<Value>>, // index = id
}

impl Interner {
    pub(super) fn new() -> Self {
        Interner {
            ids: HashMap::new(),
            values: vec![None],
        }
    }

    pub(super) fn id(&mut self, v: &Option<Value>) -> State {
        match v {
            None => 0,
            Some(v) => {
                if let Some(&id) = self.ids.get(v) {
                    return id;
                }
                let id = self.values.len() as State;
                // The bits above are the TTL class and `config_state`'s.
                assert!(id <= VALUE_MASK, "too many distinct values for one key");
                self.ids.insert(v.clone(), id);
                self.values.push(Some(v.clone()));
                id
            }
        }
    }

    /// The value of a state (its TTL class is ignored).
    pub(super) fn value(&self, s: State) -> Option<Value> {
        self.values[value_of(s) as usize].clone()
    }

    /// A state for people: `absent`, `"v"`, `"v" (short TTL)`, ...
    pub(super) fn describe(&self, s: State) -> String {
        match (self.value(s), class_of(s)) {
            (None, _) => "absent".into(),
            (Some(v), TtlClass::None) => format!("{v:?}"),
            (Some(v), TtlClass::Short) => format!("{v:?} (short TTL: may expire)"),
            (Some(v), TtlClass::Long) => format!("{v:?} (long TTL: cannot expire in this history)"),
        }
    }
}

/// Turns a key's events into model ops, dropping those without effect.
pub(super) fn prepare(
    history: &History,
    idx: &[usize],
    interner: &mut Interner,
    params: &TtlParams,
) -> Result<Vec<KOp>, String> {
    let mut ops = Vec::with_capacity(idx.len());
    for &i in idx {
        history.events[i]
            .validate()
            .map_err(|r| format!("event #{i}: {r}"))?;
    }
    // The last observation of this key: a TTL that cannot pass before it
    // is long (see `TtlParams::long_after`).
    let end = idx
        .iter()
        .filter_map(|&i| {
            let e = &history.events[i];
            match e.outcome {
                Outcome::Ok(_) => e.complete_ns,
                _ => None,
            }
        })
        .max()
        .unwrap_or(0);
    let class = |invoke: u64, ttl_ms: u64| {
        if ttl_ms > params.long_after(end.saturating_sub(invoke)) {
            TtlClass::Long
        } else {
            TtlClass::Short
        }
    };
    for &i in idx {
        let e = &history.events[i];
        let step = match (&e.op, &e.outcome) {
            // Known not applied: no effect. (A CAS mismatch is Ok(Cas(false)).)
            (_, Outcome::Fail) => continue,
            // A read with no answer tells nothing.
            (Op::Read, Outcome::Indeterminate) => continue,
            (Op::Read, Outcome::Ok(Ret::Read(v))) => Step::Read(interner.id(v)),
            (Op::Write(v), _) => Step::Write(interner.id(&Some(v.clone())), TtlClass::None),
            (Op::WriteTtl { value, ttl_ms }, _) => Step::Write(
                interner.id(&Some(value.clone())),
                class(e.invoke_ns, *ttl_ms),
            ),
            (Op::WriteKeepTtl(v), _) => Step::WriteKeep(interner.id(&Some(v.clone()))),
            (Op::Expire { .. } | Op::Persist, Outcome::Ok(Ret::Found(false))) => {
                Step::SetTtlMissing
            }
            (Op::Expire { ttl_ms }, _) => Step::SetTtl(class(e.invoke_ns, *ttl_ms)),
            (Op::Persist, _) => Step::SetTtl(TtlClass::None),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_steps() {
        assert_eq!(Step::Read(0).apply(0), Some(0));
        assert_eq!(Step::Read(1).apply(0), None);
        assert_eq!(Step::Write(2, TtlClass::None).apply(1), Some(2));
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

    #[test]
    fn ttl_steps() {
        let short = |v| state(v, TtlClass::Short);
        let long = |v| state(v, TtlClass::Long);
        // A short TTL may expire before any op; a long one or none may not.
        assert_eq!(Step::Read(0).apply(short(1)), Some(0));
        assert_eq!(Step::Read(1).apply(short(1)), Some(short(1)));
        assert_eq!(Step::Read(0).apply(long(1)), None);
        assert_eq!(Step::Read(0).apply(1), None);
        // Absent stays absent: no op but a write brings a value back.
        assert_eq!(Step::Read(1).apply(0), None);
        assert_eq!(Step::SetTtl(TtlClass::None).apply(0), None);
        // Expire/persist need the key; "not found" needs it absent (or expired).
        assert_eq!(Step::SetTtl(TtlClass::Long).apply(short(1)), Some(long(1)));
        assert_eq!(Step::SetTtl(TtlClass::None).apply(short(1)), Some(1));
        assert_eq!(Step::SetTtlMissing.apply(short(1)), Some(0));
        assert_eq!(Step::SetTtlMissing.apply(long(1)), None);
        // keepttl keeps the class, or none after expiry/absence (the
        // unexpired outcome is preferred: it subsumes the other).
        assert_eq!(Step::WriteKeep(2).apply(long(1)), Some(long(2)));
        assert_eq!(Step::WriteKeep(2).apply(short(1)), Some(short(2)));
        assert_eq!(Step::WriteKeep(2).apply(0), Some(2));
        // CAS on an expired key: absent matches, the old value does not.
        let cas = |expected, new| Step::CasApplied { expected, new };
        assert_eq!(cas(0, 2).apply(short(1)), Some(2));
        assert_eq!(cas(1, 2).apply(short(1)), Some(2));
        assert_eq!(cas(0, 2).apply(long(1)), None);
        assert_eq!(Step::CasMismatch { expected: 1 }.apply(short(1)), Some(0));
        assert_eq!(
            Step::CasMismatch { expected: 0 }.apply(short(1)),
            Some(short(1))
        );
        assert_eq!(
            Step::Write(3, TtlClass::Short).apply(long(1)),
            Some(short(3))
        );
        assert_eq!(value_of(short(3)), 3);
        assert_eq!(class_of(long(3)), TtlClass::Long);
        assert_eq!(class_of(0), TtlClass::None);
    }
}
