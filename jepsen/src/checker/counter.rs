//! The counter check: keys changed only by increments (Redis `INCR`).
//!
//! An increment that timed out may or may not have been applied, so a
//! counter cannot be checked as a register (an unknown `INCR` has no known
//! result to put in the model). It is checked as Jepsen's counter test
//! does, per key, from the real-time order of the operations:
//!
//! - a read (or the value an `INCR` returned) at `[invoke, complete]` is at
//!   least the number of increments *acknowledged before it was invoked*
//!   (plus one for an `INCR`'s own result) and at most the number of
//!   increments (acknowledged or unknown) *invoked before it completed*;
//! - no two acknowledged increments of one key return the same value (each
//!   applied increment moves the counter by exactly one, so a repeated
//!   result is a lost or doubled increment);
//! - reads of one key by one client never go down (a counter only grows).
//!
//! Increments known not to have been applied (`Fail`) count for neither
//! bound. A key that is absent reads as 0, as Redis's `INCR` treats it.
//!
//! Does not: check linearizability in full (the bounds are necessary, not
//! sufficient), or look at keys written any other way.

use std::collections::BTreeMap;
use std::fmt;

/// What happened to one counter operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOp {
    /// A read that returned this value (absent = 0).
    Read(i64),
    /// An increment acknowledged with the value it produced.
    IncrOk(i64),
    /// An increment whose outcome is unknown.
    IncrUnknown,
    /// An increment known not to have been applied.
    IncrFailed,
}

/// One operation on a counter key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterEvent {
    pub key: String,
    pub client: u64,
    pub op: CounterOp,
    pub invoke_ns: u64,
    /// `None` for an unknown outcome (it may take effect at any time).
    pub complete_ns: Option<u64>,
}

/// What [`check_counters`] found.
#[derive(Debug, Default)]
pub struct CounterReport {
    pub keys: usize,
    pub reads: usize,
    pub increments_ok: usize,
    pub increments_unknown: usize,
    pub violations: Vec<String>,
}

