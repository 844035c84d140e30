//! TTLs: the model (expiry as a transition, long TTLs and absent keys that
//! stay put) on hand-made and generated histories, and the wall-clock checks
//! of `checker::ttl` (late reads, changed deadlines, expired keys left
//! behind), each with a planted anomaly that must be reported.

use super::*;
use crate::checker::ttl::{Deadlines, FinalRead, TtlViolationKind, check_final, check_ttl};
use crate::checker::{Overall, TtlParams, check_with};
use crate::history::{Outcome, TtlMeta};
use std::collections::HashMap;

/// A TTL far beyond these histories (and any skew).
pub(crate) const LONG: u64 = 3_600_000;
/// A TTL that may pass within them.
pub(crate) const SHORT: u64 = 50;

fn wt(client: u64, v: &str, ttl_ms: u64, a: u64, b: u64) -> Event {
    let op = Op::WriteTtl {
        value: v.into(),
        ttl_ms,
    };
    Event::ok(client, K, op, a, b, Ret::Written)
}

fn keep(client: u64, v: &str, a: u64, b: u64) -> Event {
    Event::ok(client, K, Op::WriteKeepTtl(v.into()), a, b, Ret::Written)
}

fn expire(client: u64, ttl_ms: u64, found: bool, a: u64, b: u64) -> Event {
    Event::ok(client, K, Op::Expire { ttl_ms }, a, b, Ret::Found(found))
}

fn persist(client: u64, found: bool, a: u64, b: u64) -> Event {
    Event::ok(client, K, Op::Persist, a, b, Ret::Found(found))
}

// ----- the model: linearizable -----

#[test]
fn short_ttl_value_may_expire_and_stays_expired() {
    assert_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(2, Some("a"), 20, 30),
        r(2, None, 40, 50),
        r(3, None, 60, 70),
        // Written again: present again.
        w(1, "b", 80, 90),
        r(2, Some("b"), 100, 110),
    ]);
}

#[test]
fn short_ttl_value_need_not_expire() {
    assert_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(2, Some("a"), 1_000, 1_010),
        r(2, Some("a"), 2_000, 2_010),
    ]);
}

#[test]
fn cas_mismatch_does_not_force_an_expiry() {
    // The CAS expected another value: legal whether "a" expired or not.
    // The checker keeps the unexpired state, so the later read of "a" is
    // still explained.
    assert_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        cas(2, Some("x"), "y", 20, 30, false),
        r(3, Some("a"), 40, 50),
        r(3, None, 60, 70),
    ]);
    // A CAS from "a" that mismatched: "a" had expired; it stays gone.
    let report = assert_not_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        cas(2, Some("a"), "y", 20, 30, false),
        r(3, Some("a"), 40, 50),
    ]);
    assert_stuck_at(&report, 2);
    // A CAS on absent after an expiry.
    assert_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        cas(2, None, "b", 20, 30, true),
        r(3, Some("b"), 40, 50),
    ]);
}

#[test]
fn keepttl_keeps_the_class() {
    // The short TTL carries over to "b", which may then expire.
    assert_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        keep(1, "b", 20, 30),
        r(2, Some("b"), 40, 50),
        r(2, None, 60, 70),
    ]);
    // keepttl after an expiry: no TTL (the key was absent), so "b" stays,
    // even though keeping the short TTL was possible too.
    assert_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(2, None, 15, 18),
        keep(1, "b", 20, 30),
        r(2, Some("b"), 40, 50),
    ]);
    let report = assert_not_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(2, None, 15, 18),
        keep(1, "b", 20, 30),
        r(2, None, 40, 50),
    ]);
    assert_stuck_at(&report, 3);
    // From a long TTL: "b" cannot expire.
    let report = assert_not_linearizable(vec![
        wt(1, "a", LONG, 0, 10),
        keep(1, "b", 20, 30),
        r(2, None, 40, 50),
    ]);
    assert_stuck_at(&report, 2);
}

#[test]
fn expire_and_persist_change_the_class() {
    // A plain value given a short TTL may expire.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        expire(2, SHORT, true, 20, 30),
        r(3, None, 40, 50),
        // Not found now, and a persist of an absent key is "not found".
        expire(2, SHORT, false, 60, 70),
        persist(2, false, 80, 90),
    ]);
    // Persist makes it stay; so does a long expire.
    for last in [persist(2, true, 20, 30), expire(2, LONG, true, 20, 30)] {
        let report = assert_not_linearizable(vec![
            wt(1, "a", SHORT, 0, 10),
            last,
            r(3, Some("a"), 40, 50),
            r(3, None, 60, 70),
        ]);
        assert_stuck_at(&report, 3);
    }
    // Found after an expiry without a write: impossible.
    let report = assert_not_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(3, None, 20, 30),
        expire(2, LONG, true, 40, 50),
    ]);
    assert_stuck_at(&report, 2);
    assert!(report.to_string().contains("it found the key"), "{report}");
    // "Not found" while a value without TTL is there.
    let report = assert_not_linearizable(vec![w(1, "a", 0, 10), persist(2, false, 20, 30)]);
    assert_stuck_at(&report, 1);
}

