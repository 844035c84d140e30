//! The memory bound and eviction, end to end on real in-process nodes
//! (README: "Memory bound and eviction", "Cache statistics"): `noeviction`
//! refuses what does not fit, each policy evicts what it promises and the
//! replicas evict the same keys, the bound holds on every node under load,
//! across a follower's restart and through a snapshot, and a value larger
//! than the whole budget is refused without evicting anything.
//!
//! Budgets are computed from README's accounting: a key costs its bytes,
//! its value's bytes and 80 bytes, plus 56 bytes and the key again with a
//! TTL. LRU and LFU are sampled (16 probes of the key space): the scenarios
//! that name a victim use 4 keys, which 64 probes all find except with
//! probability about 1e-8, and separate "recent" from "old" by a whole
//! second, the resolution of the access clock. Elsewhere the tests assert
//! set properties (which keys may go, how many went).
//! Unit tests of the policies: src/cluster/evict/tests.rs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use dcache::config::ByteSize;
use dcache::config::Config;
use dcache::config::EvictionPolicy;
use dcache::wire::Code;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::Resp;
use dcache_testkit::http::send;
use dcache_testkit::seed;
use dcache_testkit::wait_for;
use rand::Rng;
use serde_json::Value;
use serde_json::json;

/// README: accounted bytes of one key.
fn cost(key: &str, value_len: usize, ttl: bool) -> u64 {
    let base = key.len() as u64 + value_len as u64 + 80;
    if ttl {
        base + key.len() as u64 + 56
    } else {
        base
    }
}

/// `n` nodes with this policy and budget.
async fn start(
    n: usize,
    policy: EvictionPolicy,
    max: u64,
    tweak: impl Fn(&mut Config),
) -> TestCluster {
    TestCluster::start(n, |cfg| {
        cfg.cache.eviction_policy = policy;
        cfg.cache.max_memory = ByteSize(max);
        tweak(cfg);
    })
    .await
}

/// `PUT /v1/kv/{key}{query}` with a value of `len` bytes through node `i`.
async fn put(c: &TestCluster, i: usize, key: &str, len: usize, query: &str) -> Resp {
    c.req(i, "PUT", &format!("/v1/kv/{key}{query}"), "v".repeat(len))
        .await
}

/// [`put`], which must be acknowledged.
async fn put_ok(c: &TestCluster, i: usize, key: &str, len: usize, query: &str) {
    let r = put(c, i, key, len, query).await;
    assert_eq!(r.status, 200, "{key}{query} via node {i}: {}", r.text());
}

/// README's message for a write that does not fit.
fn full(needed: u64, max: u64) -> String {
    format!("the cache is full: the write needs {needed} bytes and cache.max_memory is {max} bytes")
}

/// Every running node's `/v1/status`: memory within `max`, the limit as
/// configured.
async fn assert_within_limit(c: &TestCluster, max: u64) {
    for i in c.running() {
        let s = c.get_json(i, "/v1/status").await;
        let mem = s["memory_bytes"].as_u64().unwrap();
        assert!(
            mem <= max,
            "node {i} holds {mem} bytes over the limit {max}: {s}"
        );
        assert_eq!(s["max_memory_bytes"], max, "node {i}");
    }
}

/// Once the replicas converge (equal applied index, key count and digest):
/// every node's replicated counters are equal and within the limit.
/// Returns one node's `/v1/status` and the common `/v1/status/digest`.
async fn converged_with_digest(c: &TestCluster, max: u64) -> (Value, Value) {
    let digest = c.wait_converged().await;
    assert_within_limit(c, max).await;
    let mut statuses = Vec::new();
    for i in c.running() {
        statuses.push((i, c.get_json(i, "/v1/status").await));
    }
    let (first, s0) = &statuses[0];
    for (i, s) in &statuses[1..] {
        for field in [
            "applied_index",
            "keys",
            "ttl_keys",
            "memory_bytes",
            "expired_keys",
            "evicted_keys",
            "out_of_memory_writes",
            "clock_ms",
        ] {
            assert_eq!(
                s[field], s0[field],
                "{field}: node {first} {s0} / node {i} {s}"
            );
        }
    }
    (s0.clone(), digest)
}

/// [`converged_with_digest`]'s status.
async fn converged(c: &TestCluster, max: u64) -> Value {
    converged_with_digest(c, max).await.0
}

