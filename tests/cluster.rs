//! Multi-node behaviour with real in-process nodes on loopback: reads and
//! writes through any node, failover, catch-up, restarts, forwarding, the
//! answers without a quorum. Membership changes: tests/membership.rs.

use std::time::Duration;
use std::time::Instant;

use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::cluster::test_config;
use dcache_testkit::ports::dead_addr;
use dcache_testkit::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_via_any_node_is_read_back_at_once_from_every_node() {
    let c = TestCluster::start(3, |_| {}).await;
    for writer in 0..3 {
        let key = format!("k{writer}");
        let value = format!("v{writer}");
        let r = c.put(writer, &key, &value).await;
        assert_eq!(r.status, 200, "{}", r.text());
        // A default (linearizable) read issued after the write completed
        // must see it on every node, with no waiting.
        for reader in 0..3 {
            assert_eq!(
                c.get(reader, &key).await,
                (200, value.clone()),
                "reader {reader}"
            );
        }
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    for i in 0..50 {
        let r = c.put(i % 3, &format!("a{i}"), &format!("{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let killed_at = Instant::now();
    c.stop(leader, false).await;
    // Bounded by the wait (a hang), not timed: failover time is a
    // measurement, printed here, not a pass/fail line.
    let new_leader = c.leader().await;
    eprintln!("failover: new leader after {:?}", killed_at.elapsed());
    assert_ne!(new_leader, leader);
    for i in 0..50 {
        for r in c.running().collect::<Vec<_>>() {
            assert_eq!(c.get(r, &format!("a{i}")).await, (200, format!("{i}")));
        }
    }
    // The old leader comes back as a follower and catches up.
    c.restart(leader).await;
    c.wait_ready(leader).await;
    c.put_ok(new_leader, "after", "x").await;
    assert_eq!(c.get(leader, "after").await, (200, "x".into()));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_that_missed_many_writes_catches_up_by_snapshot() {
    let mut c = TestCluster::start(3, |cfg| cfg.raft.snapshot_threshold = 100).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    c.stop(follower, false).await;
    // 1,200 writes while it is down, concurrently over a few connections.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let client = c.client.clone();
        let base = c.url(leader, "/v1/kv/");
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                let r = client
                    .put(format!("{base}s{t}-{i}"))
                    .body(format!("{t}-{i}"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                assert!(status.is_success(), "write failed: {status} {body}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Snapshots are built and the log purged in the background, after the
    // writes are acknowledged (openraft also defers a purge while an
    // append to the stopped follower is in flight): wait for it.
    wait_for(
        "the leader to purge its log past index 100",
        WAIT,
        || async {
            let purged = c.node(leader).cluster.status().purged_index;
            purged.is_some_and(|p| p > 100).then_some(())
        },
    )
    .await;
    c.restart(follower).await;
    c.wait_ready(follower).await;
    let leader_summary = c.node(leader).cluster.digest();
    wait_for("follower to match the leader's state", WAIT, || async {
        let s = c.node(follower).cluster.digest();
        (s.applied_index >= leader_summary.applied_index).then_some(())
    })
    .await;
    let fst = c.node(follower).cluster.status();
    assert!(
        fst.snapshot_index.is_some_and(|s| s > 100),
        "follower installed a snapshot: {:?}",
        fst.snapshot_index
    );
    let f = c.node(follower).cluster.digest();
    let l = c.node(leader).cluster.digest();
    assert_eq!((f.keys, f.digest), (l.keys, l.digest));
    assert_eq!(f.keys, 1200);
    let r = c
        .req(follower, "GET", "/v1/kv/s3-77?consistency=stale", "")
        .await;
    assert_eq!((r.status, r.text()), (200, "3-77".to_string()));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_cluster_stop_and_restart_in_any_order_keeps_everything() {
    let mut c = TestCluster::start(3, |cfg| cfg.raft.snapshot_threshold = 50).await;
    for i in 0..120 {
        let r = c.put(i % 3, &format!("p{i}"), &format!("{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for i in [1, 0, 2] {
        c.stop(i, i == 1).await;
    }
    for i in [2, 1, 0] {
        c.restart(i).await;
    }
    c.leader().await;
    for i in 0..3 {
        c.wait_ready(i).await;
    }
    for i in 0..120 {
        assert_eq!(c.get(i % 3, &format!("p{i}")).await, (200, format!("{i}")));
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_via_a_follower_then_remove_a_node() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let mut cfg = test_config(c.dir.path(), 3);
    cfg.cluster.join_addr = c.nodes[follower].http.to_string();
    let n3 = c.add(cfg).await;
    c.wait_voters(4).await;
    c.wait_ready(n3).await;
    c.put_ok(n3, "from-new", "yes").await;
    assert_eq!(c.get(leader, "from-new").await, (200, "yes".into()));

    // Remove it through the native API on a follower (forwarded).
    let r = c
        .req(follower, "DELETE", "/v1/cluster/members/n3", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"id": "n3", "removed": true}));
    c.wait_voters(3).await;
    let st = c.node(leader).cluster.status();
    assert!(st.members.iter().all(|m| m.id != "n3"), "{:?}", st.members);
    // Removing an unknown member: 404 not_found.
    let r = c
        .req(leader, "DELETE", "/v1/cluster/members/nope", "")
        .await;
    r.assert_error(Code::NotFound);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_refuses_an_unreachable_address() {
    let c = TestCluster::start(1, |_| {}).await;
    // A port nothing listens on.
    let dead = dead_addr();
    let r = c
        .req(
            0,
            "POST",
            "/join",
            format!(r#"{{"id":"ghost","addr":"{dead}"}}"#),
        )
        .await;
    // The seed's 502 "failed to join cluster", with the native code.
    r.assert_seed_error(502, Code::MemberUnreachable);
    let body = r.json();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to join cluster: cannot reach a dcache node at"),
        "{body}"
    );
    let st = c.node(0).cluster.status();
    assert_eq!(st.members.len(), 1, "no ghost member was added");
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_forward_and_redirect() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    // Forwarded write: the follower hands the command to the leader and
    // answers from its outcome (`cluster::forward`).
    let r = c.req(f, "PUT", "/v1/kv/dir%2Fkey?cas=0", "v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header(header::SERVED_BY), Some(c.id(f)));
    let index = r.json()["modify_index"].as_u64().unwrap();
    assert_eq!(r.header(header::INDEX), Some(index.to_string().as_str()));
    // The query string survived forwarding: a second cas=0 fails with 412.
    let r = c.req(f, "PUT", "/v1/kv/dir%2Fkey?cas=0", "v2").await;
    r.assert_error(Code::CasMismatch);
    // The %2F was not re-encoded: the key is "dir/key".
    assert_eq!(c.get(leader, "dir/key").await, (200, "v1".into()));
    // Redirect instead of forward.
    let r = c.req(f, "PUT", "/v1/kv/x?redirect=true", "v").await;
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some(format!("http://{}/v1/kv/x?redirect=true", c.nodes[leader].http).as_str())
    );
    assert_eq!(c.get(leader, "x").await.0, 404, "a redirect writes nothing");
    // Seed route through a follower.
    let r = c
        .req(f, "POST", "/store", r#"{"key":"s","value":"t"}"#)
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.text(),
        "{\"key\":\"s\",\"message\":\"value set successfully\"}\n"
    );
    c.shutdown_all().await;
}

/// Many concurrent writes through one follower go to the leader in
/// batches (`cluster::forward`): each gets its own outcome (its own Raft
/// index, its own CAS result), and every acknowledged write is on every
/// node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_through_a_follower_each_get_their_own_outcome() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    let n = 200;
    let paths: Vec<String> = (0..n).map(|i| format!("/v1/kv/b{i}")).collect();
    let puts = paths
        .iter()
        .enumerate()
        .map(|(i, p)| c.req(f, "PUT", p, format!("v{i}")));
    let mut indexes = Vec::new();
    for (i, r) in futures_util::future::join_all(puts)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.status, 200, "write {i}: {}", r.text());
        assert_eq!(r.json()["key"], format!("b{i}"));
        indexes.push(
            r.header(header::RAFT_INDEX)
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), n, "every write has its own log entry");
    // Concurrent CAS creates of one key through the follower: exactly one
    // wins, the others are refused with cas_mismatch.
    let cas = (0..16).map(|i| c.req(f, "PUT", "/v1/kv/once?cas=0", format!("c{i}")));
    let answers = futures_util::future::join_all(cas).await;
    let won = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(won, 1, "one CAS create wins");
    for r in answers.iter().filter(|r| r.status != 200) {
        r.assert_error(Code::CasMismatch);
    }
    for node in 0..3 {
        for i in [0, n / 2, n - 1] {
            assert_eq!(c.get(node, &format!("b{i}")).await, (200, format!("v{i}")));
        }
    }
    c.shutdown_all().await;
}

/// A linearizable read on a follower is answered by the follower itself
/// (read index from the leader, then a local read: `cluster::follower_read`),
/// and it sees every write acknowledged before it, also when many reads
/// share one read-index request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_answers_linearizable_reads_itself_and_sees_every_acknowledged_write() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    for round in 0..20 {
        let value = format!("v{round}");
        c.put_ok(leader, "fr", &value).await;
        // Concurrent reads right after the acknowledgement, on the follower.
        let reads = (0..16).map(|_| c.req(f, "GET", "/v1/kv/fr", ""));
        for r in futures_util::future::join_all(reads).await {
            assert_eq!((r.status, r.text()), (200, value.clone()), "round {round}");
            assert_eq!(r.header(header::SERVED_BY), Some(c.id(f)), "not forwarded");
        }
    }
    c.shutdown_all().await;
}

/// With eviction by access (a memory limit and an LRU policy) the leader
/// must see every read: a follower forwards linearizable reads instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_lru_eviction_a_follower_forwards_linearizable_reads() {
    let c = TestCluster::start(3, |cfg| {
        cfg.cache.eviction_policy = dcache::config::EvictionPolicy::AllkeysLru;
        cfg.cache.max_memory = dcache::config::ByteSize(64 << 20);
    })
    .await;
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    c.put_ok(leader, "lru", "v").await;
    let r = c.req(f, "GET", "/v1/kv/lru", "").await;
    assert_eq!((r.status, r.text()), (200, "v".to_string()));
    assert_eq!(r.header(header::SERVED_BY), Some(c.id(leader)));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_quorum_means_503_not_a_hang_and_not_a_stale_read() {
    let mut c = TestCluster::start(3, |_| {}).await;
    c.put_ok(0, "q", "1").await;
    let leader = c.leader().await;
    let survivor = (leader + 1) % 3;
    let applied = c.node(leader).cluster.digest().applied_index;
    wait_for("survivor to apply the write", WAIT, || async {
        (c.node(survivor).cluster.digest().applied_index >= applied).then_some(())
    })
    .await;
    for i in 0..3 {
        if i != survivor {
            c.stop(i, false).await;
        }
    }
    // Within a bound the survivor refuses writes and default reads with 503.
    wait_for("survivor to answer 503", WAIT, || async {
        let w = c.put(survivor, "q", "2").await;
        let (rs, _) = c.get(survivor, "q").await;
        (w.status == 503 && rs == 503).then_some(())
    })
    .await;
    // Then, every time: no_leader (README: no known leader), Retry-After.
    let w = c.put(survivor, "q", "3").await;
    w.assert_error(Code::NoLeader);
    assert_eq!(w.header("retry-after"), Some("1"));
    let r = c.req(survivor, "GET", "/v1/kv/q", "").await;
    r.assert_error(Code::NoLeader);
    // The seed routes too: the seed's status and body, the true code in
    // X-Dcache-Error (not applied: safe to retry).
    let r = c
        .req(survivor, "POST", "/store", r#"{"key":"q","value":"4"}"#)
        .await;
    r.assert_seed_error(503, Code::NoLeader);
    let r = c.req(survivor, "GET", "/store/q", "").await;
    r.assert_seed_error(503, Code::NoLeader);
    // A stale read is still served, explicitly.
    let r = c
        .req(survivor, "GET", "/v1/kv/q?consistency=stale", "")
        .await;
    assert_eq!((r.status, r.text()), (200, "1".to_string()));
    // readyz reports not ready.
    let r = c.req(survivor, "GET", "/readyz", "").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["ready"], false);
    c.shutdown_all().await;
}

/// README's time bound: every request is answered within
/// `http.request_timeout_ms`, and a leader cut off from its quorum answers
/// `no_leader` within about one election timeout (here 1 s, plus slack for
/// a loaded test machine) instead of holding the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_without_quorum_answers_503_within_the_stated_bound() {
    let request_timeout = Duration::from_millis(4000);
    let mut c = TestCluster::start(3, |cfg| {
        cfg.http.request_timeout_ms = request_timeout.as_millis() as u64;
    })
    .await;
    c.put_ok(0, "b", "1").await;
    let leader = c.leader().await;
    for i in 0..3 {
        if i != leader {
            c.stop(i, false).await;
        }
    }
    let election = Duration::from_millis(c.nodes[leader].cfg.raft.election_timeout_max_ms);
    // Until its lease lapses the leader still accepts writes (they time out:
    // outcome unknown, they would commit if the quorum came back). Once it
    // knows it has lost the quorum, it is not ready:
    wait_for("the cut-off leader to report not ready", WAIT, || async {
        let ready = c.node(leader).cluster.readiness().await.ready;
        (!ready).then_some(())
    })
    .await;
    for (what, linearizable_read) in [("write", false), ("read", true), ("write again", false)] {
        let t = Instant::now();
        let r = if linearizable_read {
            c.req(leader, "GET", "/v1/kv/b", "").await
        } else {
            c.put(leader, "b", "2").await
        };
        let took = t.elapsed();
        assert_eq!(r.code(), Some(Code::NoLeader), "{what}: {}", r.text());
        r.assert_error(Code::NoLeader);
        assert!(took < request_timeout, "{what} took {took:?}");
        assert!(
            took < election + Duration::from_secs(1),
            "{what} took {took:?}"
        );
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_of_the_leader_hands_over_leadership() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let old_term = c.node(leader).cluster.status().term;
    // Writers keep going through the other nodes during the shutdown.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, &n) in others.iter().enumerate() {
        let client = c.client.clone();
        let base = c.url(n, "/v1/kv/");
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failures = 0u32;
            for i in 0..10_000u32 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("g{w}-{i}");
                match client
                    .put(format!("{base}{key}"))
                    .body(key.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => acked.push(key),
                    Ok(r) => {
                        failures += 1;
                        eprintln!(
                            "write {key}: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("write {key}: {e}");
                    }
                }
            }
            (acked, failures)
        }));
    }
    wait_for("some writes", WAIT, || async {
        (c.node(leader).cluster.digest().applied_index > 40).then_some(())
    })
    .await;
    c.stop(leader, true).await;
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    assert!(c.node(new_leader).cluster.status().term > old_term);
    c.put_ok(new_leader, "after-handover", "1").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_failures = 0;
    for w in writers {
        let (acked, failures) = w.await.unwrap();
        total_failures += failures;
        for key in acked.iter().step_by(7) {
            assert_eq!(c.get(new_leader, key).await, (200, key.clone()));
        }
    }
    // A handover may cost a request or two a retry, not a stream of errors.
    assert!(
        total_failures <= 4,
        "{total_failures} failed writes during handover"
    );
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_alone_is_not_ready_and_does_not_route_to_a_remembered_leader() {
    let mut c = TestCluster::start(3, |_| {}).await;
    c.put_ok(0, "r", "1").await;
    for i in 0..3 {
        c.stop(i, false).await;
    }
    // The node's saved vote names a leader that is gone: it must not
    // report ready nor forward to it.
    c.restart(2).await;
    let r = c.node(2).cluster.readiness().await;
    assert!(!r.ready, "{r:?}");
    assert!(!r.checks["leader_known"]);
    let w = c.put(2, "r", "2").await;
    w.assert_error(Code::NoLeader);
    // Once the others are back, it becomes ready and serves.
    c.restart(0).await;
    c.restart(1).await;
    c.wait_ready(2).await;
    assert_eq!(c.get(2, "r").await, (200, "1".into()));
    c.shutdown_all().await;
}