#[test]
fn indeterminate_ttl_ops_are_optional() {
    let iexp = |ttl_ms, t| Event::indeterminate(2, K, Op::Expire { ttl_ms }, t);
    // A crashed expire that took effect: "a" then expired.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        iexp(SHORT, 20),
        r(3, Some("a"), 30, 40),
        r(3, None, 50, 60),
    ]);
    // A crashed write with a short TTL, observed and then expired.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        Event::indeterminate(
            2,
            K,
            Op::WriteTtl {
                value: "b".into(),
                ttl_ms: SHORT,
            },
            20,
        ),
        r(3, Some("b"), 30, 40),
        r(3, None, 50, 60),
    ]);
    // A crashed persist cannot bring back an expired value.
    assert_not_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(3, None, 20, 30),
        Event::indeterminate(2, K, Op::Persist, 35),
        r(3, Some("a"), 40, 50),
    ]);
}

#[test]
fn chained_indeterminate_ttl_ops_are_searched() {
    // Crashed writes explain "c" and then its expiry (here the short-TTL
    // write may also come after the keepttl one).
    let iw = Event::indeterminate(
        2,
        K,
        Op::WriteTtl {
            value: "b".into(),
            ttl_ms: SHORT,
        },
        20,
    );
    assert_linearizable(vec![
        wt(1, "a", LONG, 0, 10),
        iw.clone(),
        Event::indeterminate(3, K, Op::WriteKeepTtl("c".into()), 25),
        r(4, Some("c"), 30, 40),
        r(4, None, 50, 60),
    ]);
    // Only a crashed short-TTL write, expired, then a crashed CAS from
    // absent explain "c": the search's one-step lookahead after the write
    // must count that CAS as a possible successor on the expired state.
    let icas = Event::indeterminate(
        3,
        K,
        Op::Cas {
            expected: None,
            new: "c".into(),
        },
        25,
    );
    assert_linearizable(vec![
        wt(1, "a", LONG, 0, 10),
        iw,
        icas,
        r(4, Some("c"), 30, 40),
    ]);
}

// ----- the model: planted anomalies -----

#[test]
fn seen_expired_then_present_again_without_a_write_is_caught() {
    // Property 1: once a linearizable read saw the key expired, no later
    // read sees it again unless it was written again.
    let report = assert_not_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(2, Some("a"), 20, 30),
        r(2, None, 40, 50),
        r(3, Some("a"), 60, 70),
    ]);
    assert_stuck_at(&report, 3);
    let text = report.to_string();
    assert!(
        text.contains("it read \"a\" but the register holds absent"),
        "{text}"
    );
    // Also with a write of another value in flight the whole time: it
    // cannot explain "a".
    assert_not_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        r(2, None, 40, 50),
        Event::indeterminate(4, K, Op::Write("b".into()), 45),
        r(3, Some("a"), 60, 70),
    ]);
}

#[test]
fn long_ttl_value_reported_absent_is_caught() {
    // Property 3: a long TTL never expires during the run.
    let report = assert_not_linearizable(vec![
        wt(1, "a", LONG, 0, 10),
        r(2, Some("a"), 20, 30),
        r(3, None, 40, 50),
    ]);
    assert_stuck_at(&report, 2);
    let text = report.to_string();
    assert!(text.contains("long TTL"), "{text}");
    // Nor does a value without a TTL, nor one whose TTL was persisted.
    assert_not_linearizable(vec![w(1, "a", 0, 10), r(3, None, 40, 50)]);
    assert_not_linearizable(vec![
        wt(1, "a", SHORT, 0, 10),
        persist(2, true, 20, 30),
        r(3, None, 40, 50),
    ]);
}

#[test]
fn what_is_long_depends_on_the_history_and_the_skew() {
    // A 100 s TTL in a history of 2 s: it may expire only if clocks can be
    // skewed by more than about 50 s (span + 2 x skew + 1 s >= TTL).
    let ms = 1_000_000u64; // ns per ms
    let events = vec![
        wt(1, "a", 100_000, 0, 10 * ms),
        r(2, None, 2_000 * ms, 2_010 * ms),
    ];
    let h = History { events };
    let skewed = TtlParams::default();
    assert!(check_with(&h, Budget::default(), &skewed).ok());
    let unskewed = TtlParams {
        max_skew_ms: 0,
        ..TtlParams::default()
    };
    assert_eq!(
        check_with(&h, Budget::default(), &unskewed).overall(),
        Overall::NotLinearizable
    );
}

