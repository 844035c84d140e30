//! dcache's Jepsen-style tooling: operation histories and a linearizability
//! checker for per-key registers (the fault harness builds on them).
//!
//! - [`history`]: the recorded operations ([`History`], [`Event`], [`Op`],
//!   [`Outcome`]) and their JSON-lines form.
//! - [`checker`]: [`check`] a history against the register model, per key,
//!   within a [`Budget`]; [`Report::ok`] is the pass/fail answer.

pub mod checker;
pub mod history;

pub use checker::{Anomaly, Budget, KeyReport, OpRef, Overall, PlacedOp, Report, Verdict, check};
pub use history::{Event, History, HistoryError, Op, Outcome, Ret, Value};

#[cfg(test)]
mod tests;
