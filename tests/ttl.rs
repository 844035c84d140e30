//! Time to live, end to end on real in-process nodes (README: "Time to
//! live (TTL)"; docs/ARCHITECTURE.md: "The replicated clock, TTL and
//! eviction"): the API (`?ttl=`, `keepttl`, `expire`, `persist`, the
//! deadline headers, the seed route's `"ttl"`, every bad input), and each
//! promise a client may rely on: linearizable reads never return a key
//! past its deadline and never bring it back, stale reads stop returning
//! it within a tick plus replication, deadlines survive restart, snapshot
//! install and leader change, a full stop longer than a TTL loses the key,
//! and a mass expiry is batched while other writes go on.
//!
//! The nodes run in this process, so they stamp entries with the test's
//! own wall clock: a deadline the server answers can be checked exactly
//! against the times the test took before and after the request, and
//! "the deadline has passed" is a condition the test can wait for.
//! Unit tests of the cache's TTL semantics: src/kv/cache/tests.rs.

#[path = "ttl/support.rs"]
mod support;

use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::seed;
use dcache_testkit::wait_for;
use dcache_testkit::wait_ok;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;
use serde_json::json;
use std::cell::Cell;
use std::cell::RefCell;
use std::time::Duration;
use support::*;
// --- the API ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_with_a_ttl_answers_the_deadline_and_reads_show_it() {
    let c = TestCluster::start(1, |_| {}).await;
    // humantime durations and integer seconds.
    for (ttl, ms) in [
        ("30s", 30_000),
        ("90", 90_000),
        ("10m", 600_000),
        ("1h", 3_600_000),
        ("2h%2030m", 9_000_000),
        ("90000ms", 90_000),
    ] {
        let (t0, w, t1) = timed(&c, 0, "PUT", &format!("/v1/kv/s?ttl={ttl}"), "abc").await;
        let at = deadline_of(&w, ms, t0, t1);
        let j = w.json();
        let index = j["modify_index"].as_u64().unwrap();
        assert_eq!(
            j,
            json!({
                "key": "s",
                "create_index": j["create_index"],
                "modify_index": index,
                "version": j["version"],
                "expires_at": j["expires_at"],
            }),
            "ttl={ttl}: nothing else in the answer"
        );
        let (t0, r, t1) = timed(&c, 0, "GET", "/v1/kv/s", "").await;
        assert_eq!((r.status, r.text()), (200, "abc".to_string()), "ttl={ttl}");
        assert_eq!(r.header(header::INDEX), Some(index.to_string().as_str()));
        assert_ttl_headers(&r, at, t0, t1);
        let (t0, r, t1) = timed(&c, 0, "HEAD", "/v1/kv/s", "").await;
        assert_eq!(r.status, 200, "ttl={ttl}");
        assert!(r.body.is_empty(), "HEAD has no body");
        assert_ttl_headers(&r, at, t0, t1);
        // The seed read of the same key answers the seed's body (no TTL in
        // it: the seed had none).
        let r = c.req(0, "GET", "/store/s", "").await;
        assert_eq!(r.text(), "{\"key\":\"s\",\"value\":\"abc\"}\n");
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keepttl_keeps_the_deadline_and_a_plain_put_clears_it() {
    let c = TestCluster::start(1, |_| {}).await;
    let (t0, w, t1) = timed(&c, 0, "PUT", "/v1/kv/k?ttl=1h", "one").await;
    let at = deadline_of(&w, 3_600_000, t0, t1);

    // keepttl: a new value, the same deadline.
    let w = c.req(0, "PUT", "/v1/kv/k?keepttl=true", "two").await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(parse_deadline(w.json()["expires_at"].as_str().unwrap()), at);
    assert_eq!(w.json()["version"], 2);
    let (t0, r, t1) = timed(&c, 0, "GET", "/v1/kv/k", "").await;
    assert_eq!(r.text(), "two");
    assert_ttl_headers(&r, at, t0, t1);

    // A PUT without ttl clears it (Redis SET).
    let w = c.req(0, "PUT", "/v1/kv/k", "three").await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.json()["expires_at"], Value::Null);
    let r = c.req(0, "GET", "/v1/kv/k", "").await;
    assert_eq!(r.text(), "three");
    assert_no_ttl_headers(&r);

    // keepttl on a key without a deadline, and on an absent key: none.
    let w = c.req(0, "PUT", "/v1/kv/k?keepttl=true", "four").await;
    assert_eq!(w.json()["expires_at"], Value::Null, "{}", w.text());
    let w = c.req(0, "PUT", "/v1/kv/new?keepttl", "x").await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.json()["expires_at"], Value::Null);
    assert_eq!(w.json()["version"], 1);
    assert_no_ttl_headers(&c.req(0, "GET", "/v1/kv/new", "").await);
    let st = c.get_json(0, "/v1/status").await;
    assert_eq!(
        (st["keys"].as_u64(), st["ttl_keys"].as_u64()),
        (Some(2), Some(0)),
        "{st}"
    );
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expire_and_persist_change_only_the_deadline_of_an_existing_key() {
    let c = TestCluster::start(1, |_| {}).await;
    let w = c.req(0, "PUT", "/v1/kv/e", "v").await;
    assert_eq!(w.status, 200, "{}", w.text());
    let index = w.json()["modify_index"].as_u64().unwrap();

    // expire on an existing key: 200, the new deadline; value and indexes
    // unchanged.
    let (t0, r, t1) = timed(&c, 0, "POST", "/v1/kv/e?expire=10m", "").await;
    let at = deadline_of(&r, 600_000, t0, t1);
    assert_eq!(
        r.json(),
        json!({ "key": "e", "expires_at": r.json()["expires_at"] })
    );
    let (t0, g, t1) = timed(&c, 0, "GET", "/v1/kv/e", "").await;
    assert_eq!(g.text(), "v");
    assert_eq!(g.header(header::INDEX), Some(index.to_string().as_str()));
    assert_eq!(g.header(header::VERSION), Some("1"));
    assert_ttl_headers(&g, at, t0, t1);

    // Refreshing it (integer seconds): a later deadline.
    let (t0, r, t1) = timed(&c, 0, "POST", "/v1/kv/e?expire=1200", "").await;
    let later = deadline_of(&r, 1_200_000, t0, t1);
    assert!(later > at);

    // persist: no deadline any more.
    let r = c.req(0, "POST", "/v1/kv/e?persist=true", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "key": "e", "expires_at": null }));
    let g = c.req(0, "GET", "/v1/kv/e", "").await;
    assert_no_ttl_headers(&g);
    assert_eq!(g.header(header::INDEX), Some(index.to_string().as_str()));

    // On an absent key: 404 key_not_found, and nothing is created.
    for q in ["expire=10m", "persist=true"] {
        let r = c.req(0, "POST", &format!("/v1/kv/absent?{q}"), "").await;
        r.assert_error(Code::KeyNotFound);
    }
    c.req(0, "GET", "/v1/kv/absent", "")
        .await
        .assert_error(Code::KeyNotFound);
    assert_eq!(stat(&c, 0, "keys").await, 1);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_ttls_and_conflicting_parameters_are_400_and_change_nothing() {
    let c = TestCluster::start(1, |_| {}).await;
    let w = c.req(0, "PUT", "/v1/kv/b", "kept").await;
    assert_eq!(w.status, 200, "{}", w.text());
    let index = w.json()["modify_index"].as_u64().unwrap();

    // 0 and 11 years are out of range; the rest do not parse. The message
    // names the value.
    for bad in ["0", "11y", "abc", "-1", "1.5"] {
        for (method, q) in [("PUT", "ttl"), ("POST", "expire")] {
            let r = c
                .req(0, method, &format!("/v1/kv/b?{q}={bad}"), "new")
                .await;
            r.assert_error(Code::InvalidInput);
            let msg = r.json()["error"].as_str().unwrap().to_string();
            assert!(
                msg.starts_with(&format!("invalid {q} {bad:?}: ")),
                "{method} {q}={bad}: {msg}"
            );
        }
    }
    // Parameters that exclude each other.
    for (method, path) in [
        ("PUT", "/v1/kv/b?ttl=1m&keepttl=true"),
        ("PUT", "/v1/kv/b?ttl=1m&expire_at=1798761599000"),
        ("POST", "/v1/kv/b?expire=1m&expire_at=1798761599000"),
        ("PUT", "/v1/kv/b?expire=1m"),
        ("PUT", "/v1/kv/b?persist=true"),
        ("POST", "/v1/kv/b?expire=1m&persist=true"),
        ("POST", "/v1/kv/b"),
        ("PUT", "/v1/kv/b?keepttl=maybe"),
    ] {
        let r = c.req(0, method, path, "new").await;
        r.assert_error(Code::InvalidInput);
    }
    let r = c.req(0, "PUT", "/v1/kv/b?ttl=1m&keepttl=true", "new").await;
    assert_eq!(
        r.json()["error"],
        "ttl, expire_at and keepttl=true exclude each other"
    );
    let r = c.req(0, "PUT", "/v1/kv/b?expire=1m", "new").await;
    assert_eq!(
        r.json()["error"],
        "expire and persist go with POST /v1/kv/{key}; PUT takes ttl, expire_at or keepttl"
    );
    // Nothing was applied.
    let g = c.req(0, "GET", "/v1/kv/b", "").await;
    assert_eq!(g.text(), "kept");
    assert_eq!(g.header(header::INDEX), Some(index.to_string().as_str()));
    assert_no_ttl_headers(&g);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cas_composes_with_ttl() {
    let c = TestCluster::start(1, |_| {}).await;
    // cas=0 (create only) with a TTL.
    let (t0, w, t1) = timed(&c, 0, "PUT", "/v1/kv/lock?cas=0&ttl=30s", "me").await;
    deadline_of(&w, 30_000, t0, t1);
    let n = w.json()["modify_index"].as_u64().unwrap();
    // cas=N with a new TTL: applied, new deadline.
    let (t0, w, t1) = timed(&c, 0, "PUT", &format!("/v1/kv/lock?cas={n}&ttl=1m"), "you").await;
    let at = deadline_of(&w, 60_000, t0, t1);
    let m = w.json()["modify_index"].as_u64().unwrap();
    // The old index again: 412 with the current index; deadline unchanged.
    let r = c
        .req(0, "PUT", &format!("/v1/kv/lock?cas={n}&ttl=5m"), "late")
        .await;
    r.assert_error(Code::CasMismatch);
    assert_eq!(r.json()["current_index"], m);
    // cas with keepttl keeps the deadline.
    let w = c
        .req(0, "PUT", &format!("/v1/kv/lock?cas={m}&keepttl=true"), "us")
        .await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(parse_deadline(w.json()["expires_at"].as_str().unwrap()), at);
    let (t0, g, t1) = timed(&c, 0, "GET", "/v1/kv/lock", "").await;
    assert_eq!(g.text(), "us");
    assert_ttl_headers(&g, at, t0, t1);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seed_store_route_takes_a_ttl_in_seconds_or_as_a_duration() {
    let c = TestCluster::start(1, |_| {}).await;
    for (key, ttl, ms) in [("s30", json!(30), 30_000), ("s2", json!("2s"), 2_000)] {
        let body = json!({ "key": key, "value": "v", "ttl": ttl }).to_string();
        let (t0, w, t1) = timed(&c, 0, "POST", "/store", &body).await;
        assert_eq!(w.status, 201, "{}", w.text());
        assert_eq!(
            w.text(),
            format!("{{\"key\":\"{key}\",\"message\":\"value set successfully\"}}\n")
        );
        let (r0, r, r1) = timed(&c, 0, "GET", &format!("/v1/kv/{key}"), "").await;
        let at = expires_header(&r).expect("a deadline");
        assert!((t0 + ms..=t1 + ms).contains(&at), "{key}: {at}");
        assert_ttl_headers(&r, at, r0, r1);
    }
    // Bad TTLs: the seed's 400 body shape, the code in the header, the
    // value named; nothing written.
    for (ttl, named) in [
        (json!(0), "\"0\""),
        (json!(-1), "-1"),
        (json!(1.5), "1.5"),
        (json!("abc"), "\"abc\""),
        (json!("11y"), "\"11y\""),
        (json!(true), "true"),
    ] {
        let body = json!({ "key": "bad", "value": "v", "ttl": ttl }).to_string();
        let r = c.req(0, "POST", "/store", body).await;
        r.assert_seed_error(400, Code::InvalidInput);
        let j = r.json();
        assert!(j.get("code").is_none(), "seed bodies carry no code: {j}");
        let msg = j["error"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("invalid ttl {named}: ")),
            "ttl {ttl}: {msg}"
        );
    }
    c.req(0, "GET", "/v1/kv/bad", "")
        .await
        .assert_error(Code::KeyNotFound);
    // A `"ttl": null` is no TTL.
    let body = json!({ "key": "plain", "value": "v", "ttl": null }).to_string();
    assert_eq!(c.req(0, "POST", "/store", body).await.status, 201);
    assert_no_ttl_headers(&c.req(0, "GET", "/v1/kv/plain", "").await);
    c.shutdown_all().await;
}

/// `cache.expiry_tick_ms` 50: active expiry runs often; the reads below
/// would hide the key without it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_key_is_absent_for_every_read_and_command() {
    let c = TestCluster::start(1, |cfg| cfg.cache.expiry_tick_ms = 50).await;
    let (t0, w, t1) = timed(&c, 0, "PUT", "/v1/kv/gone?ttl=300ms", "v").await;
    let at = deadline_of(&w, 300, t0, t1);
    let body = json!({ "key": "seed-gone", "value": "v", "ttl": "300ms" }).to_string();
    let w = c.req(0, "POST", "/store", body).await;
    assert_eq!(w.status, 201, "{}", w.text());
    // The seed answer has no deadline; it is at most 300 ms after now.
    wait_past(at.max(now_ms() + 300)).await;

    for key in ["gone", "seed-gone"] {
        c.req(0, "GET", &format!("/v1/kv/{key}"), "")
            .await
            .assert_error(Code::KeyNotFound);
        let r = c.req(0, "HEAD", &format!("/v1/kv/{key}"), "").await;
        assert_eq!((r.status, r.code()), (404, Some(Code::KeyNotFound)));
        let r = c.req(0, "GET", &format!("/store/{key}"), "").await;
        r.assert_seed_error(404, Code::KeyNotFound);
        assert_eq!(r.text(), "{\"error\":\"key not found\"}\n");
        let r = c
            .req(0, "GET", &format!("/v1/kv/{key}?consistency=stale"), "")
            .await;
        r.assert_error(Code::KeyNotFound);
        c.req(0, "POST", &format!("/v1/kv/{key}?expire=1h"), "")
            .await
            .assert_error(Code::KeyNotFound);
    }
    // A CAS sees index 0, and the write creates the key anew.
    let w = c.req(0, "PUT", "/v1/kv/gone?cas=0", "again").await;
    assert_eq!(w.status, 200, "{}", w.text());
    let j = w.json();
    assert_eq!(
        (j["version"].as_u64(), j["expires_at"].clone()),
        (Some(1), Value::Null)
    );
    assert_eq!(j["create_index"], j["modify_index"]);
    c.shutdown_all().await;
}

