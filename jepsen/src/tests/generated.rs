//! Generated histories: a simulated linearizable register store under
//! concurrent clients with random, overlapping operation intervals, some
//! failed and some indeterminate ops. Used for the performance tests.

use super::*;
use crate::history::Outcome;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Write,
    Cas,
    Delete,
}

/// One op as planned: its client, key, kind and times (invoke ≤
/// linearization point ≤ complete).
pub(crate) struct Planned<K> {
    pub(crate) client: u64,
    pub(crate) key: usize,
    pub(crate) kind: K,
    pub(crate) invoke: u64,
    pub(crate) lp: u64,
    pub(crate) complete: u64,
}

impl<K> Planned<K> {
    /// This op's event: `fate` says whether it completed (answering
    /// `ret`), failed, or has an unknown outcome.
    pub(crate) fn event(&self, key: String, op: Op, fate: Outcome, ret: Ret) -> Event {
        let (complete_ns, outcome) = match fate {
            Outcome::Ok(_) => (Some(self.complete), Outcome::Ok(ret)),
            Outcome::Fail => (Some(self.complete), Outcome::Fail),
            Outcome::Indeterminate => (None, Outcome::Indeterminate),
        };
        Event {
            client: self.client,
            key,
            op,
            invoke_ns: self.invoke,
            complete_ns,
            outcome,
            ttl: None,
        }
    }
}

/// `n_ops` ops of `clients` clients over `keys` keys, each client's ops one
/// after another with random, overlapping intervals; `kind` draws each op's
/// kind. Sorted by linearization point.
pub(crate) fn plan<K>(
    rng: &mut Rng,
    n_ops: usize,
    keys: usize,
    clients: u64,
    mut kind: impl FnMut(&mut Rng) -> K,
) -> Vec<Planned<K>> {
    let mut planned = Vec::with_capacity(n_ops);
    let per_client = n_ops.div_ceil(clients as usize);
    for client in 0..clients {
        let mut t = rng.below(1_000);
        for _ in 0..per_client {
            if planned.len() >= n_ops {
                break;
            }
            let invoke = t + rng.below(200);
            let lp = invoke + 1 + rng.below(1_000);
            let complete = lp + rng.below(1_000);
            let kind = kind(rng);
            planned.push(Planned {
                client,
                key: rng.below(keys as u64) as usize,
                kind,
                invoke,
                lp,
                complete,
            });
            t = complete;
        }
    }
    planned.sort_by_key(|p| p.lp);
    planned
}

