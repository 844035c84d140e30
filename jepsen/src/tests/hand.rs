//! Small hand-made histories: ones that must pass and planted anomalies that
//! must be caught (with the anomaly pointing at the right op).

use super::*;
use crate::checker::Overall;
use crate::history::Outcome;

// ----- linearizable -----

#[test]
fn empty_history_is_linearizable() {
    assert!(check(&History::new(), Budget::default()).ok());
}

#[test]
fn sequential_history_passes() {
    assert_linearizable(vec![
        r(1, None, 0, 5),
        w(1, "a", 10, 20),
        r(2, some("a").as_deref(), 30, 40),
        w(2, "b", 50, 60),
        r(1, Some("b"), 70, 80),
    ]);
}

#[test]
fn concurrent_overlapping_writes_either_order() {
    for last in ["a", "b"] {
        assert_linearizable(vec![
            w(1, "a", 0, 100),
            w(2, "b", 10, 90),
            r(3, Some(last), 110, 120),
        ]);
    }
}

#[test]
fn read_concurrent_with_two_writes_sees_either_or_neither() {
    for seen in [None, Some("a"), Some("b")] {
        assert_linearizable(vec![
            w(1, "a", 0, 100),
            w(2, "b", 0, 100),
            r(3, seen, 50, 60),
        ]);
    }
}

#[test]
fn read_concurrent_with_write_then_later_reads_agree() {
    // r1 sees the write early; r2, after it completes, must see it too.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        w(2, "b", 20, 100),
        r(3, Some("b"), 30, 40),
        r(3, Some("b"), 50, 60),
        r(4, Some("b"), 110, 120),
    ]);
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // One clock cannot order an op completing at t and one invoked at t.
    assert_linearizable(vec![w(1, "a", 0, 10), r(2, None, 10, 20)]);
}

#[test]
fn cas_success_and_failure() {
    assert_linearizable(vec![
        cas(1, None, "a", 0, 10, true), // create if absent
        cas(2, None, "x", 20, 30, false),
        cas(1, Some("a"), "b", 40, 50, true),
        cas(2, Some("a"), "c", 60, 70, false), // 412: mismatch is information
        r(3, Some("b"), 80, 90),
    ]);
}

#[test]
fn concurrent_cas_only_one_wins() {
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        cas(2, Some("a"), "b", 20, 50, true),
        cas(3, Some("a"), "c", 20, 50, false),
        r(1, Some("b"), 60, 70),
    ]);
}

#[test]
fn delete_then_read_absent() {
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        del(2, 20, 30),
        r(1, None, 40, 50),
        cas(3, None, "b", 60, 70, true),
    ]);
}

#[test]
fn indeterminate_write_later_observed() {
    // The write's outcome was unknown; it took effect long after the client
    // gave up, between the two reads.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        Event::indeterminate(2, K, Op::Write("b".into()), 20),
        r(3, Some("a"), 100, 110),
        r(3, Some("b"), 200, 210),
        r(4, Some("b"), 300, 310),
    ]);
}

#[test]
fn indeterminate_write_never_observed() {
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        Event::indeterminate(2, K, Op::Write("b".into()), 20),
        r(3, Some("a"), 100, 110),
        r(3, Some("a"), 200, 210),
    ]);
}

#[test]
fn indeterminate_cas_and_delete() {
    let icas = |e: &str, n: &str, t| {
        Event::indeterminate(
            2,
            K,
            Op::Cas {
                expected: some(e),
                new: n.into(),
            },
            t,
        )
    };
    // Applied: observed.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        icas("a", "b", 20),
        r(3, Some("b"), 30, 40),
    ]);
    // Not applied.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        icas("a", "b", 20),
        r(3, Some("a"), 30, 40),
    ]);
    // A delete that took effect after its client gave up.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        Event::indeterminate(2, K, Op::Delete, 20),
        r(3, Some("a"), 30, 40),
        r(3, None, 50, 60),
    ]);
}

#[test]
fn indeterminate_write_explains_cas_mismatch() {
    // The CAS expected "a" and failed: only the crashed write of "b" can
    // explain it.
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        Event::indeterminate(2, K, Op::Write("b".into()), 20),
        cas(3, Some("a"), "c", 30, 40, false),
    ]);
}

