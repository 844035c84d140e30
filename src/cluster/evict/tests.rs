//! One deterministic scenario per policy: a cache one key short of full,
//! one write that needs room, and what the plan names. Sampling uses a
//! seeded RNG (the seed is in each assertion message).

use super::*;
use crate::kv::Request;
use crate::kv::Response;

const SEED: u64 = 20261202;
const NOW: u64 = 10_000_000;

fn put(c: &mut Cache, i: u64, key: &str, ttl: Ttl) {
    let cmd = Command::Set {
        key: key.into(),
        value: vec![b'v'; 10],
        cas: None,
        ttl,
    };
    c.apply(i, &Request::new(NOW - 1_000_000, cmd));
}

/// 10 keys k00..k09 (k00..k04 with a TTL, deadline rising with the index),
/// all last used 1000 s before NOW, except `fresh` keys used at NOW. (Fewer
/// keys than samples: the sampled policies see every key, so the expected
/// victim is exact.)
fn cache(fresh: &[&str]) -> Cache {
    let mut c = Cache::new();
    for i in 0..10u64 {
        let ttl = if i < 5 {
            Ttl::In(2_000_000 + i * 1000)
        } else {
            Ttl::Clear
        };
        put(&mut c, i + 1, &format!("k{i:02}"), ttl);
    }
    for k in fresh {
        let it = c.get_item(k).unwrap();
        it.set_access(Access(it.access()).touched(NOW, 0.0).0);
    }
    c
}

fn write(key: &str) -> Command {
    Command::Set {
        key: key.into(),
        value: vec![b'x'; 10],
        cas: None,
        ttl: Ttl::Clear,
    }
}

/// A budget that the 10 keys fill exactly (so any new key needs room).
fn full(c: &Cache) -> u64 {
    c.mem_bytes()
}

fn all_but(skip: &[&str]) -> Vec<String> {
    (0..10)
        .map(|i| format!("k{i:02}"))
        .filter(|k| !skip.contains(&k.as_str()))
        .collect()
}

#[test]
fn noeviction_names_no_victim_and_unlimited_plans_nothing() {
    let c = cache(&[]);
    let e = Evictor::seeded(EvictionPolicy::NoEviction, full(&c), SEED);
    assert!(e.plan(&c, &write("new"), NOW).victims().is_empty());
    let e = Evictor::seeded(EvictionPolicy::AllkeysLru, 0, SEED);
    assert!(e.plan(&c, &write("new"), NOW).victims().is_empty());
}

#[test]
fn allkeys_lru_evicts_the_least_recently_used_key() {
    let old = "k07";
    let fresh = all_but(&[old]);
    let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
    let c = cache(&fresh);
    let e = Evictor::seeded(EvictionPolicy::AllkeysLru, full(&c), SEED);
    let r = e.plan(&c, &write("new"), NOW);
    assert_eq!(r.victims(), [old], "seed {SEED}");
}

#[test]
fn volatile_lru_only_evicts_keys_with_a_ttl() {
    // The least recently used keys (k05..k09) have no TTL: not eligible.
    let c = cache(&["k00", "k01", "k03", "k04"]);
    let e = Evictor::seeded(EvictionPolicy::VolatileLru, full(&c), SEED);
    let r = e.plan(&c, &write("new"), NOW);
    assert_eq!(r.victims(), ["k02"], "seed {SEED}");
}

#[test]
fn allkeys_lfu_evicts_the_least_frequently_used_key() {
    let c = cache(&[]);
    // Everyone but k04 is read often (the counter rises with each coin 0).
    for (i, it) in c.items().enumerate() {
        if it.key() != b"k04" {
            let mut a = Access(it.access());
            for _ in 0..5 + i {
                a = a.touched(NOW, 0.0);
            }
            it.set_access(a.0);
        }
    }
    let e = Evictor::seeded(EvictionPolicy::AllkeysLfu, full(&c), SEED);
    let r = e.plan(&c, &write("new"), NOW);
    assert_eq!(r.victims(), ["k04"], "seed {SEED}");
}

