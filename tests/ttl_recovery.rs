//! Time to live across restarts, snapshots and stops, end to end on real
//! in-process nodes (README: "Time to live (TTL)"): deadlines survive a
//! full restart, a leader change and a snapshot install; keys whose
//! deadline passed during a full stop are gone at start; a mass expiry is
//! batched while other writes go on; `expire_at` sets an absolute deadline.
//! The API and the read promises: tests/ttl.rs.

#[path = "ttl/support.rs"]
mod support;

use dcache::wire::Code;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::send;
use dcache_testkit::seed;
use dcache_testkit::wait_for;
use dcache_testkit::wait_ok;
use rand::Rng;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

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
    // Snapshots are taken in the background (`raft::compaction` looks every
    // 100 ms, then the build and the purge run): wait for the purge.
    wait_for(
        "the leader to purge its log past index 100",
        WAIT,
        || async {
            let purged = c.get_json(leader, "/v1/cluster").await["purged_index"].as_u64();
            purged.is_some_and(|p| p > 100).then_some(())
        },
    )
    .await;

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