#[test]
fn failed_ops_are_dropped() {
    assert_linearizable(vec![
        w(1, "a", 0, 10),
        Event::fail(2, K, Op::Write("b".into()), 20, 30),
        Event::fail(2, K, Op::Read, 20, 30),
        Event::indeterminate(2, K, Op::Read, 20),
        r(3, Some("a"), 40, 50),
    ]);
}

#[test]
fn keys_are_independent() {
    let mut events = vec![w(1, "a", 0, 10), r(2, Some("a"), 20, 30)];
    let mut other = w(1, "z", 0, 10);
    other.key = "k2".into();
    events.push(other);
    let mut other_read = r(2, None, 20, 30);
    other_read.key = "k3".into();
    events.push(other_read);
    let report = run(events);
    assert!(report.ok(), "{report}");
    assert_eq!(report.keys.len(), 3);
}

// ----- planted anomalies -----

#[test]
fn stale_read_is_caught() {
    // The read starts after the write of "v2" completed but returns "v1".
    let report = assert_not_linearizable(vec![
        w(1, "v1", 0, 10),
        w(2, "v2", 20, 30),
        r(3, Some("v1"), 40, 50),
    ]);
    assert_stuck_at(&report, 2);
    let a = report.anomalies().next().unwrap();
    assert_eq!(a.state_after_prefix.as_deref(), Some("v2"));
    assert_eq!(a.prefix.len(), 2);
    let text = report.to_string();
    assert!(
        text.contains("read \"v1\" but the register holds \"v2\""),
        "{text}"
    );
}

#[test]
fn lost_write_is_caught() {
    // "v2" was acknowledged, yet every later read sees the older "v1".
    let report = assert_not_linearizable(vec![
        w(1, "v1", 0, 10),
        r(3, Some("v1"), 12, 15),
        w(2, "v2", 20, 30),
        r(3, Some("v1"), 40, 50),
        r(4, Some("v1"), 60, 70),
    ]);
    assert_stuck_at(&report, 3);
}

#[test]
fn value_going_back_in_time_is_caught() {
    // A slow write of "v2" overlaps both reads; once r1 saw "v2", the later,
    // non-overlapping r2 cannot see "v1" again.
    let report = assert_not_linearizable(vec![
        w(1, "v1", 0, 10),
        w(2, "v2", 20, 200),
        r(3, Some("v2"), 30, 40),
        r(4, Some("v1"), 50, 60),
    ]);
    assert_stuck_at(&report, 3);
    // The same reads in the other order are fine.
    assert_linearizable(vec![
        w(1, "v1", 0, 10),
        w(2, "v2", 20, 200),
        r(3, Some("v1"), 30, 40),
        r(4, Some("v2"), 50, 60),
    ]);
}

#[test]
fn aborted_read_is_caught() {
    // The write was reported as not applied, yet a read returns its value.
    let report = assert_not_linearizable(vec![
        w(1, "v1", 0, 10),
        Event::fail(2, K, Op::Write("v2".into()), 20, 30),
        r(3, Some("v2"), 40, 50),
    ]);
    assert_stuck_at(&report, 2);
    // Even while the failed write is still in flight.
    assert_not_linearizable(vec![
        Event::fail(2, K, Op::Write("v2".into()), 0, 100),
        r(3, Some("v2"), 40, 50),
    ]);
}

#[test]
fn cas_success_on_wrong_value_is_caught() {
    let report = assert_not_linearizable(vec![
        w(1, "a", 0, 10),
        w(2, "b", 20, 30),
        cas(3, Some("a"), "c", 40, 50, true),
    ]);
    assert_stuck_at(&report, 2);
    assert!(report.to_string().contains("successful CAS"), "{report}");
}

#[test]
fn cas_mismatch_on_matching_value_is_caught() {
    let report = assert_not_linearizable(vec![
        w(1, "a", 0, 10),
        cas(3, Some("a"), "c", 20, 30, false),
    ]);
    assert_stuck_at(&report, 1);
}

#[test]
fn read_of_deleted_value_is_caught() {
    assert_not_linearizable(vec![
        w(1, "a", 0, 10),
        del(2, 20, 30),
        r(1, Some("a"), 40, 50),
    ]);
}