#[test]
fn volatile_ttl_evicts_the_nearest_deadlines_exactly() {
    let c = cache(&[]);
    let e = Evictor::seeded(EvictionPolicy::VolatileTtl, full(&c), SEED);
    let big = Command::Set {
        key: "new".into(),
        value: vec![b'x'; 100],
        cas: None,
        ttl: Ttl::Clear,
    };
    // Needs two keys' worth of room: the two nearest deadlines.
    assert_eq!(e.plan(&c, &big, NOW).victims(), ["k00", "k01"]);
}

#[test]
fn allkeys_random_evicts_some_other_key_and_never_the_written_one() {
    let c = cache(&[]);
    let e = Evictor::seeded(EvictionPolicy::AllkeysRandom, full(&c), SEED);
    let bigger = Command::Set {
        key: "k05".into(),
        value: vec![b'x'; 50],
        cas: None,
        ttl: Ttl::Clear,
    };
    // Overwriting an existing key with a bigger value needs room too.
    let r = e.plan(&c, &bigger, NOW);
    let v = r.victims();
    assert_eq!(v.len(), 1, "seed {SEED}: {v:?}");
    assert_ne!(v[0], "k05");
}

#[test]
fn writes_in_flight_do_not_pick_the_same_victim_and_count_their_bytes() {
    let c = cache(&[]);
    let e = Evictor::seeded(EvictionPolicy::VolatileTtl, full(&c), SEED);
    let a = e.plan(&c, &write("a"), NOW);
    let b = e.plan(&c, &write("b"), NOW);
    assert_eq!(a.victims(), ["k00"]);
    // b does not count on the room a's victim will free (the log may
    // order b first) and does not take k00 again: it takes the next one.
    assert_eq!(b.victims(), ["k01"]);
    drop(a);
    drop(b);
    assert_eq!(e.plan(&c, &write("c"), NOW).victims(), ["k00"]);
}

#[test]
fn a_write_bigger_than_the_whole_budget_evicts_nothing() {
    let c = cache(&[]);
    let e = Evictor::seeded(EvictionPolicy::AllkeysRandom, 100, SEED);
    let huge = Command::Set {
        key: "huge".into(),
        value: vec![0; 1000],
        cas: None,
        ttl: Ttl::Clear,
    };
    assert!(e.plan(&c, &huge, NOW).victims().is_empty());
}

/// The log may order concurrent writes differently from their plans: a
/// write planned after another must not count on the room the other's
/// victims will free, since it may be applied first (found by
/// tests/eviction.rs `evictions_under_load_converge_across_a_follower_restart`:
/// allkeys-lru writes refused with 507 under concurrent load).
#[test]
fn a_write_applied_before_an_earlier_planned_one_still_fits() {
    let mut c = cache(&[]);
    let max = full(&c);
    let e = Evictor::seeded(EvictionPolicy::VolatileTtl, max, SEED);
    // `a` (1 + 80 + 80 bytes) needs two victims (152 bytes each), which
    // free 143 bytes more than `a` adds; `b` (91 bytes) is planned while
    // `a` is in flight.
    let a_cmd = Command::Set {
        key: "a".into(),
        value: vec![b'x'; 80],
        cas: None,
        ttl: Ttl::Clear,
    };
    let a = e.plan(&c, &a_cmd, NOW);
    assert_eq!(a.victims(), ["k00", "k01"]);
    let b_cmd = write("b");
    let b = e.plan(&c, &b_cmd, NOW);
    let request = |cmd: &Command, victims: &[String]| Request {
        now_ms: NOW,
        cmd: cmd.clone(),
        evict: victims.to_vec(),
        max_memory: max,
    };
    let (ra, rb) = (request(&a_cmd, a.victims()), request(&b_cmd, b.victims()));
    // `b` reaches the log first: it must fit on its own victims.
    assert!(
        matches!(c.apply(20, &rb), Response::Set { .. }),
        "b refused: it counted on a's victims"
    );
    assert!(matches!(c.apply(21, &ra), Response::Set { .. }));
    assert!(c.mem_bytes() <= max);
}