// ----- generated TTL histories -----

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Write,
    WriteShort,
    WriteLong,
    Keep,
    ExpireShort,
    ExpireLong,
    Persist,
    Cas,
    Delete,
}

/// A linearizable TTL history: like `generated::generate`, with TTL ops and
/// expiries at random moments between linearization points (a value with a
/// short TTL expires before the next op with probability `p_expire`).
pub(crate) fn generate_ttl(
    rng: &mut Rng,
    n_ops: usize,
    keys: usize,
    clients: u64,
    p_indet: f64,
    p_fail: f64,
    p_expire: f64,
) -> History {
    let planned = super::generated::plan(rng, n_ops, keys, clients, |rng| match rng.below(100) {
        0..45 => Kind::Read,
        45..51 => Kind::Write,
        51..61 => Kind::WriteShort,
        61..65 => Kind::WriteLong,
        65..69 => Kind::Keep,
        69..77 => Kind::ExpireShort,
        77..80 => Kind::ExpireLong,
        80..84 => Kind::Persist,
        84..94 => Kind::Cas,
        _ => Kind::Delete,
    });
    // Per key: the value and whether it may expire.
    let mut regs: HashMap<usize, Option<(String, bool)>> = HashMap::new();
    let mut written: HashMap<usize, Vec<String>> = HashMap::new();
    let mut events = Vec::with_capacity(n_ops);
    for (i, p) in planned.iter().enumerate() {
        let key = format!("key{}", p.key);
        let cur = regs.entry(p.key).or_default();
        if cur.as_ref().is_some_and(|(_, short)| *short) && rng.chance(p_expire) {
            *cur = None;
        }
        let fate = if p.kind != Kind::Read && rng.chance(p_fail) {
            Outcome::Fail
        } else if rng.chance(p_indet) {
            Outcome::Indeterminate
        } else {
            Outcome::Ok(Ret::Written)
        };
        let applies = match fate {
            Outcome::Fail => false,
            Outcome::Indeterminate => rng.chance(0.5),
            Outcome::Ok(_) => true,
        };
        let value = format!("{key}-v{i}");
        let now: Option<String> = cur.as_ref().map(|(v, _)| v.clone());
        let set = |cur: &mut Option<(String, bool)>, new: Option<(String, bool)>| {
            if applies {
                *cur = new;
            }
        };
        let (op, ret) = match p.kind {
            Kind::Read => (Op::Read, Ret::Read(now)),
            Kind::Write | Kind::WriteShort | Kind::WriteLong => {
                let (op, short) = match p.kind {
                    Kind::Write => (Op::Write(value.clone()), false),
                    Kind::WriteShort => (
                        Op::WriteTtl {
                            value: value.clone(),
                            ttl_ms: SHORT,
                        },
                        true,
                    ),
                    _ => (
                        Op::WriteTtl {
                            value: value.clone(),
                            ttl_ms: LONG,
                        },
                        false,
                    ),
                };
                set(cur, Some((value.clone(), short)));
                if applies {
                    written.entry(p.key).or_default().push(value);
                }
                (op, Ret::Written)
            }
            Kind::Keep => {
                let short = cur.as_ref().is_some_and(|(_, s)| *s);
                set(cur, Some((value.clone(), short)));
                if applies {
                    written.entry(p.key).or_default().push(value.clone());
                }
                (Op::WriteKeepTtl(value), Ret::Written)
            }
            Kind::ExpireShort | Kind::ExpireLong | Kind::Persist => {
                let (op, short) = match p.kind {
                    Kind::ExpireShort => (Op::Expire { ttl_ms: SHORT }, true),
                    Kind::ExpireLong => (Op::Expire { ttl_ms: LONG }, false),
                    _ => (Op::Persist, false),
                };
                let found = cur.is_some();
                if let Some((v, _)) = cur.clone() {
                    set(cur, Some((v, short)));
                }
                (op, Ret::Found(found))
            }
            Kind::Cas => {
                let hist = written.entry(p.key).or_default();
                let expected = if rng.chance(0.6) || hist.is_empty() {
                    now.clone()
                } else {
                    Some(hist[rng.below(hist.len() as u64) as usize].clone())
                };
                let matched = now == expected;
                if matched {
                    set(cur, Some((value.clone(), false)));
                    if applies {
                        hist.push(value.clone());
                    }
                }
                (
                    Op::Cas {
                        expected,
                        new: value,
                    },
                    Ret::Cas(matched),
                )
            }
            Kind::Delete => {
                set(cur, None);
                (Op::Delete, Ret::Deleted)
            }
        };
        events.push(p.event(key, op, fate, ret));
    }
    events.sort_by_key(|e| e.invoke_ns);
    History { events }
}

