//! Cross-check against an independent brute-force checker: enumerate every
//! order of every subset of ops (all completed ones, any indeterminate ones)
//! that respects real time, run it through the register model, and compare
//! with the checker's verdict on thousands of small random histories. This
//! guards the search's shortcuts (memoisation, dominance, the rule about
//! blind writes after indeterminate ops), in both directions.

use super::*;
use crate::history::Outcome;

struct BOp {
    op: Op,
    ret: Option<Ret>, // None = indeterminate
    invoke: u64,
    complete: u64, // u64::MAX for indeterminate
}

/// The sequential spec, written independently of the checker's `Step`.
/// An indeterminate CAS may apply or not (both legal here).
fn step(state: &Option<String>, op: &BOp) -> Option<Option<String>> {
    match (&op.op, &op.ret) {
        (Op::Read, Some(Ret::Read(v))) => (state == v).then(|| state.clone()),
        (Op::Write(v), _) => Some(Some(v.clone())),
        (Op::Delete, _) => Some(None),
        (Op::Cas { expected, new }, Some(Ret::Cas(true))) => {
            (state == expected).then(|| Some(new.clone()))
        }
        (Op::Cas { expected, .. }, Some(Ret::Cas(false))) => {
            (state != expected).then(|| state.clone())
        }
        (Op::Cas { expected, new }, None) => Some(if state == expected {
            Some(new.clone())
        } else {
            state.clone()
        }),
        _ => unreachable!(),
    }
}

fn search(ops: &[BOp], used: &mut Vec<bool>, state: &Option<String>) -> bool {
    if ops
        .iter()
        .zip(used.iter())
        .all(|(o, &u)| u || o.ret.is_none())
    {
        return true;
    }
    for i in 0..ops.len() {
        if used[i] {
            continue;
        }
        // i may go next only if no unplaced completed op returned before
        // i was invoked.
        let blocked = ops
            .iter()
            .zip(used.iter())
            .any(|(o, &u)| !u && o.ret.is_some() && o.complete < ops[i].invoke);
        if blocked {
            continue;
        }
        if let Some(next) = step(state, &ops[i]) {
            used[i] = true;
            let ok = search(ops, used, &next);
            used[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}

fn brute_force(h: &History) -> bool {
    let ops: Vec<BOp> = h
        .events
        .iter()
        .filter_map(|e| match (&e.op, &e.outcome) {
            (_, Outcome::Fail) | (Op::Read, Outcome::Indeterminate) => None,
            (_, Outcome::Ok(r)) => Some(BOp {
                op: e.op.clone(),
                ret: Some(r.clone()),
                invoke: e.invoke_ns,
                complete: e.complete_ns.unwrap(),
            }),
            (_, Outcome::Indeterminate) => Some(BOp {
                op: e.op.clone(),
                ret: None,
                invoke: e.invoke_ns,
                complete: u64::MAX,
            }),
        })
        .collect();
    let mut used = vec![false; ops.len()];
    search(&ops, &mut used, &None)
}

/// A random small history over one key; results are random, so many are not
/// linearizable. Values: writes use fresh ones, reads/CAS pick from a small
/// pool so that matches are likely.
fn random_history(rng: &mut Rng, n: usize) -> History {
    let pool = ["a", "b", "c", "d"];
    let mut next_value = 0;
    let mut events = Vec::new();
    let pick = |rng: &mut Rng| -> Option<String> {
        let i = rng.below(pool.len() as u64 + 1) as usize;
        pool.get(i).map(|s| s.to_string())
    };
    for client in 0..n as u64 {
        let a = rng.below(20);
        let b = a + rng.below(12);
        let op = match rng.below(10) {
            0..=3 => Op::Read,
            4..=6 => {
                let v = pool[next_value % pool.len()].to_string();
                next_value += 1;
                Op::Write(v)
            }
            7..=8 => Op::Cas {
                expected: pick(rng),
                new: pick(rng).unwrap_or_else(|| "a".into()),
            },
            _ => Op::Delete,
        };
        let ret = match &op {
            Op::Read => Ret::Read(pick(rng)),
            Op::Write(_) => Ret::Written,
            Op::Cas { .. } => Ret::Cas(rng.chance(0.5)),
            Op::Delete => Ret::Deleted,
        };
        let e = match rng.below(10) {
            0..=1 => Event::indeterminate(client, K, op, a),
            2 => Event::fail(client, K, op, a, b),
            _ => Event::ok(client, K, op, a, b, ret),
        };
        events.push(e);
    }
    History { events }
}

#[test]
fn brute_force_agrees_on_small_random_histories() {
    let mut rng = Rng::new(42);
    let (mut yes, mut no) = (0, 0);
    for case in 0..4_000 {
        let n = 1 + rng.below(8) as usize;
        let h = random_history(&mut rng, n);
        let expected = brute_force(&h);
        let report = check(&h, Budget::default());
        assert!(
            matches!(
                report.keys[0].verdict,
                Verdict::Linearizable | Verdict::NotLinearizable(_)
            ),
            "{report}"
        );
        assert_eq!(
            report.ok(),
            expected,
            "case {case}: brute force says {expected}, checker:\n{report}\nhistory:\n{}",
            h.to_jsonl_string()
        );
        if expected { yes += 1 } else { no += 1 }
    }
    println!("{yes} linearizable, {no} not");
    // Both outcomes must be well represented for the comparison to mean much.
    assert!(yes > 500 && no > 500, "{yes} linearizable, {no} not");
}

#[test]
fn brute_force_agrees_on_generated_histories() {
    // Linearizable by construction, then one random read result changed:
    // more subtle failures than fully random histories.
    let mut rng = Rng::new(9);
    let (mut yes, mut no) = (0, 0);
    for _ in 0..1_500 {
        let seed = rng.next_u64();
        let mut h = super::generated::generate(&mut Rng::new(seed), 9, 1, 4, 0.25, 0.1);
        let reads: Vec<usize> = (0..h.len())
            .filter(|&i| matches!(h.events[i].outcome, Outcome::Ok(Ret::Read(_))))
            .collect();
        if !reads.is_empty() && rng.chance(0.6) {
            let i = reads[rng.below(reads.len() as u64) as usize];
            let values: Vec<Option<String>> = std::iter::once(None)
                .chain(h.events.iter().filter_map(|e| match &e.op {
                    Op::Write(v) | Op::Cas { new: v, .. } => Some(Some(v.clone())),
                    _ => None,
                }))
                .collect();
            let v = values[rng.below(values.len() as u64) as usize].clone();
            h.events[i].outcome = Outcome::Ok(Ret::Read(v));
        }
        let expected = brute_force(&h);
        let report = check(&h, Budget::default());
        assert_eq!(
            report.ok(),
            expected,
            "brute force says {expected}, checker:\n{report}\n{}",
            h.to_jsonl_string()
        );
        if expected { yes += 1 } else { no += 1 }
    }
    println!("{yes} linearizable, {no} not");
    assert!(yes > 200 && no > 200, "{yes} linearizable, {no} not");
}
