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

use std::cell::Cell;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::Resp;
use dcache_testkit::http::send;
use dcache_testkit::seed;
use dcache_testkit::wait_for;
use dcache_testkit::wait_ok;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;
use serde_json::json;

/// README: stale reads lag by replication plus up to `cache.expiry_tick_ms`
/// when no writes flow. The replication part is bounded generously here
/// (a loaded 2-core machine), but bounded.
const REPLICATION: Duration = Duration::from_secs(5);

/// The test's wall clock in ms since the epoch: the clock the in-process
/// nodes stamp their entries with.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A deadline as the API writes it (RFC 3339, milliseconds, UTC, e.g.
/// `2026-12-02T15:29:21.067Z`), in ms since the epoch. Panics on any other
/// format.
fn parse_deadline(s: &str) -> u64 {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("deadline {s:?} is not RFC 3339: {e}"));
    let ms = u64::try_from(t.timestamp_millis()).expect("deadline after 1970");
    let canonical = chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(s, canonical, "deadlines are RFC 3339 with ms, in UTC (Z)");
    ms
}

/// A request to node `i` with the test's clock read just before and just
/// after it: `(before, answer, after)`.
async fn timed(
    c: &TestCluster,
    i: usize,
    method: &str,
    path: &str,
    body: &str,
) -> (u64, Resp, u64) {
    let before = now_ms();
    let r = c.req(i, method, path, body.to_string()).await;
    (before, r, now_ms())
}

/// The `expires_at` of a write's or an expire's JSON answer, checked to be
/// `ttl_ms` after a stamp taken between `before` and `after`: a node stamps
/// with its clock (ours), never below an earlier stamp, and every earlier
/// stamp was taken before `before`.
#[track_caller]
fn deadline_of(r: &Resp, ttl_ms: u64, before: u64, after: u64) -> u64 {
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let at = parse_deadline(
        j["expires_at"]
            .as_str()
            .unwrap_or_else(|| panic!("no deadline in {j}")),
    );
    assert!(
        (before + ttl_ms..=after + ttl_ms).contains(&at),
        "deadline {at} is not {ttl_ms} ms after a stamp in [{before}, {after}]"
    );
    at
}

/// `X-Dcache-Expires-At` of an answer, in ms.
fn expires_header(r: &Resp) -> Option<u64> {
    r.header(header::EXPIRES_AT).map(parse_deadline)
}

/// A read answer for a key with deadline `at`, served between `before` and
/// `after`: `X-Dcache-Expires-At` is the deadline and `X-Dcache-TTL-Ms`
/// what was left at the serving node's stamp.
#[track_caller]
fn assert_ttl_headers(r: &Resp, at: u64, before: u64, after: u64) {
    assert_eq!(expires_header(r), Some(at), "{:?}", r.headers);
    let left: u64 = r
        .header(header::TTL_MS)
        .expect("X-Dcache-TTL-Ms with X-Dcache-Expires-At")
        .parse()
        .expect("TTL-Ms is a number");
    assert!(
        (at.saturating_sub(after)..=at.saturating_sub(before)).contains(&left),
        "TTL-Ms {left} for deadline {at}, read in [{before}, {after}]"
    );
}

/// A read answer for a key without a deadline: no TTL headers.
#[track_caller]
fn assert_no_ttl_headers(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header(header::EXPIRES_AT), None);
    assert_eq!(r.header(header::TTL_MS), None);
}

/// Wait until the test's clock is past `at` (waiting for time to pass a
/// deadline, not for a condition of the system).
async fn wait_past(at: u64) {
    let left = Duration::from_millis(at.saturating_sub(now_ms()));
    wait_for(&format!("the clock to pass {at}"), left + WAIT, || async {
        (now_ms() > at).then_some(())
    })
    .await
}