/// Which of `keys` a linearizable read through node `via` finds.
async fn present(c: &TestCluster, via: usize, keys: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for k in keys {
        let r = c.req(via, "GET", &format!("/v1/kv/{k}"), "").await;
        match r.status {
            200 => {
                out.insert(k.clone());
            }
            _ => r.assert_error(Code::KeyNotFound),
        }
    }
    out
}

/// The cluster converged under `max` with these (evicted keys, refused
/// writes, keys with a TTL), and every replica holds exactly `want` of
/// `keys`.
async fn assert_settled(
    c: &TestCluster,
    max: u64,
    (evicted, refused, ttl_keys): (u64, u64, u64),
    keys: &[String],
    want: &BTreeSet<String>,
) {
    let s = converged(c, max).await;
    assert_eq!(
        (
            s["evicted_keys"].as_u64(),
            s["out_of_memory_writes"].as_u64(),
            s["ttl_keys"].as_u64()
        ),
        (Some(evicted), Some(refused), Some(ttl_keys)),
        "{s}"
    );
    assert_replicas_hold(c, keys, want).await;
}

/// Every running node's local state (stale reads) holds exactly `want` of
/// `keys`.
async fn assert_replicas_hold(c: &TestCluster, keys: &[String], want: &BTreeSet<String>) {
    for i in c.running() {
        let mut got = BTreeSet::new();
        for k in keys {
            let r = c
                .req(i, "GET", &format!("/v1/kv/{k}?consistency=stale"), "")
                .await;
            match r.status {
                200 => {
                    got.insert(k.clone());
                }
                _ => r.assert_error(Code::KeyNotFound),
            }
        }
        assert_eq!(&got, want, "node {i}'s keys");
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Wait for the wall clock's next whole second: the access clock of LRU
/// and LFU counts whole seconds, so accesses on either side of this are
/// ordered by it.
async fn next_second() {
    let second = now_ms() / 1000;
    wait_for("the clock's next second", WAIT, || async {
        (now_ms() / 1000 > second).then_some(())
    })
    .await
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The two nodes other than `i` in a 3-node cluster.
fn others(i: usize) -> [usize; 2] {
    [(i + 1) % 3, (i + 2) % 3]
}

// --- noeviction ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn noeviction_refuses_what_does_not_fit_and_still_serves_reads_and_deletes() {
    // Five 2-byte keys with 100-byte values fill the budget exactly.
    let max = 5 * cost("k0", 100, false);
    let c = start(3, EvictionPolicy::NoEviction, max, |_| {}).await;
    let leader = c.leader().await;
    let [f, _] = others(leader);
    for i in 0..5 {
        put_ok(&c, i % 3, &format!("k{i}"), 100, "").await;
    }
    let s = converged(&c, max).await;
    assert_eq!(
        (s["memory_bytes"].as_u64(), s["keys"].as_u64()),
        (Some(max), Some(5)),
        "{s}"
    );
    assert_eq!(s["eviction_policy"], "noeviction");

    // A new key: 507 out_of_memory, on the leader and through a follower.
    for via in [leader, f] {
        let r = put(&c, via, "k5", 100, "").await;
        r.assert_error(Code::OutOfMemory);
        assert_eq!(r.json()["error"], full(cost("k5", 100, false), max));
    }
    // The seed route: the seed's body shape, the same code header.
    let body = json!({ "key": "k5", "value": "v".repeat(100) }).to_string();
    let r = c.req(f, "POST", "/store", body).await;
    r.assert_seed_error(507, Code::OutOfMemory);
    assert_eq!(
        r.text(),
        format!("{{\"error\":\"{}\"}}\n", full(cost("k5", 100, false), max))
    );
    // Growing a key: a TTL, by PUT or expire, or a larger value.
    let r = put(&c, f, "k0", 100, "?ttl=1m").await;
    r.assert_error(Code::OutOfMemory);
    assert_eq!(r.json()["error"], full(cost("k0", 100, true), max));
    let r = c.req(leader, "POST", "/v1/kv/k0?expire=1m", "").await;
    r.assert_error(Code::OutOfMemory);
    put(&c, leader, "k0", 101, "")
        .await
        .assert_error(Code::OutOfMemory);
    // A write that does not grow fits.
    let r = c.req(f, "PUT", "/v1/kv/k1", "w".repeat(100)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Reads still work, on every node; nothing was applied by the refusals.
    for i in 0..3 {
        for k in 0..5 {
            let r = c.req(i, "GET", &format!("/v1/kv/k{k}"), "").await;
            assert_eq!((r.status, r.body.len()), (200, 100), "k{k} via node {i}");
            assert_eq!(r.header(dcache::wire::header::EXPIRES_AT), None);
        }
        c.req(i, "GET", "/v1/kv/k5", "")
            .await
            .assert_error(Code::KeyNotFound);
    }
    assert_eq!(c.get(leader, "k1").await, (200, "w".repeat(100)));
    let s = converged(&c, max).await;
    assert_eq!(s["out_of_memory_writes"], 6, "{s}");
    assert_eq!(
        (s["evicted_keys"].as_u64(), s["memory_bytes"].as_u64()),
        (Some(0), Some(max))
    );

    // A delete works, and then the write fits.
    let r = c.req(f, "DELETE", "/v1/kv/k0", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "key": "k0", "deleted": true }));
    put_ok(&c, f, "k5", 100, "").await;
    put(&c, leader, "k6", 100, "")
        .await
        .assert_error(Code::OutOfMemory);
    let s = converged(&c, max).await;
    assert_eq!(
        (
            s["keys"].as_u64(),
            s["memory_bytes"].as_u64(),
            s["out_of_memory_writes"].as_u64()
        ),
        (Some(5), Some(max), Some(7)),
        "{s}"
    );
    c.shutdown_all().await;
}

// --- the policies, on 3 nodes -------------------------------------------

/// LRU and LFU: of k0..k3, the key not read since it was written is the
/// victim (least recently and least frequently used), then, a second
/// later, the key not read in that second. `reads` is how many times each
/// of the others is read.
/// `reads_before` reads of k0..k2, a new key that evicts k3; a second
/// later `reads_after` reads of k0, k1 and the new k4, and another new key
/// must evict k2.
async fn sampled_policy_evicts_the_unread_key(
    policy: EvictionPolicy,
    reads_before: usize,
    reads_after: usize,
) {
    let name = format!("sampled_policy_evicts_the_unread_key-{}", policy.as_str());
    let mut rng = seed::rng(&name);
    let max = 4 * cost("k0", 100, false);
    let c = start(3, policy, max, |_| {}).await;
    let all = keys(&["k0", "k1", "k2", "k3", "k4", "k5"]);
    for i in 0..4 {
        put_ok(&c, i % 3, &format!("k{i}"), 100, "").await;
        assert_within_limit(&c, max).await;
    }
    next_second().await;
    // Linearizable reads (through any node: served and counted by the
    // leader, which decides).
    for _ in 0..reads_before {
        for k in ["k0", "k1", "k2"] {
            assert_eq!(c.get(rng.gen_range(0..3), k).await.0, 200, "{k}");
        }
    }
    put_ok(&c, rng.gen_range(0..3), "k4", 100, "").await;
    assert_within_limit(&c, max).await;
    let want = set(&["k0", "k1", "k2", "k4"]);
    assert_eq!(present(&c, rng.gen_range(0..3), &all).await, want);
    let s = converged(&c, max).await;
    assert_eq!(
        (s["evicted_keys"].as_u64(), s["keys"].as_u64()),
        (Some(1), Some(4)),
        "{s}"
    );
    assert_replicas_hold(&c, &all, &want).await;

    // A second later: k2 is the one not read again.
    next_second().await;
    // One reader per key, at once; each reads through the nodes in turn.
    let first = rng.gen_range(0..3);
    let read = |k: &'static str| {
        let c = &c;
        async move {
            for i in 0..reads_after {
                assert_eq!(c.get((first + i) % 3, k).await.0, 200, "{k}");
            }
        }
    };
    tokio::join!(read("k0"), read("k1"), read("k4"));
    put_ok(&c, rng.gen_range(0..3), "k5", 100, "").await;
    let want = set(&["k0", "k1", "k4", "k5"]);
    assert_eq!(present(&c, rng.gen_range(0..3), &all).await, want);
    let s = converged(&c, max).await;
    assert_eq!(
        (s["evicted_keys"].as_u64(), s["memory_bytes"].as_u64()),
        (Some(2), Some(max)),
        "{s}"
    );
    assert_eq!(s["eviction_policy"], policy.as_str());
    assert_replicas_hold(&c, &all, &want).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allkeys_lru_evicts_the_key_not_read_since_it_was_written() {
    sampled_policy_evicts_the_unread_key(EvictionPolicy::AllkeysLru, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allkeys_lfu_evicts_the_key_never_read() {
    // Redis's logarithmic counter grows with probability 1/(10c+1) per
    // read (c starts at 5), drawn on the node: one read before and 800
    // after leave k2's counter above another key's with probability about
    // 1e-8 (5 and 5 failed about one run in five).
    sampled_policy_evicts_the_unread_key(EvictionPolicy::AllkeysLfu, 1, 800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volatile_ttl_evicts_the_nearest_deadline_and_never_a_key_without_one() {
    // t1 (1 h), t2 (10 min), t3 (30 min) and p1 (no TTL) fill the budget.
    let max = 3 * cost("t1", 100, true) + cost("p1", 100, false);
    let c = start(3, EvictionPolicy::VolatileTtl, max, |_| {}).await;
    let all = keys(&["t1", "t2", "t3", "p1", "n1", "n2", "n3", "n4"]);
    put_ok(&c, 0, "t1", 100, "?ttl=1h").await;
    put_ok(&c, 1, "t2", 100, "?ttl=10m").await;
    put_ok(&c, 2, "t3", 100, "?ttl=30m").await;
    put_ok(&c, 0, "p1", 100, "").await;
    assert_eq!(converged(&c, max).await["memory_bytes"], max);
    // Each new key needs one victim: the nearest deadline goes first.
    let mut want = set(&["t1", "t2", "t3", "p1"]);
    for (i, (new, victim)) in [("n1", "t2"), ("n2", "t3"), ("n3", "t1")]
        .into_iter()
        .enumerate()
    {
        put_ok(&c, i % 3, new, 100, "").await;
        assert_within_limit(&c, max).await;
        want.remove(victim);
        want.insert(new.to_string());
        assert_eq!(present(&c, i % 3, &all).await, want, "after {new}");
    }
    // No key with a TTL is left to evict: the next write is refused.
    let r = put(&c, 1, "n4", 100, "").await;
    r.assert_error(Code::OutOfMemory);
    assert_eq!(r.json()["error"], full(cost("n4", 100, false), max));
    assert_settled(&c, max, (3, 1, 0), &all, &want).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allkeys_random_never_evicts_the_key_being_written() {
    let mut rng = seed::rng("allkeys_random_never_evicts_the_key_being_written");
    let max = 4 * cost("k0", 100, false);
    let c = start(3, EvictionPolicy::AllkeysRandom, max, |_| {}).await;
    let mut written: Vec<String> = Vec::new();
    for i in 0..4 {
        let k = format!("k{i}");
        put_ok(&c, i % 3, &k, 100, "").await;
        written.push(k);
    }
    // Growing an existing key (100 more bytes): one other key goes.
    put_ok(&c, rng.gen_range(0..3), "k0", 200, "").await;
    let now = present(&c, 0, &written).await;
    assert!(now.contains("k0"), "{now:?}");
    assert_eq!(now.len(), 3, "{now:?}");
    assert_eq!(c.get(1, "k0").await, (200, "v".repeat(200)));
    // New keys (some with a TTL): each stays, the others make room; every
    // key that went was counted as evicted.
    for i in 0..8 {
        let k = format!("n{i}");
        let ttl = if rng.gen_bool(0.5) { "?ttl=1h" } else { "" };
        put_ok(&c, rng.gen_range(0..3), &k, 100, ttl).await;
        assert_within_limit(&c, max).await;
        written.push(k.clone());
        let now = present(&c, rng.gen_range(0..3), &written).await;
        assert!(now.contains(&k), "the written key {k} was evicted: {now:?}");
        let s = c.get_json(c.leader().await, "/v1/status").await;
        assert_eq!(
            s["evicted_keys"].as_u64(),
            Some((written.len() - now.len()) as u64),
            "{s} {now:?}"
        );
    }
    let want = present(&c, 0, &written).await;
    let s = converged(&c, max).await;
    assert_eq!(s["keys"].as_u64(), Some(want.len() as u64));
    assert_eq!(s["out_of_memory_writes"], 0);
    assert_replicas_hold(&c, &written, &want).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volatile_lru_never_evicts_a_key_without_a_ttl() {
    let max = 3 * cost("p0", 100, false) + 3 * cost("v0", 100, true);
    let c = start(3, EvictionPolicy::VolatileLru, max, |_| {}).await;
    let mut all = keys(&["p0", "p1", "p2", "v0", "v1", "v2"]);
    for i in 0..3 {
        put_ok(&c, i, &format!("p{i}"), 100, "").await;
        put_ok(&c, i, &format!("v{i}"), 100, "?ttl=1h").await;
    }
    // Three new keys without a TTL: each evicts one of v0..v2.
    for i in 0..3 {
        let k = format!("n{i}");
        put_ok(&c, i, &k, 100, "").await;
        assert_within_limit(&c, max).await;
        all.push(k);
        let now = present(&c, (i + 1) % 3, &all).await;
        let p_and_n: BTreeSet<String> = all
            .iter()
            .filter(|k| !k.starts_with('v'))
            .cloned()
            .collect();
        assert!(
            now.is_superset(&p_and_n),
            "a key without a TTL was evicted: {now:?}"
        );
        assert_eq!(now.len(), 6, "{now:?}");
    }
    // Only keys without a TTL are left: the next write is refused.
    put(&c, 2, "n3", 100, "")
        .await
        .assert_error(Code::OutOfMemory);
    let want = set(&["p0", "p1", "p2", "n0", "n1", "n2"]);
    assert_eq!(present(&c, 0, &all).await, want);
    assert_settled(&c, max, (3, 1, 0), &all, &want).await;
    c.shutdown_all().await;
}

// --- under load, across restarts and snapshots --------------------------

/// `writes` writes of keys `{prefix}{t}-{i}` in 4 concurrent tasks through
/// random nodes of `via`, values of 50 to 150 bytes, a quarter with a TTL;
/// after each, a random node of `via` must report memory within `max`.
/// Every write must be acknowledged. Returns the keys written.
async fn load(
    c: &TestCluster,
    via: &[usize],
    prefix: &str,
    writes: usize,
    max: u64,
) -> Vec<String> {
    const TASKS: usize = 4;
    let urls: Arc<Vec<String>> = Arc::new(via.iter().map(|&i| c.url(i, "")).collect());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let client = c.client.clone();
        let urls = urls.clone();
        let mut rng = seed::rng(&format!("load-{prefix}-{t}"));
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..writes / TASKS {
                let key = format!("{prefix}{t}-{i}");
                let ttl = if rng.gen_bool(0.25) { "?ttl=1h" } else { "" };
                let len = rng.gen_range(50..=150);
                let url = &urls[rng.gen_range(0..urls.len())];
                let r = send(
                    client
                        .put(format!("{url}/v1/kv/{key}{ttl}"))
                        .body("v".repeat(len)),
                )
                .await;
                assert_eq!(r.status, 200, "{key} via {url}: {}", r.text());
                let url = &urls[rng.gen_range(0..urls.len())];
                let s = send(client.get(format!("{url}/v1/status"))).await.json();
                let mem = s["memory_bytes"].as_u64().unwrap();
                assert!(mem <= max, "{url} holds {mem} bytes, over {max}: {s}");
                written.push(key);
            }
            written
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.extend(t.await.expect("writer task"));
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evictions_under_load_converge_across_a_follower_restart() {
    // About 60 keys fit; 600 are written.
    let max = 60 * cost("a0-00", 100, false);
    let mut c = start(3, EvictionPolicy::AllkeysLru, max, |cfg| {
        cfg.raft.snapshot_threshold = 50;
    })
    .await;
    let leader = c.leader().await;
    let [follower, other] = others(leader);
    let mut written = load(&c, &[0, 1, 2], "a", 100, max).await;
    c.stop(follower, false).await;
    written.extend(load(&c, &[leader, other], "b", 400, max).await);
    let mid = c.get_json(leader, "/v1/status").await;
    assert!(
        mid["evicted_keys"].as_u64() > Some(0),
        "evictions while the follower was down: {mid}"
    );
    c.restart(follower).await;
    c.wait_ready(follower).await;
    written.extend(load(&c, &[0, 1, 2], "c", 100, max).await);

    let s = converged(&c, max).await;
    let evicted = s["evicted_keys"].as_u64().unwrap();
    let keys = s["keys"].as_u64().unwrap();
    eprintln!(
        "{} writes, {keys} keys left, {evicted} evicted",
        written.len()
    );
    assert_eq!(
        keys + evicted,
        written.len() as u64,
        "every key written is there or was evicted: {s}"
    );
    assert_eq!(s["out_of_memory_writes"], 0, "{s}");
    let want = present(&c, leader, &written).await;
    assert_eq!(want.len() as u64, keys);
    assert_replicas_hold(&c, &written, &want).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_taken_at_the_limit_restores_the_same_keys() {
    let name = "a_snapshot_taken_at_the_limit_restores_the_same_keys";
    let mut rng = seed::rng(name);
    let max = 40 * cost("s000", 100, false);
    let mut c = start(3, EvictionPolicy::AllkeysRandom, max, |cfg| {
        cfg.raft.snapshot_threshold = 30;
    })
    .await;
    let leader = c.leader().await;
    let mut written = Vec::new();
    for i in 0..200 {
        let k = format!("s{i:03}");
        let ttl = if rng.gen_bool(0.3) { "?ttl=1h" } else { "" };
        put_ok(&c, rng.gen_range(0..3), &k, 100, ttl).await;
        written.push(k);
    }
    let (before, digest) = converged_with_digest(&c, max).await;
    assert!(before["evicted_keys"].as_u64() > Some(100), "{before}");
    let want = present(&c, leader, &written).await;
    assert_eq!(want.len() as u64, before["keys"].as_u64().unwrap());

    // A follower whose log was purged behind a snapshot: restarted, it can
    // only rebuild from that snapshot plus the log after it.
    let f = others(leader)[rng.gen_range(0..2)];
    // Snapshots are taken and the log purged in the background
    // (`raft::compaction`): wait for both.
    let snap = wait_for(
        "the follower to snapshot and purge its log",
        WAIT,
        || async {
            let st = c.get_json(f, "/v1/cluster").await;
            let snap = st["snapshot_index"].as_u64().filter(|s| *s >= 30);
            let purged = st["purged_index"].as_u64().is_some_and(|p| p > 0);
            snap.filter(|_| purged)
        },
    )
    .await;
    c.stop(f, false).await;
    c.restart(f).await;
    c.wait_ready(f).await;
    let st = c.get_json(f, "/v1/cluster").await;
    assert!(
        st["snapshot_index"].as_u64() >= Some(snap),
        "node {f} loaded its snapshot: {st}"
    );
    let (after, again) = converged_with_digest(&c, max).await;
    assert_eq!(
        (&again["keys"], &again["mem_bytes"], &again["digest"]),
        (&digest["keys"], &digest["mem_bytes"], &digest["digest"]),
        "the restarted node rebuilt the same state"
    );
    for field in [
        "keys",
        "ttl_keys",
        "memory_bytes",
        "evicted_keys",
        "out_of_memory_writes",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_replicas_hold(&c, &written, &want).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_value_larger_than_the_whole_budget_is_refused_and_evicts_nothing() {
    let max = 1000;
    let c = start(1, EvictionPolicy::AllkeysLru, max, |_| {}).await;
    for k in ["a", "b", "c"] {
        put_ok(&c, 0, k, 100, "").await;
    }
    let before = c.get_json(0, "/v1/status").await;
    assert_eq!(before["memory_bytes"], 3 * cost("a", 100, false));
    // One byte over the budget on its own: 507 at once, nothing evicted.
    let len = (max - cost("big", 0, false) + 1) as usize;
    let r = put(&c, 0, "big", len, "").await;
    r.assert_error(Code::OutOfMemory);
    assert_eq!(r.json()["error"], full(max + 1, max));
    let body = json!({ "key": "big", "value": "v".repeat(len) }).to_string();
    c.req(0, "POST", "/store", body)
        .await
        .assert_seed_error(507, Code::OutOfMemory);
    let s = c.get_json(0, "/v1/status").await;
    assert_eq!(
        (
            &s["keys"],
            &s["memory_bytes"],
            &s["evicted_keys"],
            &s["out_of_memory_writes"]
        ),
        (
            &before["keys"],
            &before["memory_bytes"],
            &json!(0),
            &json!(2)
        ),
        "{s}"
    );
    for k in ["a", "b", "c"] {
        assert_eq!(c.get(0, k).await.0, 200, "{k}");
    }
    c.req(0, "GET", "/v1/kv/big", "")
        .await
        .assert_error(Code::KeyNotFound);
    c.shutdown_all().await;
}
