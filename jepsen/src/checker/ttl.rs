//! The wall-clock side of TTLs: what the linearizability model cannot say
//! because it does not know when a deadline passes.
//!
//! Owns: [`check_ttl`] (over a whole history: late reads and deadlines that
//! changed on their own), [`check_final`] (after the run: expired keys gone
//! from every replica), [`possible_deadlines`], and their reports.
//!
//! # What can be checked from outside
//!
//! dcache computes a key's deadline in the replicated state machine, from the
//! clock the leader stamped on the write; a linearizable read proposes an
//! expiry tick first when the deadline has passed on the serving leader's
//! clock, so it never returns a value past its deadline *as that leader saw
//! it*. The harness knows each node's skew (the nemesis set it; the node
//! runs on the harness's machine with libfaketime adding exactly that
//! offset), so at a read's invocation the serving leader's clock was at
//! least `harness wall clock + that node's skew` (its stamps never run
//! below its own clock). When the read does not say which node served it,
//! the skew is taken as `-max_skew`.
//!
//! Which deadline does the value read have? Values are unique, so the write
//! that produced it is known; its answer gave the deadline it set
//! (`expires_at`). After it, only an expire or persist on the same key can
//! change that deadline, and each of those that found the key reported the
//! deadline it set. So the deadline at the read is one of a small set
//! ([`possible_deadlines`]): the write's, or that of any expire/persist
//! that may fall between the write and the read in real time. If the write
//! or one of those ops is indeterminate, the deadline is unknown and the
//! read is not checked (the harness retires a key after an indeterminate
//! expire or persist, so this stays rare).
//!
//! - **Late read** (the README's property 2): a read returned a value whose
//!   every possible deadline is known and had passed, on the lowest clock
//!   the serving leader can have had, by more than
//!   [`TtlParams::late_margin_ms`] (the expiry tick plus slack); or whose
//!   own `X-Dcache-Expires-At` had passed by as much.
//! - **Deadline changed** (property 3: TTLs survive restart, snapshot
//!   install and leader change): a read's `X-Dcache-Expires-At` (or its
//!   absence) is not one of the value's possible deadlines: a TTL was lost,
//!   invented or moved.
//! - **Not removed** (property 4, [`check_final`]): after the run, healing
//!   and convergence, a replica still holds a value whose possible deadlines
//!   (or own header) passed, on the current leader's clock, by more than the
//!   margin: the leader should have ticked it away everywhere.
//!
//! Does not: judge linearizability (the model in `model.rs` makes expiry a
//! nondeterministic transition, so "absent, then present again without a
//! write" and "a long TTL expired" are linearizability violations), or
//! check that a value does not expire *early* (with skewed clocks a leader
//! ahead of real time legitimately expires keys early).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

use super::TtlParams;
use crate::history::{Event, History, Op, Outcome, Ret};

/// What a value's deadline can be at some point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deadlines {
    /// One of these (`None` = no deadline).
    Known(BTreeSet<Option<u64>>),
    /// Not known: the write or a TTL op that may have applied is
    /// indeterminate or carries no reported deadline.
    Unknown(String),
}

impl Deadlines {
    /// The latest possible deadline, if the value certainly has one.
    pub fn latest(&self) -> Option<u64> {
        match self {
            Deadlines::Known(set) if !set.contains(&None) => set.iter().flatten().max().copied(),
            _ => None,
        }
    }
}

impl fmt::Display for Deadlines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deadlines::Unknown(why) => write!(f, "unknown ({why})"),
            Deadlines::Known(set) => {
                let parts: Vec<String> = set.iter().map(|d| show_deadline(*d)).collect();
                write!(f, "{{{}}}", parts.join(", "))
            }
        }
    }
}

fn show_deadline(d: Option<u64>) -> String {
    match d {
        Some(ms) => format!("{ms} ms"),
        None => "none".into(),
    }
}

/// Which property a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlViolationKind {
    /// A read returned a value past its deadline (property 2).
    Late,
    /// A read's deadline is not one the value can have (property 3).
    DeadlineChanged,
    /// After the run a replica still holds an expired value (property 4).
    NotRemoved,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlViolation {
    pub kind: TtlViolationKind,
    pub key: String,
    /// The read, when it is in the history.
    pub event_index: Option<usize>,
    pub text: String,
}

impl fmt::Display for TtlViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TtlViolationKind::Late => "late read",
            TtlViolationKind::DeadlineChanged => "deadline changed",
            TtlViolationKind::NotRemoved => "expired key not removed",
        };
        match self.event_index {
            Some(i) => write!(f, "{kind}: key {:?} #{i}: {}", self.key, self.text),
            None => write!(f, "{kind}: key {:?}: {}", self.key, self.text),
        }
    }
}