// --- linearizable reads -------------------------------------------------

/// Poll linearizable reads of `key` (holding `value` until deadline `at`)
/// on random nodes until one that started after the deadline has answered.
/// Every answer is checked against the times the read started and ended:
/// a read that returns the key started before the deadline (the serving
/// leader's stamp is at least the start time), a read that misses it ended
/// at or after the deadline, and once one read missed it, no later read
/// returns it.
async fn reads_hide_the_key_from_its_deadline(
    c: &TestCluster,
    rng: &RefCell<StdRng>,
    key: &str,
    value: &str,
    at: u64,
) {
    let path = format!("/v1/kv/{key}");
    let seen_absent = Cell::new(false);
    let present = Cell::new(0u32);
    let (path, seen_absent, present) = (&path, &seen_absent, &present);
    let what = format!("a linearizable read of {key} started after its deadline {at}");
    let first_after = wait_for(&what, WAIT, || {
        let node = rng.borrow_mut().gen_range(0..c.nodes.len());
        async move {
            let (start, r, end) = timed(c, node, "GET", path, "").await;
            if r.status == 200 {
                assert!(
                    !seen_absent.get(),
                    "node {node}: {key} returned again after a read saw it expired"
                );
                assert!(
                    start < at,
                    "node {node}: a read that started at {start}, at or after the deadline {at}, returned {key}"
                );
                assert_eq!(r.text(), value);
                assert_ttl_headers(&r, at, start, end);
                present.set(present.get() + 1);
                return None;
            }
            r.assert_error(Code::KeyNotFound);
            assert!(
                end >= at,
                "node {node}: a read that ended at {end}, before the deadline {at}, missed {key}"
            );
            seen_absent.set(true);
            (start > at).then_some(start)
        }
    })
    .await;
    eprintln!(
        "{key}: {} reads returned it before its deadline; the first read that started after it (by {} ms) was 404",
        present.get(),
        first_after - at
    );
    assert!(present.get() > 0, "no read saw {key} before its deadline");
}