/// A `/v1/status` field of node `i`.
async fn stat(c: &TestCluster, i: usize, field: &str) -> u64 {
    let s = c.get_json(i, "/v1/status").await;
    s[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {s}"))
}

/// The two nodes other than `i` in a 3-node cluster.
fn others(i: usize) -> [usize; 2] {
    [(i + 1) % 3, (i + 2) % 3]
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deadlines_survive_a_full_restart_and_a_leader_change() {
    let mut c = TestCluster::start(3, |cfg| cfg.raft.snapshot_threshold = 20).await;
    let (t0, w, t1) = timed(&c, 0, "PUT", "/v1/kv/long?ttl=1h", "l").await;
    let at = deadline_of(&w, 3_600_000, t0, t1);
    let (t0, w, t1) = timed(&c, 1, "PUT", "/v1/kv/kept?ttl=2h", "k1").await;
    let kept_at = deadline_of(&w, 7_200_000, t0, t1);
    let w = c.req(2, "PUT", "/v1/kv/kept?keepttl=true", "k2").await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(c.put(0, "none", "n").await.status, 200);
    // Enough writes that the restart goes through a snapshot and the log.
    for i in 0..30 {
        let r = c.put(i % 3, &format!("f{i}"), "x").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let want = [("long", Some(at)), ("kept", Some(kept_at)), ("none", None)];
    let before = c.wait_converged().await;

    for i in [0, 1, 2] {
        c.stop(i, false).await;
    }
    for i in [2, 0, 1] {
        c.restart(i).await;
    }
    let leader = c.leader().await;
    for i in 0..3 {
        c.wait_ready(i).await;
    }
    let after = c.wait_converged().await;
    assert_eq!(
        (&after["keys"], &after["digest"], &after["mem_bytes"]),
        (&before["keys"], &before["digest"], &before["mem_bytes"]),
        "the state after the restart is the state before it"
    );
    // Every node, linearizable and stale: the same deadlines.
    for i in 0..3 {
        deadlines_on(&c, i, &want).await;
    }
    assert_eq!(stat(&c, leader, "ttl_keys").await, 2);

    // A leader change: the same deadlines, and the new leader's TTL
    // commands use them.
    let to = others(leader)[0];
    c.transfer_leader(leader, to).await;
    assert_eq!(c.leader().await, to);
    for i in 0..3 {
        deadlines_on(&c, i, &want).await;
    }
    let w = c.req(to, "PUT", "/v1/kv/long?keepttl=true", "l2").await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(parse_deadline(w.json()["expires_at"].as_str().unwrap()), at);
    c.shutdown_all().await;
}

/// On node `i`, linearizable and stale reads of each key show its deadline
/// (`None`: no TTL headers).
async fn deadlines_on(c: &TestCluster, i: usize, want: &[(&str, Option<u64>)]) {
    for (key, at) in want {
        for q in ["", "?consistency=stale"] {
            let r = c.req(i, "GET", &format!("/v1/kv/{key}{q}"), "").await;
            assert_eq!(r.status, 200, "node {i} {key}{q}: {}", r.text());
            assert_eq!(expires_header(&r), *at, "node {i} {key}{q}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_catches_up_by_snapshot_has_the_same_deadlines() {
    let mut c = TestCluster::start(3, |cfg| {
        cfg.raft.snapshot_threshold = 100;
        cfg.cache.expiry_tick_ms = 50;
    })
    .await;
    let leader = c.leader().await;
    let follower = others(leader)[0];
    let (t0, w, t1) = timed(&c, leader, "PUT", "/v1/kv/early?ttl=1h", "e").await;
    let early = deadline_of(&w, 3_600_000, t0, t1);
    c.wait_converged().await;
    c.stop(follower, false).await;

    // While it is down: a key that expires, and 1,200 writes, every third
    // with a TTL, concurrently over a few connections.
    let (t0, w, t1) = timed(&c, leader, "PUT", "/v1/kv/brief?ttl=500ms", "b").await;
    let brief = deadline_of(&w, 500, t0, t1);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let client = c.client.clone();
        let base = c.url(leader, "/v1/kv/");
        tasks.push(tokio::spawn(async move {
            let mut deadlines = Vec::new();
            for i in 0..150 {
                let key = format!("s{t}-{i}");
                let ttl = if i % 3 == 0 { "?ttl=1h" } else { "" };
                let r = send(
                    client
                        .put(format!("{base}{key}{ttl}"))
                        .body(format!("{t}-{i}")),
                )
                .await;
                assert_eq!(r.status, 200, "{key}: {}", r.text());
                let at = r.json()["expires_at"].as_str().map(parse_deadline);
                assert_eq!(at.is_some(), !ttl.is_empty(), "{key}");
                deadlines.push((key, at));
            }
            deadlines
        }));
    }
    let mut deadlines = vec![("early".to_string(), Some(early))];
    for t in tasks {
        deadlines.extend(t.await.expect("writer task"));
    }
    wait_past(brief).await;
    wait_for("the leader to remove brief", WAIT, || async {
        (stat(&c, leader, "expired_keys").await == 1).then_some(())
    })
    .await;
    let purged = c.get_json(leader, "/v1/cluster").await["purged_index"].as_u64();
    assert!(
        purged.is_some_and(|p| p > 100),
        "leader purged its log: {purged:?}"
    );

    c.restart(follower).await;
    c.wait_ready(follower).await;
    let d = c.wait_converged().await;
    assert_eq!(d["keys"], 1201, "{d}");
    let snap = c.get_json(follower, "/v1/cluster").await["snapshot_index"].as_u64();
    assert!(
        snap.is_some_and(|s| s > 100),
        "follower installed a snapshot: {snap:?}"
    );
    // The follower's stale reads show exactly the deadlines the writes
    // answered; the key that expired meanwhile is not there.
    for (key, at) in &deadlines {
        let r = c
            .req(
                follower,
                "GET",
                &format!("/v1/kv/{key}?consistency=stale"),
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        assert_eq!(expires_header(&r), *at, "{key}");
    }
    c.req(follower, "GET", "/v1/kv/brief?consistency=stale", "")
        .await
        .assert_error(Code::KeyNotFound);
    assert_eq!(stat(&c, follower, "expired_keys").await, 1);
    assert_eq!(stat(&c, follower, "ttl_keys").await, 401);
    c.shutdown_all().await;
}

/// `cache.expiry_tick_ms` 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_whose_deadline_passed_during_a_full_stop_are_gone_at_start() {
    const TICK: u64 = 50;
    let name = "keys_whose_deadline_passed_during_a_full_stop_are_gone_at_start";
    let mut rng = seed::rng(name);
    let mut c = TestCluster::start(3, |cfg| cfg.cache.expiry_tick_ms = TICK).await;
    let mut last_short = 0;
    for i in 0..5 {
        let (t0, w, t1) = timed(&c, i % 3, "PUT", &format!("/v1/kv/short{i}?ttl=2s"), "s").await;
        last_short = last_short.max(deadline_of(&w, 2_000, t0, t1));
    }
    for i in 0..3 {
        let w = c
            .req(i, "PUT", &format!("/v1/kv/long{i}?ttl=1h"), "l")
            .await;
        assert_eq!(w.status, 200, "{}", w.text());
    }
    for i in 0..2 {
        assert_eq!(c.put(i, &format!("plain{i}"), "p").await.status, 200);
    }
    let d = c.wait_converged().await;
    assert!(
        now_ms() < last_short,
        "too slow: the short keys expired before the stop"
    );
    assert_eq!(d["keys"], 10, "{d}");
    for i in 0..3 {
        c.stop(i, false).await;
    }
    // Down for longer than the short keys' TTL.
    wait_past(last_short).await;
    for i in [2, 1, 0] {
        c.restart(i).await;
    }
    c.leader().await;
    for i in 0..3 {
        c.wait_ready(i).await;
    }
    let ready = now_ms();
    // At once: linearizable reads miss the short keys, keep the others.
    for i in 0..5 {
        let node = rng.gen_range(0..3);
        c.req(node, "GET", &format!("/v1/kv/short{i}"), "")
            .await
            .assert_error(Code::KeyNotFound);
    }
    for key in ["long0", "long1", "long2", "plain0", "plain1"] {
        let node = rng.gen_range(0..3);
        let (s, _) = c.get(node, key).await;
        assert_eq!(s, 200, "{key} via node {node}");
    }
    // And they are removed from every replica within a tick plus
    // replication.
    for i in 0..3 {
        let left = Duration::from_millis(TICK) + REPLICATION;
        let what = format!("node {i} to hold only the 5 live keys");
        wait_ok(&what, left, || async {
            let s = c.get_json(i, "/v1/status").await;
            let got = (&s["keys"], &s["ttl_keys"], &s["expired_keys"]);
            if got == (&json!(5), &json!(3), &json!(5)) {
                Ok(())
            } else {
                Err(s.to_string())
            }
        })
        .await;
    }
    eprintln!(
        "expired keys removed everywhere {} ms after the cluster was ready",
        now_ms() - ready
    );
    c.wait_converged().await;
    c.shutdown_all().await;
}

// --- active expiry ------------------------------------------------------

/// The leader's last log index, from `/metrics`.
async fn last_log_index(c: &TestCluster, i: usize) -> u64 {
    let r = c.req(i, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix("dcache_raft_last_log_index "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dcache_raft_last_log_index in:\n{text}"))
}

/// `cache.expiry_batch` 100: 1,000 keys with one TTL go in at least 10
/// expiry entries, and a writer of another key, running from before the
/// first write to after the last removal, has every write acknowledged.
/// `cache.expiry_tick_ms` is 2 s here, longer than usual, so that a tick
/// finds hundreds of keys due at once: without batching they would go in
/// a few entries (one per tick), with it in at least 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mass_expiry_is_batched_while_other_writes_go_on() {
    const KEYS: usize = 1000;
    const BATCH: u32 = 100;
    const TASKS: usize = 8;
    let name = "a_mass_expiry_is_batched_while_other_writes_go_on";
    let c = TestCluster::start(3, |cfg| {
        cfg.cache.expiry_tick_ms = 2_000;
        cfg.cache.expiry_batch = BATCH;
    })
    .await;
    let leader = c.leader().await;
    let log_before = last_log_index(&c, leader).await;

    // The other writer: one key, values 0, 1, 2, ... through random nodes.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let urls: Vec<String> = (0..3).map(|i| c.url(i, "/v1/kv/other")).collect();
        let client = c.client.clone();
        let stop = stop.clone();
        let mut rng = seed::rng(name);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let url = &urls[rng.gen_range(0..urls.len())];
                let r = send(client.put(url).body(i.to_string())).await;
                assert_eq!(r.status, 200, "write {i} of other: {}", r.text());
                acked.push((i, now_ms()));
            }
            acked
        })
    };
    wait_for("the other writer's first write", WAIT, || async {
        (c.get(leader, "other").await.0 == 200).then_some(())
    })
    .await;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let client = c.client.clone();
        let base = c.url(leader, "/v1/kv/");
        tasks.push(tokio::spawn(async move {
            let mut deadlines = Vec::new();
            for i in (t..KEYS).step_by(TASKS) {
                let r = send(client.put(format!("{base}m{i}?ttl=3s")).body("x")).await;
                assert_eq!(r.status, 200, "m{i}: {}", r.text());
                deadlines.push(parse_deadline(r.json()["expires_at"].as_str().unwrap()));
            }
            deadlines
        }));
    }
    let mut deadlines = Vec::new();
    for t in tasks {
        deadlines.extend(t.await.expect("writer task"));
    }
    let first = *deadlines.iter().min().unwrap();
    let last = *deadlines.iter().max().unwrap();
    eprintln!("{KEYS} keys written; deadlines span {} ms", last - first);

    let gone = wait_ok("every node to remove the 1,000 keys", WAIT, || async {
        for i in 0..3 {
            let s = c.get_json(i, "/v1/status").await;
            let got = (&s["keys"], &s["ttl_keys"], &s["expired_keys"]);
            if got != (&json!(1), &json!(0), &json!(KEYS)) {
                return Err(format!("node {i}: {s}"));
            }
        }
        Ok(now_ms())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("other writer");
    let during = acked
        .iter()
        .filter(|(_, t)| (first..=gone).contains(t))
        .count();
    eprintln!(
        "other writer: {} writes acknowledged, {during} between the first deadline and the last removal",
        acked.len()
    );
    assert!(during > 0, "no write overlapped the expiry");

    let d = c.wait_converged().await;
    assert_eq!(d["keys"], 1, "{d}");
    let (last_value, _) = acked.last().expect("some writes");
    assert_eq!(c.get(leader, "other").await, (200, last_value.to_string()));
    let leader = c.leader().await;
    let entries = last_log_index(&c, leader).await - log_before;
    let writes = (KEYS + acked.len()) as u64;
    eprintln!("log grew by {entries} entries for {writes} writes");
    assert!(
        entries >= writes + (KEYS as u64).div_ceil(u64::from(BATCH)),
        "{entries} entries for {writes} writes: expiry was not batched by {BATCH}"
    );
    c.shutdown_all().await;
}

/// `expire_at` sets an absolute deadline, in ms since the epoch or RFC 3339,
/// on PUT and POST; the answer and the headers carry exactly that deadline;
/// one already passed expires the key at once (Redis `PXAT` in the past).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expire_at_sets_an_absolute_deadline() {
    let c = TestCluster::start(1, |_| {}).await;
    let at = now_ms() + 60_000;
    let r = c
        .req(0, "PUT", &format!("/v1/kv/a?expire_at={at}"), "v")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(parse_deadline(r.json()["expires_at"].as_str().unwrap()), at);
    let (before, g, after) = timed(&c, 0, "GET", "/v1/kv/a", "").await;
    assert_ttl_headers(&g, at, before, after);

    let at2 = at + 1_250;
    let rfc = chrono::DateTime::from_timestamp_millis(at2 as i64)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = c
        .req(0, "POST", &format!("/v1/kv/a?expire_at={rfc}"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        parse_deadline(r.json()["expires_at"].as_str().unwrap()),
        at2
    );
    let r = c
        .req(0, "POST", &format!("/v1/kv/absent?expire_at={at2}"), "")
        .await;
    r.assert_error(Code::KeyNotFound);

    // A deadline already passed: the key is gone at once.
    let past = now_ms() - 1_000;
    let r = c
        .req(0, "PUT", &format!("/v1/kv/old?expire_at={past}"), "v")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.req(0, "GET", "/v1/kv/old", "")
        .await
        .assert_error(Code::KeyNotFound);
    // More than ten years ahead, or not a time: 400 naming the value.
    for bad in ["99999999999999999", "tomorrow", "0"] {
        let r = c
            .req(0, "PUT", &format!("/v1/kv/b?expire_at={bad}"), "v")
            .await;
        r.assert_error(Code::InvalidInput);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            msg.starts_with(&format!("invalid expire_at {bad:?}: ")),
            "{msg}"
        );
    }
    c.shutdown_all().await;
}