/// The result of [`check_ttl`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TtlReport {
    pub violations: Vec<TtlViolation>,
    /// Keys with TTL operations.
    pub keys: usize,
    /// Reads of a present value compared with a deadline (the value's
    /// latest possible one, or the read's own header).
    pub late_checked: usize,
    /// Reads whose `X-Dcache-Expires-At` was compared with the value's
    /// possible deadlines.
    pub deadline_checked: usize,
    /// Reads of a present value whose deadline is unknown (not checked).
    pub unknown: usize,
    /// Reads that found a key with TTL operations absent.
    pub absent_reads: usize,
    /// The latest a checked read came after its deadline, by the lowest
    /// clock its leader can have had (ms; negative: before it).
    pub max_lateness_ms: Option<i64>,
    /// The margin a read may be late by (ms).
    pub margin_ms: u64,
}

impl TtlReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for TtlReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} TTL keys; {} present reads checked against a deadline (latest {} relative to it, margin {} ms), {} deadline headers checked, {} reads of an unknown deadline, {} absent reads; {} violations",
            self.keys,
            self.late_checked,
            match self.max_lateness_ms {
                Some(ms) => format!("{ms:+} ms"),
                None => "-".into(),
            },
            self.margin_ms,
            self.deadline_checked,
            self.unknown,
            self.absent_reads,
            self.violations.len()
        )?;
        for v in &self.violations {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

/// A key's events, grouped for deadline questions.
struct KeyIndex<'a> {
    /// The event that wrote each value.
    writes: BTreeMap<&'a str, usize>,
    /// Expire/persist ops that may have changed a deadline: those that
    /// found the key, or whose outcome is unknown.
    ttl_ops: Vec<usize>,
}

fn is_ttl_key(events: &[&Event]) -> bool {
    events.iter().any(|e| {
        e.ttl.is_some()
            || matches!(
                e.op,
                Op::WriteTtl { .. } | Op::WriteKeepTtl(_) | Op::Expire { .. } | Op::Persist
            )
    })
}

impl<'a> KeyIndex<'a> {
    fn new(history: &'a History, idx: &[usize]) -> Self {
        let mut writes = BTreeMap::new();
        let mut ttl_ops = Vec::new();
        for &i in idx {
            let e = &history.events[i];
            match (&e.op, &e.outcome) {
                (
                    Op::Write(v)
                    | Op::WriteTtl { value: v, .. }
                    | Op::WriteKeepTtl(v)
                    | Op::Cas { new: v, .. },
                    _,
                ) => {
                    writes.insert(v.as_str(), i);
                }
                (Op::Expire { .. } | Op::Persist, Outcome::Ok(Ret::Found(true)))
                | (Op::Expire { .. } | Op::Persist, Outcome::Indeterminate) => ttl_ops.push(i),
                _ => {}
            }
        }
        KeyIndex { writes, ttl_ops }
    }

    /// The deadlines `value` can have at a point no later than `until_ns`
    /// (a read's completion; `u64::MAX` after the run).
    fn deadlines(&self, history: &History, value: &str, until_ns: u64) -> Deadlines {
        let Some(&w) = self.writes.get(value) else {
            return Deadlines::Unknown("no write of this value".into());
        };
        let we = &history.events[w];
        let reported = |e: &Event| {
            e.ttl
                .as_ref()
                .filter(|m| !m.unreported)
                .map(|m| m.expires_at_ms)
        };
        let mut set = BTreeSet::new();
        match (&we.outcome, reported(we)) {
            (Outcome::Ok(Ret::Written | Ret::Cas(true)), Some(d)) => {
                set.insert(d);
            }
            (Outcome::Indeterminate, _) => {
                return Deadlines::Unknown(format!("its write #{w} is indeterminate"));
            }
            _ => return Deadlines::Unknown(format!("its write #{w} reported no deadline")),
        }
        for &x in &self.ttl_ops {
            let xe = &history.events[x];
            // May it fall after the write and before `until_ns`?
            let after_write = xe.outcome == Outcome::Indeterminate
                || xe.complete_ns.is_some_and(|c| c > we.invoke_ns);
            if !(after_write && xe.invoke_ns < until_ns) {
                continue;
            }
            match (&xe.outcome, reported(xe)) {
                (Outcome::Ok(_), Some(d)) => {
                    set.insert(d);
                }
                (Outcome::Indeterminate, _) => {
                    return Deadlines::Unknown(format!("{} #{x} is indeterminate", xe.op));
                }
                _ => return Deadlines::Unknown(format!("#{x} reported no deadline")),
            }
        }
        Deadlines::Known(set)
    }
}

/// The deadlines the value `value` of `key` can have after `until_ns`
/// (`u64::MAX`: after every op of the history).
pub fn possible_deadlines(history: &History, key: &str, value: &str, until_ns: u64) -> Deadlines {
    let idx: Vec<usize> = (0..history.events.len())
        .filter(|&i| history.events[i].key == key)
        .collect();
    KeyIndex::new(history, &idx).deadlines(history, value, until_ns)
}

/// The lowest the serving node's clock can have been at the read's
/// invocation (ms since the epoch), if the read carries its wall time.
fn clock_floor(e: &Event, params: &TtlParams) -> Option<i64> {
    let m = e.ttl.as_ref()?;
    let skew = m.node_skew_ms.unwrap_or(-(params.max_skew_ms as i64));
    Some(m.wall_ms as i64 + skew)
}

