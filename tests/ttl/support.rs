//! Helpers shared by the TTL tests (tests/ttl.rs, tests/ttl_recovery.rs):
//! the test's wall clock (the one the in-process nodes stamp entries
//! with), deadline parsing and the checks of the deadline headers.
#![allow(dead_code)] // each test file uses a part of them

use dcache::wire::header;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::Resp;
use dcache_testkit::wait_for;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

/// README: stale reads lag by replication plus up to `cache.expiry_tick_ms`
/// when no writes flow. The replication part is bounded generously here
/// (a loaded 2-core machine), but bounded.
pub const REPLICATION: Duration = Duration::from_secs(5);

/// The test's wall clock in ms since the epoch: the clock the in-process
/// nodes stamp their entries with.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A deadline as the API writes it (RFC 3339, milliseconds, UTC, e.g.
/// `2026-12-02T15:29:21.067Z`), in ms since the epoch. Panics on any other
/// format.
pub fn parse_deadline(s: &str) -> u64 {
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
pub async fn timed(
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
pub fn deadline_of(r: &Resp, ttl_ms: u64, before: u64, after: u64) -> u64 {
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
pub fn expires_header(r: &Resp) -> Option<u64> {
    r.header(header::EXPIRES_AT).map(parse_deadline)
}

/// A read answer for a key with deadline `at`, served between `before` and
/// `after`: `X-Dcache-Expires-At` is the deadline and `X-Dcache-TTL-Ms`
/// what was left at the serving node's stamp.
#[track_caller]
pub fn assert_ttl_headers(r: &Resp, at: u64, before: u64, after: u64) {
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
pub fn assert_no_ttl_headers(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header(header::EXPIRES_AT), None);
    assert_eq!(r.header(header::TTL_MS), None);
}

/// Wait until the test's clock is past `at` (waiting for time to pass a
/// deadline, not for a condition of the system).
pub async fn wait_past(at: u64) {
    let left = Duration::from_millis(at.saturating_sub(now_ms()));
    wait_for(&format!("the clock to pass {at}"), left + WAIT, || async {
        (now_ms() > at).then_some(())
    })
    .await
}

/// A `/v1/status` field of node `i`.
pub async fn stat(c: &TestCluster, i: usize, field: &str) -> u64 {
    let s = c.get_json(i, "/v1/status").await;
    s[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {s}"))
}

/// The two nodes other than `i` in a 3-node cluster.
pub fn others(i: usize) -> [usize; 2] {
    [(i + 1) % 3, (i + 2) % 3]
}
