//! The register model and the per-key preparation of a history.
//!
//! Owns: [`State`] (a key's register state, values interned to `u32`, 0 =
//! absent), [`Step`] (an op's effect and its legality in a state: the
//! sequential specification in the table of [`super`]), [`KOp`] (a model op
//! with its real-time interval) and [`prepare`], which turns one key's events
//! into model ops.
//!
//! Invariants: interned ids are stable for one key's check and below `2^31`
//! (the top bit is reserved by the search's memoised state); `prepare` keeps
//! the events' order and drops exactly the ops that cannot affect the
//! verdict (`Fail`s and indeterminate reads); every returned [`KOp`] of a
//! completed op has `ret >= invoke` (validated per event).
//!
//! Does not: search, decide verdicts, or format anything for people.

use crate::history::{History, Op, Outcome, Ret, Value};
use std::collections::HashMap;

/// Interned register value: 0 = absent.
pub(super) type State = u32;

/// An op's effect in the model, with values interned.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
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
    pub(super) fn apply(self, state: State) -> Option<State> {
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
                // The top bit is taken by `config_state`.
                assert!(id < 1 << 31, "too many distinct values for one key");
                self.ids.insert(v.clone(), id);
                self.values.push(Some(v.clone()));
                id
            }
        }
    }

    pub(super) fn value(&self, id: State) -> Option<Value> {
        self.values[id as usize].clone()
    }
}

/// Turns a key's events into model ops, dropping those without effect.
pub(super) fn prepare(
    history: &History,
    idx: &[usize],
    interner: &mut Interner,
) -> Result<Vec<KOp>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
