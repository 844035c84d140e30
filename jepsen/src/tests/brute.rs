//! Cross-check against an independent brute-force checker: enumerate every
//! order of every subset of ops (all completed ones, any indeterminate ones)
//! that respects real time, run it through the register model, and compare
//! with the checker's verdict on thousands of small random histories. This
//! guards the search's shortcuts (memoisation, dominance, the rule about
//! blind writes after indeterminate ops), in both directions, and the
//! model's lazy treatment of expiry: here every expiry of a short-TTL value
//! is an explicit, nondeterministic transition before any op.

use super::*;
use crate::history::Outcome;

struct BOp {
    op: Op,
    ret: Option<Ret>, // None = indeterminate
    invoke: u64,
    complete: u64, // u64::MAX for indeterminate
}

/// A state: the value and whether it may expire by itself (a short TTL).
type BState = Option<(String, bool)>;

/// TTLs at or above this are long in these histories (they span
/// nanoseconds; the checker's threshold is then about 181 s).
const LONG_TTL: u64 = 3_600_000;

fn value(s: &BState) -> Option<&String> {
    s.as_ref().map(|(v, _)| v)
}

/// The sequential spec without expiry, written independently of the
/// checker's `Step`: every possible next state. An indeterminate CAS,
/// expire or persist may apply or not (both listed).
fn exact(state: &BState, op: &BOp) -> Vec<BState> {
    let cur = value(state);
    let present = state.is_some();
    let short = |ttl: u64| ttl < LONG_TTL;
    match (&op.op, &op.ret) {
        (Op::Read, Some(Ret::Read(v))) => {
            if cur == v.as_ref() {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (Op::Write(v), _) => vec![Some((v.clone(), false))],
        (Op::WriteTtl { value, ttl_ms }, _) => vec![Some((value.clone(), short(*ttl_ms)))],
        (Op::WriteKeepTtl(v), _) => {
            let keeps = state.as_ref().is_some_and(|(_, s)| *s);
            vec![Some((v.clone(), keeps))]
        }
        (Op::Delete, _) => vec![None],
        (Op::Cas { expected, new }, Some(Ret::Cas(true))) => {
            if cur == expected.as_ref() {
                vec![Some((new.clone(), false))]
            } else {
                vec![]
            }
        }
        (Op::Cas { expected, .. }, Some(Ret::Cas(false))) => {
            if cur != expected.as_ref() {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        (Op::Cas { expected, new }, None) => {
            if cur == expected.as_ref() {
                vec![Some((new.clone(), false)), state.clone()]
            } else {
                vec![state.clone()]
            }
        }
        (Op::Expire { .. } | Op::Persist, Some(Ret::Found(false))) => {
            if present {
                vec![]
            } else {
                vec![None]
            }
        }
        (Op::Expire { .. } | Op::Persist, found) => {
            let may_expire = matches!(op.op, Op::Expire { ttl_ms } if short(ttl_ms));
            let set = state.as_ref().map(|(v, _)| Some((v.clone(), may_expire)));
            match (found, set) {
                (Some(_), Some(s)) => vec![s],
                (Some(_), None) => vec![],
                (None, Some(s)) => vec![s, state.clone()],
                (None, None) => vec![state.clone()],
            }
        }
        _ => unreachable!(),
    }
}

/// One op with explicit expiry: a value with a short TTL may expire
/// before it (or not).
fn step(state: &BState, op: &BOp) -> Vec<BState> {
    let mut before = vec![state.clone()];
    if state.as_ref().is_some_and(|(_, short)| *short) {
        before.push(None);
    }
    before.iter().flat_map(|s| exact(s, op)).collect()
}

fn search(ops: &[BOp], used: &mut Vec<bool>, state: &BState) -> bool {
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
        for next in step(state, &ops[i]) {
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

/// The values ops draw from: writes take them in turn, reads and CAS pick
/// among them (or none) so that matches are likely.
const POOL: [&str; 4] = ["a", "b", "c", "d"];

/// A value of [`POOL`], or none.
fn pick(rng: &mut Rng) -> Option<String> {
    let i = rng.below(POOL.len() as u64 + 1) as usize;
    POOL.get(i).map(|s| s.to_string())
}

/// One op each of `n` clients on one key, with random overlapping
/// intervals, random results and random fates (some failed, some
/// indeterminate); `draw` makes each op, given a source of fresh values.
fn random_events(
    rng: &mut Rng,
    n: usize,
    mut draw: impl FnMut(&mut Rng, &mut dyn FnMut() -> String) -> Op,
) -> History {
    let mut next_value = 0;
    let mut events = Vec::new();
    for client in 0..n as u64 {
        let a = rng.below(20);
        let b = a + rng.below(12);
        let mut fresh = || {
            let v = POOL[next_value % POOL.len()].to_string();
            next_value += 1;
            v
        };
        let op = draw(rng, &mut fresh);
        let ret = random_ret(rng, &op, pick);
        let e = match rng.below(10) {
            0..=1 => Event::indeterminate(client, K, op, a),
            2 => Event::fail(client, K, op, a, b),
            _ => Event::ok(client, K, op, a, b, ret),
        };
        events.push(e);
    }
    History { events }
}

/// A random small history over one key; results are random, so many are not
/// linearizable.
fn random_history(rng: &mut Rng, n: usize) -> History {
    random_events(rng, n, |rng, fresh| match rng.below(10) {
        0..=3 => Op::Read,
        4..=6 => Op::Write(fresh()),
        7..=8 => Op::Cas {
            expected: pick(rng),
            new: pick(rng).unwrap_or_else(|| "a".into()),
        },
        _ => Op::Delete,
    })
}

/// A random result for `op`.
fn random_ret(rng: &mut Rng, op: &Op, pick: impl Fn(&mut Rng) -> Option<String>) -> Ret {
    match op {
        Op::Read => Ret::Read(pick(rng)),
        Op::Write(_) | Op::WriteTtl { .. } | Op::WriteKeepTtl(_) => Ret::Written,
        Op::Cas { .. } => Ret::Cas(rng.chance(0.5)),
        Op::Delete => Ret::Deleted,
        Op::Expire { .. } | Op::Persist => Ret::Found(rng.chance(0.6)),
    }
}

/// Like [`random_history`], with TTL operations: writes with a short or a
/// long TTL, keepttl writes, expire (short or long) and persist.
fn random_ttl_history(rng: &mut Rng, n: usize) -> History {
    let ttl = |rng: &mut Rng| if rng.chance(0.6) { 50 } else { LONG_TTL };
    random_events(rng, n, |rng, fresh| match rng.below(20) {
        0..=7 => Op::Read,
        8 => Op::Write(fresh()),
        9..=10 => Op::WriteTtl {
            value: fresh(),
            ttl_ms: ttl(rng),
        },
        11 => Op::WriteKeepTtl(fresh()),
        12..=13 => Op::Expire { ttl_ms: ttl(rng) },
        14 => Op::Persist,
        15..=17 => Op::Cas {
            expected: pick(rng),
            new: fresh(),
        },
        _ => Op::Delete,
    })
}

/// The checker's verdict on `h` equals the brute force's; returns it and
/// the report.
#[track_caller]
fn agree(what: &str, h: &History) -> (bool, Report) {
    let expected = brute_force(h);
    let report = check(h, Budget::default());
    assert_eq!(
        report.ok(),
        expected,
        "{what}: brute force says {expected}, checker:\n{report}\nhistory:\n{}",
        h.to_jsonl_string()
    );
    (expected, report)
}

/// Both verdicts came up more than `min` times (for the comparison to
/// mean much).
#[track_caller]
fn assert_both(verdicts: impl IntoIterator<Item = bool>, min: usize) {
    let (yes, no) = verdicts
        .into_iter()
        .fold((0, 0), |(y, n), v| if v { (y + 1, n) } else { (y, n + 1) });
    println!("{yes} linearizable, {no} not");
    assert!(yes > min && no > min, "{yes} linearizable, {no} not");
}

/// Make one random completed read of `h` (if any, with probability `p`)
/// return a random value among those written (or none): a subtle
/// non-linearizable history, most of the time.
fn corrupt_a_read(rng: &mut Rng, h: &mut History, p: f64) {
    let reads: Vec<usize> = (0..h.len())
        .filter(|&i| matches!(h.events[i].outcome, Outcome::Ok(Ret::Read(_))))
        .collect();
    if reads.is_empty() || !rng.chance(p) {
        return;
    }
    let i = reads[rng.below(reads.len() as u64) as usize];
    let values: Vec<Option<String>> = std::iter::once(None)
        .chain(h.events.iter().filter_map(|e| match &e.op {
            Op::Write(v)
            | Op::WriteTtl { value: v, .. }
            | Op::WriteKeepTtl(v)
            | Op::Cas { new: v, .. } => Some(Some(v.clone())),
            _ => None,
        }))
        .collect();
    let v = values[rng.below(values.len() as u64) as usize].clone();
    h.events[i].outcome = Outcome::Ok(Ret::Read(v));
}

#[test]
fn brute_force_agrees_on_small_random_ttl_histories() {
    // The checker folds expiry into the ops lazily and keeps the unexpired
    // outcome when both are legal; the brute force enumerates every expiry
    // explicitly. They must agree.
    let mut rng = Rng::new(4242);
    let verdicts = (0..4_000).map(|case| {
        let n = 1 + rng.below(8) as usize;
        agree(&format!("case {case}"), &random_ttl_history(&mut rng, n)).0
    });
    assert_both(verdicts, 500);
}

#[test]
fn brute_force_agrees_on_small_random_histories() {
    let mut rng = Rng::new(42);
    let verdicts = (0..4_000).map(|case| {
        let n = 1 + rng.below(8) as usize;
        let (expected, report) = agree(&format!("case {case}"), &random_history(&mut rng, n));
        assert!(
            matches!(
                report.keys[0].verdict,
                Verdict::Linearizable | Verdict::NotLinearizable(_)
            ),
            "{report}"
        );
        expected
    });
    assert_both(verdicts, 500);
}

#[test]
fn brute_force_agrees_on_generated_histories() {
    // Linearizable by construction, then one random read result changed:
    // more subtle failures than fully random histories.
    let mut rng = Rng::new(9);
    let verdicts = (0..1_500).map(|case| {
        let seed = rng.next_u64();
        let mut h = super::generated::generate(&mut Rng::new(seed), 9, 1, 4, 0.25, 0.1);
        corrupt_a_read(&mut rng, &mut h, 0.6);
        agree(&format!("case {case}"), &h).0
    });
    assert_both(verdicts, 200);
}

#[test]
fn brute_force_agrees_on_generated_ttl_histories() {
    // Linearizable by construction (with expiries at random moments), then
    // one random read result changed: the subtle cases for the model's
    // lazy expiry, such as a CAS mismatch or a keepttl write on a value
    // that may have expired.
    let mut rng = Rng::new(77);
    let verdicts = (0..1_500).map(|case| {
        let seed = rng.next_u64();
        let mut h = super::ttl::generate_ttl(&mut Rng::new(seed), 9, 1, 4, 0.2, 0.1, 0.3);
        corrupt_a_read(&mut rng, &mut h, 0.5);
        agree(&format!("case {case}"), &h).0
    });
    assert_both(verdicts, 200);
}
