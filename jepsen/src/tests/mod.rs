//! Tests of the history types and the checker (in the library, so they run
//! with `cargo test -p dcache-jepsen --lib` too).

mod brute;
mod generated;
mod hand;
mod ttl;

use crate::checker::{Budget, Report, Verdict, check};
use crate::history::{Event, History, Op, Ret};

/// SplitMix64: a tiny deterministic PRNG, so tests need no extra crate and
/// every run sees the same histories.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

const K: &str = "k";

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

pub(crate) fn w(client: u64, v: &str, a: u64, b: u64) -> Event {
    Event::ok(client, K, Op::Write(v.into()), a, b, Ret::Written)
}

pub(crate) fn r(client: u64, v: Option<&str>, a: u64, b: u64) -> Event {
    Event::ok(client, K, Op::Read, a, b, Ret::Read(v.map(String::from)))
}

pub(crate) fn cas(
    client: u64,
    expected: Option<&str>,
    new: &str,
    a: u64,
    b: u64,
    applied: bool,
) -> Event {
    let op = Op::Cas {
        expected: expected.map(String::from),
        new: new.into(),
    };
    Event::ok(client, K, op, a, b, Ret::Cas(applied))
}

pub(crate) fn del(client: u64, a: u64, b: u64) -> Event {
    Event::ok(client, K, Op::Delete, a, b, Ret::Deleted)
}

pub(crate) fn run(events: Vec<Event>) -> Report {
    check(&History { events }, Budget::default())
}

/// Asserts the history is linearizable, printing the report if not.
pub(crate) fn assert_linearizable(events: Vec<Event>) {
    let report = run(events);
    assert!(report.ok(), "expected linearizable:\n{report}");
}

/// Asserts the history is not linearizable and returns the report.
pub(crate) fn assert_not_linearizable(events: Vec<Event>) -> Report {
    let report = run(events);
    assert!(!report.ok(), "expected an anomaly:\n{report}");
    assert!(
        matches!(report.keys[0].verdict, Verdict::NotLinearizable(_)),
        "expected NotLinearizable:\n{report}"
    );
    report
}

/// Asserts the anomaly's blocked op is the event at `index`.
pub(crate) fn assert_stuck_at(report: &Report, index: usize) {
    let a = report.anomalies().next().expect("an anomaly");
    let stuck = a.stuck.as_ref().expect("a stuck op");
    assert_eq!(
        stuck.event_index, index,
        "unexpected stuck op in:\n{report}"
    );
}
