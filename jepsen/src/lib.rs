//! dcache's Jepsen-style tooling: operation histories and a linearizability
//! checker for per-key registers (the fault harness builds on them).
//!
//! - [`history`]: the recorded operations ([`History`], [`Event`], [`Op`],
//!   [`Outcome`]) and their JSON-lines form.
//! - [`checker`]: [`check`] a history against the register model (with TTL
//!   expiry as a model transition), per key, within a [`Budget`];
//!   [`Report::ok`] is the pass/fail answer. [`checker::ttl`] checks the
//!   wall-clock side of TTLs (late reads, changed deadlines, expired keys
//!   left behind). [`checker::bank`] checks the bank workload's reads of
//!   all accounts (totals conserved, no negative balance, one state per
//!   index). [`checker::counter`] checks keys changed only by increments
//!   (Redis `INCR`): values within the real-time bounds, no repeated
//!   result, no read going down.

pub mod checker;
pub mod history;

pub use checker::{
    Anomaly, Budget, KeyReport, OpRef, Overall, PlacedOp, Report, TtlClass, TtlParams, Verdict,
    check, check_with,
};
pub use history::{Event, History, HistoryError, Op, Outcome, Ret, TtlMeta, Value};

#[cfg(test)]
mod tests;