#[test]
fn generated_ttl_histories_pass() {
    for seed in 0..40 {
        let h = generate_ttl(&mut Rng::new(500 + seed), 600, 2, 6, 0.08, 0.05, 0.3);
        let report = check(&h, Budget::default());
        assert!(report.ok(), "seed {seed}:\n{report}");
    }
}

#[test]
fn generated_10k_op_ttl_history_is_checked() {
    let h = generate_ttl(&mut Rng::new(77), 10_000, 4, 8, 0.03, 0.03, 0.2);
    let report = super::generated::timed_check("10k TTL ops", &h);
    assert!(report.ok(), "{report}");
}

// ----- wall-clock checks (checker::ttl) -----

/// The harness's wall clock (ms since the epoch) when the history's
/// monotonic clock (ns) reads 0.
const BASE: u64 = 1_800_000_000_000;
/// One ms of the history's clock.
const MS: u64 = 1_000_000;

/// `e` with its wall time and the deadline its answer reported.
fn at(e: Event, expires_at_ms: Option<u64>) -> Event {
    let wall = BASE + e.invoke_ns / MS;
    Event {
        ttl: Some(TtlMeta {
            wall_ms: wall,
            expires_at_ms,
            ..TtlMeta::default()
        }),
        ..e
    }
}

/// A read served by a node with skew `skew_ms`, reporting `header`.
fn read_at(e: Event, header: Option<u64>, skew_ms: Option<i64>) -> Event {
    let mut e = at(e, header);
    let m = e.ttl.as_mut().unwrap();
    m.served_by = skew_ms.map(|_| "n1".into());
    m.node_skew_ms = skew_ms;
    e
}

fn unskewed() -> TtlParams {
    TtlParams {
        max_skew_ms: 0,
        ..TtlParams::default()
    }
}

/// A short-TTL write of "a" at 0 ms, deadline 100 ms after it.
fn short_write() -> Event {
    at(wt(1, "a", 100, 0, 5 * MS), Some(BASE + 100))
}

#[test]
fn a_valid_ttl_history_passes_every_check() {
    let h = History {
        events: vec![
            short_write(),
            read_at(r(2, Some("a"), 50 * MS, 55 * MS), Some(BASE + 100), Some(0)),
            // Expired: absent from then on.
            read_at(r(2, None, 300 * MS, 305 * MS), None, Some(0)),
            at(
                wt(1, "b", LONG, 400 * MS, 405 * MS),
                Some(BASE + 400 + LONG),
            ),
            read_at(
                r(3, Some("b"), 5_000 * MS, 5_005 * MS),
                Some(BASE + 400 + LONG),
                Some(-90_000),
            ),
            at(persist(1, true, 6_000 * MS, 6_005 * MS), None),
            read_at(r(3, Some("b"), 7_000 * MS, 7_005 * MS), None, Some(0)),
        ],
    };
    assert!(check_with(&h, Budget::default(), &unskewed()).ok());
    let report = check_ttl(&h, &unskewed());
    assert!(report.ok(), "{report}");
    assert_eq!(report.late_checked, 2, "{report}");
    assert_eq!(report.deadline_checked, 3, "{report}");
    assert_eq!(report.absent_reads, 1);
    // The latest read came 45 ms before its deadline (50 ms vs 100 ms, minus 5 ms of rounding).
    assert!(report.max_lateness_ms.unwrap() < 0, "{report}");
}