impl CounterReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for CounterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} counter keys; {} reads and {} acknowledged increments checked against the bounds, {} increments of unknown outcome; {} violations",
            self.keys,
            self.reads,
            self.increments_ok,
            self.increments_unknown,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(20) {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

/// Check every counter key's events (see the module docs).
pub fn check_counters(events: &[CounterEvent]) -> CounterReport {
    let mut by_key: BTreeMap<&str, Vec<&CounterEvent>> = BTreeMap::new();
    for e in events {
        by_key.entry(&e.key).or_default().push(e);
    }
    let mut report = CounterReport {
        keys: by_key.len(),
        ..CounterReport::default()
    };
    for (key, evs) in by_key {
        check_key(key, &evs, &mut report);
    }
    report
}

fn check_key(key: &str, evs: &[&CounterEvent], report: &mut CounterReport) {
    // Completion times of acknowledged increments, and invocation times of
    // every increment that may have been applied, each sorted.
    let mut acked: Vec<u64> = Vec::new();
    let mut maybe: Vec<u64> = Vec::new();
    for e in evs {
        match e.op {
            CounterOp::IncrOk(_) => {
                acked.push(e.complete_ns.unwrap_or(u64::MAX));
                maybe.push(e.invoke_ns);
            }
            CounterOp::IncrUnknown => maybe.push(e.invoke_ns),
            CounterOp::Read(_) | CounterOp::IncrFailed => {}
        }
    }
    acked.sort_unstable();
    maybe.sort_unstable();
    // Acknowledged before `t` / possibly applied before `t`.
    let done_before = |t: u64| acked.partition_point(|&c| c < t) as i64;
    let started_before = |t: u64| maybe.partition_point(|&i| i < t) as i64;

    let mut results: BTreeMap<i64, u64> = BTreeMap::new();
    let mut last_read: BTreeMap<u64, (i64, u64)> = BTreeMap::new();
    for e in evs {
        let complete = e.complete_ns.unwrap_or(u64::MAX);
        let (value, own) = match e.op {
            CounterOp::Read(v) => {
                report.reads += 1;
                (v, 0)
            }
            CounterOp::IncrOk(v) => {
                report.increments_ok += 1;
                (v, 1)
            }
            CounterOp::IncrUnknown => {
                report.increments_unknown += 1;
                continue;
            }
            CounterOp::IncrFailed => continue,
        };
        let (lo, hi) = (done_before(e.invoke_ns) + own, started_before(complete));
        if value < lo || value > hi {
            report.violations.push(format!(
                "{key}: {:?} by client {} at [{}, {}] ns: outside [{lo}, {hi}] (acknowledged increments before it, increments started before its end)",
                e.op, e.client, e.invoke_ns, complete
            ));
        }
        if own == 1
            && let Some(other) = results.insert(value, e.client)
        {
            report.violations.push(format!(
                "{key}: two acknowledged increments returned {value} (clients {other} and {})",
                e.client
            ));
        }
        if own == 0 {
            if let Some(&(prev, at)) = last_read.get(&e.client)
                && value < prev
            {
                report.violations.push(format!(
                    "{key}: client {} read {value} after reading {prev} (completed at {at} ns): the counter went down",
                    e.client
                ));
            }
            last_read.insert(e.client, (value, complete));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(client: u64, op: CounterOp, invoke: u64, complete: Option<u64>) -> CounterEvent {
        CounterEvent {
            key: "c".into(),
            client,
            op,
            invoke_ns: invoke,
            complete_ns: complete,
        }
    }

    #[test]
    fn sequential_increments_and_reads_pass() {
        let evs = [
            ev(1, CounterOp::Read(0), 0, Some(1)),
            ev(1, CounterOp::IncrOk(1), 2, Some(3)),
            ev(2, CounterOp::IncrOk(2), 4, Some(5)),
            ev(1, CounterOp::Read(2), 6, Some(7)),
            ev(2, CounterOp::IncrFailed, 8, Some(9)),
            ev(1, CounterOp::Read(2), 10, Some(11)),
        ];
        let r = check_counters(&evs);
        assert!(r.ok(), "{r}");
        assert_eq!((r.reads, r.increments_ok), (3, 2));
    }

    #[test]
    fn a_lost_increment_fails() {
        // Two acknowledged increments, then a read of 1.
        let evs = [
            ev(1, CounterOp::IncrOk(1), 0, Some(1)),
            ev(2, CounterOp::IncrOk(2), 2, Some(3)),
            ev(1, CounterOp::Read(1), 4, Some(5)),
        ];
        let r = check_counters(&evs);
        assert_eq!(r.violations.len(), 1, "{r}");
        assert!(r.violations[0].contains("outside [2, 2]"), "{r}");
    }

    #[test]
    fn a_doubled_increment_or_a_repeated_result_fails() {
        // One increment, read as 2.
        let r = check_counters(&[
            ev(1, CounterOp::IncrOk(1), 0, Some(1)),
            ev(1, CounterOp::Read(2), 2, Some(3)),
        ]);
        assert!(r.violations[0].contains("outside [1, 1]"), "{r}");
        // Two concurrent increments that both returned 1.
        let r = check_counters(&[
            ev(1, CounterOp::IncrOk(1), 0, Some(5)),
            ev(2, CounterOp::IncrOk(1), 1, Some(4)),
        ]);
        assert!(
            r.violations.iter().any(|v| v.contains("two acknowledged")),
            "{r}"
        );
    }

    #[test]
    fn an_unknown_increment_may_or_may_not_count() {
        for seen in [0, 1] {
            let r = check_counters(&[
                ev(1, CounterOp::IncrUnknown, 0, None),
                ev(2, CounterOp::Read(seen), 5, Some(6)),
            ]);
            assert!(r.ok(), "read {seen}: {r}");
        }
        // But it cannot count twice.
        let r = check_counters(&[
            ev(1, CounterOp::IncrUnknown, 0, None),
            ev(2, CounterOp::Read(2), 5, Some(6)),
        ]);
        assert!(!r.ok(), "{r}");
    }

    #[test]
    fn a_read_that_goes_down_fails() {
        // Concurrent with an unknown increment, 1 then 0 both fit the
        // bounds, but one client's reads may not go down.
        let r = check_counters(&[
            ev(9, CounterOp::IncrUnknown, 0, None),
            ev(1, CounterOp::Read(1), 1, Some(2)),
            ev(1, CounterOp::Read(0), 3, Some(4)),
        ]);
        assert_eq!(r.violations.len(), 1, "{r}");
        assert!(r.violations[0].contains("went down"), "{r}");
    }

    #[test]
    fn a_read_from_before_an_acknowledged_increment_fails() {
        // The increment completed before the read was invoked.
        let r = check_counters(&[
            ev(1, CounterOp::IncrOk(1), 0, Some(1)),
            ev(2, CounterOp::Read(0), 2, Some(3)),
        ]);
        assert!(!r.ok(), "{r}");
        // Concurrent with it: either value is fine.
        for seen in [0, 1] {
            let r = check_counters(&[
                ev(1, CounterOp::IncrOk(1), 0, Some(10)),
                ev(2, CounterOp::Read(seen), 2, Some(3)),
            ]);
            assert!(r.ok(), "read {seen}: {r}");
        }
    }
}