/// Checks the reads of every key with TTL operations for late reads and
/// changed deadlines (see the module docs).
pub fn check_ttl(history: &History, params: &TtlParams) -> TtlReport {
    let margin = params.late_margin_ms() as i64;
    let mut report = TtlReport {
        margin_ms: params.late_margin_ms(),
        ..TtlReport::default()
    };
    for (key, idx) in history.by_key() {
        let events: Vec<&Event> = idx.iter().map(|&i| &history.events[i]).collect();
        if !is_ttl_key(&events) {
            continue;
        }
        report.keys += 1;
        let index = KeyIndex::new(history, &idx);
        for &i in &idx {
            let e = &history.events[i];
            let Outcome::Ok(Ret::Read(read)) = &e.outcome else {
                continue;
            };
            let Some(value) = read else {
                report.absent_reads += 1;
                continue;
            };
            let complete = e.complete_ns.unwrap_or(u64::MAX);
            let possible = index.deadlines(history, value, complete);
            let header = e
                .ttl
                .as_ref()
                .filter(|m| !m.unreported)
                .map(|m| m.expires_at_ms);
            if matches!(possible, Deadlines::Unknown(_)) {
                report.unknown += 1;
            }
            // The deadline reported with the read must be a possible one.
            if let (Deadlines::Known(set), Some(h)) = (&possible, header) {
                report.deadline_checked += 1;
                if !set.contains(&h) {
                    report.violations.push(TtlViolation {
                        kind: TtlViolationKind::DeadlineChanged,
                        key: key.to_string(),
                        event_index: Some(i),
                        text: format!(
                            "read {value:?} with deadline {} (X-Dcache-Expires-At), but the deadlines it can have are {possible}: {e}",
                            show_deadline(h)
                        ),
                    });
                }
            }
            let Some(floor) = clock_floor(e, params) else {
                continue;
            };
            let mut bounds = Vec::new();
            if let Some(d) = possible.latest() {
                bounds.push((d, "its latest possible deadline"));
            }
            if let Some(Some(h)) = header {
                bounds.push((h, "the deadline it was read with"));
            }
            if bounds.is_empty() {
                continue;
            }
            report.late_checked += 1;
            for (deadline, what) in bounds {
                let late = floor - deadline as i64;
                report.max_lateness_ms = Some(report.max_lateness_ms.map_or(late, |m| m.max(late)));
                if late > margin {
                    report.violations.push(TtlViolation {
                        kind: TtlViolationKind::Late,
                        key: key.to_string(),
                        event_index: Some(i),
                        text: format!(
                            "read {value:?} {late} ms after {what} ({deadline} ms) by the lowest clock its leader can have had ({floor} ms; margin {margin} ms): {e}"
                        ),
                    });
                    break;
                }
            }
        }
    }
    report
}

/// A read of one key on one node after the run (`?consistency=stale`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalRead {
    pub node: String,
    pub key: String,
    pub value: Option<String>,
    /// `X-Dcache-Expires-At`, if any.
    pub expires_at_ms: Option<u64>,
}

/// After the run, healing and convergence: every replica must have
/// dropped the values whose deadline passed by more than the margin on the
/// current leader's clock (`leader_clock_floor_ms`: the lowest it can be
/// now), and their headers must show a possible deadline.
pub fn check_final(
    history: &History,
    reads: &[FinalRead],
    leader_clock_floor_ms: i64,
    params: &TtlParams,
) -> Vec<TtlViolation> {
    let margin = params.late_margin_ms() as i64;
    let mut out = Vec::new();
    let mut indexes: BTreeMap<&str, KeyIndex> = BTreeMap::new();
    let by_key = history.by_key();
    for r in reads {
        let Some(value) = &r.value else { continue };
        let index = indexes.entry(r.key.as_str()).or_insert_with(|| {
            let idx = by_key.get(r.key.as_str()).cloned().unwrap_or_default();
            KeyIndex::new(history, &idx)
        });
        let possible = index.deadlines(history, value, u64::MAX);
        if let Deadlines::Known(set) = &possible
            && !set.contains(&r.expires_at_ms)
        {
            out.push(TtlViolation {
                kind: TtlViolationKind::DeadlineChanged,
                key: r.key.clone(),
                event_index: None,
                text: format!(
                    "{} holds {value:?} with deadline {}, but the deadlines it can have are {possible}",
                    r.node,
                    show_deadline(r.expires_at_ms)
                ),
            });
        }
        let mut bounds = Vec::new();
        if let Some(d) = possible.latest() {
            bounds.push((d, "every deadline it can have"));
        }
        if let Some(h) = r.expires_at_ms {
            bounds.push((h, "its own deadline"));
        }
        for (deadline, what) in bounds {
            let late = leader_clock_floor_ms - deadline as i64;
            if late > margin {
                out.push(TtlViolation {
                    kind: TtlViolationKind::NotRemoved,
                    key: r.key.clone(),
                    event_index: None,
                    text: format!(
                        "{} still holds {value:?} although {what} ({deadline} ms) passed {late} ms ago on the leader's clock (margin {margin} ms)",
                        r.node
                    ),
                });
                break;
            }
        }
    }
    out
}