#[test]
fn short_ttl_value_read_long_after_its_deadline_is_caught() {
    // Property 2: read 2 s after a 100 ms deadline, by a node with no skew.
    let late = read_at(
        r(2, Some("a"), 2_100 * MS, 2_105 * MS),
        Some(BASE + 100),
        Some(0),
    );
    let h = History {
        events: vec![short_write(), late.clone()],
    };
    // Linearizable (expiry is optional in the model) ...
    assert!(check_with(&h, Budget::default(), &unskewed()).ok());
    // ... but late.
    let report = check_ttl(&h, &unskewed());
    assert_eq!(report.violations.len(), 1, "{report}");
    assert_eq!(report.violations[0].kind, TtlViolationKind::Late);
    assert_eq!(report.violations[0].event_index, Some(1));
    assert!(report.to_string().contains("late read"), "{report}");
    // Served by a node 90 s behind: its clock had not reached the deadline.
    let behind = read_at(
        r(2, Some("a"), 2_100 * MS, 2_105 * MS),
        Some(BASE + 100),
        Some(-90_000),
    );
    let h2 = History {
        events: vec![short_write(), behind],
    };
    assert!(check_ttl(&h2, &TtlParams::default()).ok());
    // Within the tick + slack margin: not reported.
    let close = read_at(
        r(2, Some("a"), 400 * MS, 405 * MS),
        Some(BASE + 100),
        Some(0),
    );
    let h3 = History {
        events: vec![short_write(), close],
    };
    assert!(check_ttl(&h3, &unskewed()).ok());
    // The serving node unknown (seed API, no header): the skew bound
    // applies, so only a read later than max skew + margin is caught.
    let mut seed_read = at(r(2, Some("a"), 2_100 * MS, 2_105 * MS), None);
    seed_read.ttl.as_mut().unwrap().unreported = true;
    let h4 = History {
        events: vec![short_write(), seed_read.clone()],
    };
    assert!(check_ttl(&h4, &unskewed()).violations.len() == 1);
    assert!(check_ttl(&h4, &TtlParams::default()).ok());
}

#[test]
fn a_deadline_that_changed_by_itself_is_caught() {
    // Property 3 (TTLs survive restart, snapshot install, leader change):
    // the read reports no deadline for a value written with one.
    let lost = read_at(r(2, Some("a"), 20 * MS, 25 * MS), None, Some(0));
    let h = History {
        events: vec![short_write(), lost],
    };
    let report = check_ttl(&h, &unskewed());
    assert_eq!(report.violations.len(), 1, "{report}");
    assert_eq!(report.violations[0].kind, TtlViolationKind::DeadlineChanged);
    // A moved deadline.
    let moved = read_at(r(2, Some("a"), 20 * MS, 25 * MS), Some(BASE + 7), Some(0));
    let h = History {
        events: vec![short_write(), moved],
    };
    assert!(!check_ttl(&h, &unskewed()).ok());
    // An expire that may have come between the write and the read makes
    // its deadline possible too.
    let refreshed = at(expire(3, 1_000, true, 10 * MS, 30 * MS), Some(BASE + 1_010));
    let read = read_at(
        r(2, Some("a"), 20 * MS, 25 * MS),
        Some(BASE + 1_010),
        Some(0),
    );
    let h = History {
        events: vec![short_write(), refreshed, read],
    };
    assert!(check_ttl(&h, &unskewed()).ok());
}

#[test]
fn unknown_deadlines_are_not_checked() {
    // An indeterminate expire may have applied at any time: the deadline of
    // "a" is unknown afterwards, so nothing is claimed about it.
    let iexp = at(
        Event::indeterminate(3, K, Op::Expire { ttl_ms: LONG }, 10 * MS),
        None,
    );
    let read = read_at(
        r(2, Some("a"), 5_000 * MS, 5_005 * MS),
        Some(BASE + 10 + LONG),
        Some(0),
    );
    let h = History {
        events: vec![short_write(), iexp, read],
    };
    let report = check_ttl(&h, &unskewed());
    assert!(report.ok(), "{report}");
    assert_eq!(report.unknown, 1);
    assert!(matches!(
        crate::checker::ttl::possible_deadlines(&h, K, "a", u64::MAX),
        Deadlines::Unknown(_)
    ));
}

#[test]
fn an_expired_value_left_on_a_replica_is_caught() {
    // Property 4: after the run, no replica holds a value past its
    // deadline on the leader's clock.
    let h = History {
        events: vec![short_write()],
    };
    let left = |expires_at_ms| FinalRead {
        node: "n2".into(),
        key: K.into(),
        value: Some("a".into()),
        expires_at_ms,
    };
    let now = (BASE + 60_000) as i64;
    let params = unskewed();
    let v = check_final(&h, &[left(Some(BASE + 100))], now, &params);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].kind, TtlViolationKind::NotRemoved);
    // Its deadline lost as well: both reported.
    let v = check_final(&h, &[left(None)], now, &params);
    assert_eq!(v.len(), 2, "{v:?}");
    // Gone, or not yet due on the leader's clock: fine.
    let gone = FinalRead {
        value: None,
        ..left(None)
    };
    assert!(check_final(&h, &[gone], now, &params).is_empty());
    assert!(check_final(&h, &[left(Some(BASE + 100))], (BASE + 200) as i64, &params).is_empty());
}