/// Generates a linearizable history of `n_ops` ops over `keys` keys by
/// `clients` concurrent clients. Each op gets a random interval and a
/// linearization point inside it; ops are applied to per-key registers in
/// linearization-point order to compute their results. A fraction
/// `p_indet` becomes indeterminate (applied or not, at random) and `p_fail`
/// fails without effect.
pub(crate) fn generate(
    rng: &mut Rng,
    n_ops: usize,
    keys: usize,
    clients: u64,
    p_indet: f64,
    p_fail: f64,
) -> History {
    let planned = plan(rng, n_ops, keys, clients, |rng| match rng.below(100) {
        0..45 => Kind::Read,
        45..75 => Kind::Write,
        75..93 => Kind::Cas,
        _ => Kind::Delete,
    });
    let mut regs: HashMap<usize, Option<String>> = HashMap::new();
    let mut written: HashMap<usize, Vec<String>> = HashMap::new();
    let mut events = Vec::with_capacity(n_ops);
    for (i, p) in planned.iter().enumerate() {
        let key = format!("key{}", p.key);
        let cur = regs.entry(p.key).or_default();
        let fate = if p.kind != Kind::Read && rng.chance(p_fail) {
            Outcome::Fail
        } else if rng.chance(p_indet) {
            Outcome::Indeterminate
        } else {
            Outcome::Ok(Ret::Written) // placeholder, replaced below
        };
        // An indeterminate op takes effect or not; a failed one never does.
        let applies = match fate {
            Outcome::Fail => false,
            Outcome::Indeterminate => rng.chance(0.5),
            Outcome::Ok(_) => true,
        };
        let value = format!("{key}-v{i}");
        let (op, ret) = match p.kind {
            Kind::Read => (Op::Read, Ret::Read(cur.clone())),
            Kind::Write => {
                if applies {
                    *cur = Some(value.clone());
                    written.entry(p.key).or_default().push(value.clone());
                }
                (Op::Write(value), Ret::Written)
            }
            Kind::Cas => {
                // Like the harness: usually the value it just read, sometimes
                // an older one (it lost a race).
                let hist = written.entry(p.key).or_default();
                let expected = if rng.chance(0.6) || hist.is_empty() {
                    cur.clone()
                } else {
                    Some(hist[rng.below(hist.len() as u64) as usize].clone())
                };
                let matched = *cur == expected;
                if applies && matched {
                    *cur = Some(value.clone());
                    hist.push(value.clone());
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
                if applies {
                    *cur = None;
                }
                (Op::Delete, Ret::Deleted)
            }
        };
        events.push(p.event(key, op, fate, ret));
    }
    // Record in invocation order, as a harness would (order is irrelevant).
    events.sort_by_key(|e| e.invoke_ns);
    History { events }
}

/// Makes one read in the second half of the history return a stale value:
/// one written by an acknowledged write W1 that was followed (in real time)
/// by an acknowledged overwrite W2 that completed before the read began.
/// Values are unique, so no linearization can explain it. Returns the
/// corrupted event's index.
pub(crate) fn corrupt_one_read(h: &mut History) -> usize {
    let ev = &h.events;
    let changes = |e: &Event| {
        matches!(
            (&e.op, &e.outcome),
            (Op::Write(_), Outcome::Ok(_))
                | (Op::Delete, Outcome::Ok(_))
                | (Op::Cas { .. }, Outcome::Ok(Ret::Cas(true)))
        )
    };
    for ri in ev.len() / 2..ev.len() {
        let read = &ev[ri];
        if !matches!(read.outcome, Outcome::Ok(Ret::Read(_))) {
            continue;
        }
        // W2: the last state change on this key completed before the read.
        let Some(w2) = ev
            .iter()
            .filter(|e| e.key == read.key && changes(e) && e.complete_ns.unwrap() < read.invoke_ns)
            .max_by_key(|e| e.complete_ns)
        else {
            continue;
        };
        // W1: a write completed before W2 was invoked.
        let w1 = ev.iter().filter(|e| {
            e.key == read.key
                && matches!(e.outcome, Outcome::Ok(_))
                && matches!(e.op, Op::Write(_))
                && e.complete_ns.unwrap() < w2.invoke_ns
        });
        let Some(Op::Write(stale)) = w1.max_by_key(|e| e.complete_ns).map(|e| e.op.clone()) else {
            continue;
        };
        if read.outcome == Outcome::Ok(Ret::Read(Some(stale.clone()))) {
            continue;
        }
        h.events[ri].outcome = Outcome::Ok(Ret::Read(Some(stale)));
        return ri;
    }
    panic!("no read to corrupt");
}

fn stats(h: &History) -> String {
    let indet = h
        .events
        .iter()
        .filter(|e| e.outcome == Outcome::Indeterminate)
        .count();
    let fail = h
        .events
        .iter()
        .filter(|e| e.outcome == Outcome::Fail)
        .count();
    format!("{} ops ({indet} indeterminate, {fail} failed)", h.len())
}

/// A hang bound, not a speed target (debug builds on a loaded 2-core CI
/// machine; the time is printed): an exponential search would not finish.
const DEBUG_BOUND_SECS: u64 = 120;

/// Check `h`, print what was checked and how long it took, and hold the
/// hang bound.
pub(crate) fn timed_check(what: &str, h: &History) -> crate::checker::Report {
    let start = Instant::now();
    let report = check(h, Budget::default());
    let took = start.elapsed();
    println!("{what}: {} checked in {took:.3?}\n{report}", stats(h));
    assert!(took.as_secs() < DEBUG_BOUND_SECS, "took {took:?}");
    report
}

#[test]
fn generated_10k_ops_10_keys_is_linearizable_and_fast() {
    let h = generate(&mut Rng::new(1), 10_000, 10, 8, 0.03, 0.03);
    let report = timed_check("10k ops / 10 keys / 8 clients", &h);
    assert!(report.ok(), "{report}");
}

#[test]
fn generated_10k_ops_2_keys_high_concurrency_is_linearizable() {
    // 5,000 ops per key with 10 clients: much more per-key concurrency.
    let h = generate(&mut Rng::new(2), 10_000, 2, 10, 0.03, 0.03);
    let report = timed_check("10k ops / 2 keys / 10 clients", &h);
    assert!(report.ok(), "{report}");
}

#[test]
fn generated_10k_ops_with_one_stale_read_is_caught() {
    let mut h = generate(&mut Rng::new(1), 10_000, 10, 8, 0.03, 0.03);
    let ri = corrupt_one_read(&mut h);
    let key = h.events[ri].key.clone();
    let report = timed_check(&format!("corrupted #{ri}"), &h);
    assert!(!report.ok());
    for k in &report.keys {
        if k.key == key {
            assert!(matches!(k.verdict, Verdict::NotLinearizable(_)), "{report}");
        } else {
            assert_eq!(k.verdict, Verdict::Linearizable, "{report}");
        }
    }
}

#[test]
fn generated_high_concurrency_with_one_stale_read_is_caught() {
    let mut h = generate(&mut Rng::new(3), 10_000, 2, 10, 0.03, 0.03);
    let ri = corrupt_one_read(&mut h);
    let report = timed_check(&format!("corrupted #{ri}"), &h);
    assert_eq!(
        report.overall(),
        crate::checker::Overall::NotLinearizable,
        "{report}"
    );
}

#[test]
fn generated_histories_of_many_seeds_pass() {
    // Smaller histories, many seeds, heavier fault rates.
    for seed in 0..40 {
        let h = generate(&mut Rng::new(100 + seed), 600, 2, 6, 0.1, 0.05);
        let report = check(&h, Budget::default());
        assert!(report.ok(), "seed {seed}:\n{report}");
    }
}