#[test]
fn read_of_never_written_value_is_caught() {
    assert_not_linearizable(vec![w(1, "a", 0, 10), r(1, Some("zzz"), 20, 30)]);
}

#[test]
fn indeterminate_write_cannot_act_before_its_invocation() {
    let report = assert_not_linearizable(vec![
        r(1, Some("b"), 0, 10),
        Event::indeterminate(2, K, Op::Write("b".into()), 20),
    ]);
    assert_stuck_at(&report, 0);
}

#[test]
fn many_crashed_writes_do_not_blow_up_a_failing_search() {
    // 40 concurrent writes with unknown outcome, none observed, then a stale
    // read: naively 2^40 subsets of crashed writes to rule out.
    let mut events = vec![w(1, "v1", 0, 10), w(1, "v2", 20, 30)];
    for i in 0..40 {
        events.push(Event::indeterminate(
            10 + i,
            K,
            Op::Write(format!("x{i}")),
            35 + i,
        ));
    }
    events.push(r(2, Some("v2"), 100, 110));
    events.push(r(2, Some("v1"), 200, 210));
    let start = std::time::Instant::now();
    let report = run(events.clone());
    assert!(
        matches!(report.keys[0].verdict, Verdict::NotLinearizable(_)),
        "{report}"
    );
    // A hang bound (2^40 subsets would never finish), not a speed target.
    assert!(
        start.elapsed().as_secs() < 120,
        "took {:?}",
        start.elapsed()
    );
    // Linearizable variant: one crashed write observed.
    let n = events.len();
    events[n - 1] = r(2, Some("x7"), 200, 210);
    assert_linearizable(events);
}

// ----- reports, budget, validation, serialisation -----

#[test]
fn tiny_budget_is_unknown_and_not_ok() {
    let h = super::generated::generate(&mut Rng::new(7), 2_000, 1, 6, 0.03, 0.03);
    let report = check(&h, Budget::unlimited().with_states(10));
    assert!(
        matches!(report.keys[0].verdict, Verdict::Unknown { .. }),
        "{report}"
    );
    assert_eq!(report.overall(), Overall::Unknown);
    assert!(!report.ok(), "Unknown must not pass");
    // A tiny time budget too (checked every 1024 steps).
    let report = check(&h, Budget::unlimited().with_time(std::time::Duration::ZERO));
    assert_eq!(report.overall(), Overall::Unknown, "{report}");
    assert!(!report.ok());
    // With a real budget the same history passes.
    assert!(check(&h, Budget::default()).ok());
}

#[test]
fn malformed_event_is_invalid_and_not_ok() {
    let mut bad = w(1, "a", 0, 10);
    bad.outcome = Outcome::Ok(Ret::Read(None));
    let report = run(vec![bad]);
    assert_eq!(report.overall(), Overall::Invalid);
    assert!(!report.ok());
    let mut backwards = w(1, "a", 10, 0);
    backwards.complete_ns = Some(5);
    assert!(!run(vec![backwards]).ok());
}

#[test]
fn not_linearizable_beats_other_verdicts() {
    let mut events = vec![
        w(1, "v1", 0, 10),
        w(2, "v2", 20, 30),
        r(3, Some("v1"), 40, 50),
    ];
    let mut bad = r(1, None, 0, 10);
    bad.key = "other".into();
    bad.outcome = Outcome::Ok(Ret::Written);
    events.push(bad);
    assert_eq!(run(events).overall(), Overall::NotLinearizable);
}

#[test]
fn jsonl_round_trip() {
    let h: History = vec![
        w(1, "a", 0, 10),
        cas(2, None, "b", 5, 15, false),
        Event::indeterminate(3, K, Op::Delete, 20),
        Event::fail(4, K, Op::Write("c".into()), 30, 40),
        r(5, None, 50, 60),
    ]
    .into_iter()
    .collect();
    let text = h.to_jsonl_string();
    assert_eq!(text.lines().count(), 5);
    assert_eq!(History::from_jsonl_str(&text).unwrap(), h);
    assert_eq!(History::from_json_lines(&h.to_json_lines()).unwrap(), h);
    let err = History::from_jsonl_str("{\"nope\":1}\n").unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}