/// `cache.expiry_tick_ms` 60 s: no active expiry during the test, so it is
/// the reads themselves that hide the key at its deadline (the leader
/// proposes the expiry entry before answering).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_linearizable_read_never_returns_a_key_past_its_deadline() {
    let name = "a_linearizable_read_never_returns_a_key_past_its_deadline";
    let c = TestCluster::start(3, |cfg| cfg.cache.expiry_tick_ms = 60_000).await;
    let rng = RefCell::new(seed::rng(name));
    let writer = rng.borrow_mut().gen_range(0..3);
    let (t0, w, t1) = timed(&c, writer, "PUT", "/v1/kv/lin?ttl=2s", "one").await;
    let at = deadline_of(&w, 2_000, t0, t1);
    reads_hide_the_key_from_its_deadline(&c, &rng, "lin", "one", at).await;

    // Once seen expired, it stays absent, on every node.
    for i in 0..3 {
        c.req(i, "GET", "/v1/kv/lin", "")
            .await
            .assert_error(Code::KeyNotFound);
    }
    // The read's own expiry entry removed it (active expiry is 60 s away).
    let leader = c.leader().await;
    let st = c.get_json(leader, "/v1/status").await;
    assert_eq!(
        (st["keys"].as_u64(), st["expired_keys"].as_u64()),
        (Some(0), Some(1)),
        "{st}"
    );

    // After a leader change: still absent everywhere, for linearizable and
    // (once the expiry entry is applied there) stale reads.
    let to = others(leader)[rng.borrow_mut().gen_range(0..2)];
    c.transfer_leader(leader, to).await;
    assert_eq!(c.leader().await, to);
    for i in 0..3 {
        c.req(i, "GET", "/v1/kv/lin", "")
            .await
            .assert_error(Code::KeyNotFound);
        wait_ok(
            &format!("node {i}'s stale read of lin to be 404"),
            WAIT,
            || async {
                let r = c.req(i, "GET", "/v1/kv/lin?consistency=stale", "").await;
                (r.status == 404).then_some(()).ok_or(r.status)
            },
        )
        .await;
    }

    // The same promise on a key written under the old leader and expiring
    // under the new one.
    let (t0, w, t1) = timed(&c, writer, "PUT", "/v1/kv/lin2?ttl=2s", "two").await;
    let at = deadline_of(&w, 2_000, t0, t1);
    let back = others(to)[rng.borrow_mut().gen_range(0..2)];
    c.transfer_leader(to, back).await;
    assert_eq!(c.leader().await, back);
    reads_hide_the_key_from_its_deadline(&c, &rng, "lin2", "two", at).await;
    for i in 0..3 {
        c.req(i, "GET", "/v1/kv/lin2", "")
            .await
            .assert_error(Code::KeyNotFound);
    }
    c.shutdown_all().await;
}

// --- stale reads --------------------------------------------------------

/// `cache.expiry_tick_ms` 50: README bounds how long a stale read may
/// still show an expired key by the tick plus replication.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_reads_stop_returning_a_key_within_a_tick_plus_replication() {
    const TICK: u64 = 50;
    let c = TestCluster::start(3, |cfg| cfg.cache.expiry_tick_ms = TICK).await;
    let leader = c.leader().await;
    let (t0, w, t1) = timed(&c, leader, "PUT", "/v1/kv/st?ttl=3s", "v").await;
    let at = deadline_of(&w, 3_000, t0, t1);
    // Before the deadline every replica shows it, with the deadline.
    for i in 0..3 {
        let r = wait_ok(&format!("node {i} to have st"), WAIT, || async {
            let r = c.req(i, "GET", "/v1/kv/st?consistency=stale", "").await;
            if r.status == 200 {
                Ok(r)
            } else {
                Err(r.status)
            }
        })
        .await;
        assert_eq!(expires_header(&r), Some(at), "node {i}");
    }
    wait_past(at).await;
    let bound = at + TICK + REPLICATION.as_millis() as u64;
    for i in 0..3 {
        let left = Duration::from_millis(bound.saturating_sub(now_ms()));
        let what = format!(
            "node {i}'s stale read of st to be 404 by {TICK} ms + {REPLICATION:?} after the deadline"
        );
        wait_ok(&what, left, || async {
            let r = c.req(i, "GET", "/v1/kv/st?consistency=stale", "").await;
            match r.status {
                404 => {
                    r.assert_error(Code::KeyNotFound);
                    Ok(())
                }
                s => Err(format!(
                    "{s}, expires at {:?}",
                    r.header(header::EXPIRES_AT)
                )),
            }
        })
        .await;
        eprintln!(
            "node {i}: stale reads miss st {} ms after its deadline",
            now_ms() - at
        );
    }
    // Converged: the same replicated expiry count, no key left, equal
    // digests.
    let d = c.wait_converged().await;
    assert_eq!(d["keys"], 0, "{d}");
    let expired = stat(&c, leader, "expired_keys").await;
    assert_eq!(expired, 1);
    for i in others(leader) {
        assert_eq!(stat(&c, i, "expired_keys").await, expired, "node {i}");
        assert_eq!(stat(&c, i, "ttl_keys").await, 0, "node {i}");
    }
    c.shutdown_all().await;
}

// --- durability of deadlines --------------------------------------------
