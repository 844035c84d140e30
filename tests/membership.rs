//! Membership and leadership changes on real in-process clusters: the seed's
//! `POST /leave` and `POST /stepdown`, the native transfer to a named node,
//! removing the leader, removing the last voter, and the join conflicts
//! (README: Operations, Membership; Errors: `conflict`, `not_found`).
//! Joining through a follower and removing a follower: tests/cluster.rs.

use dcache::id::NodeId;
use dcache::node::Node;
use dcache::raft::rpc::NodeInfo;
use dcache::wire::Code;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::cluster::test_config;
use dcache_testkit::ports::bind_retry;
use dcache_testkit::ports::free_listener;
use dcache_testkit::wait::wait_for;
use serde_json::json;

/// The two nodes other than `leader` in a 3-node cluster.
fn others(leader: usize) -> [usize; 2] {
    [(leader + 1) % 3, (leader + 2) % 3]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_leave_removes_a_member_and_the_rest_keep_serving() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let [f, g] = others(leader);
    c.put_ok(leader, "before", "leave").await;
    // Through the other follower: forwarded to the leader.
    let body = format!(r#"{{"id":"{}"}}"#, c.id(f));
    let r = c.req(g, "POST", "/leave", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!(
            "{{\"id\":\"{}\",\"message\":\"node left configuration successfully\"}}\n",
            c.id(f)
        )
    );
    c.wait_voters(2).await;
    let mut want = vec![c.id(leader).to_string(), c.id(g).to_string()];
    want.sort();
    assert_eq!(c.voters(leader), want);
    assert!(
        c.node(leader)
            .cluster
            .status()
            .members
            .iter()
            .all(|m| m.id != c.id(f)),
        "{} is still a member",
        c.id(f)
    );
    // Leaving again: it is no member any more.
    let body = format!(r#"{{"id":"{}"}}"#, c.id(f));
    let r = c.req(leader, "POST", "/leave", body).await;
    r.assert_seed_error(404, Code::NotFound);
    // The two left serve writes and linearizable reads.
    c.put_ok(g, "after", "leave").await;
    for i in [leader, g] {
        assert_eq!(c.get(i, "before").await, (200, "leave".to_string()));
        assert_eq!(c.get(i, "after").await, (200, "leave".to_string()));
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_stepdown_hands_leadership_to_another_node() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let term = c.node(leader).cluster.status().term;
    let [f, _] = others(leader);
    // Through a follower: forwarded to the leader, which steps down.
    let r = c.req(f, "POST", "/stepdown", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "{\"message\":\"leadership transfer initiated successfully\"}\n"
    );
    let new = c.leader().await;
    assert_ne!(new, leader, "leadership did not move");
    assert!(c.node(new).cluster.status().term > term);
    c.put_ok(leader, "after", "stepdown").await;
    assert_eq!(c.get(new, "after").await, (200, "stepdown".to_string()));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_leader_to_a_named_node() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let [f, g] = others(leader);
    // Asked of a follower (forwarded): the named node leads.
    c.transfer_leader(f, g).await;
    assert_eq!(c.leader().await, g);
    c.put_ok(leader, "after", "transfer").await;

    // To the leader itself: nothing to do, it stays.
    c.transfer_leader(g, g).await;
    assert_eq!(c.leader().await, g);

    // To a node that is not a voter: 404 not_found; to nobody valid: 400.
    let r = c
        .req(
            g,
            "POST",
            "/v1/cluster/transfer-leader",
            json!({ "to": "nobody" }).to_string(),
        )
        .await;
    r.assert_error(Code::NotFound);
    assert_eq!(r.json()["error"], "\"nobody\" is not a voter");
    let r = c
        .req(g, "POST", "/v1/cluster/transfer-leader", "{\"to\":7}")
        .await;
    r.assert_error(Code::InvalidInput);
    assert_eq!(c.leader().await, g);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_leader_elects_another_and_keeps_serving() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let rest = others(leader);
    c.put_ok(leader, "before", "removal").await;
    let id = c.id(leader).to_string();
    let r = c
        .req(leader, "DELETE", &format!("/v1/cluster/members/{id}"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "id": id, "removed": true }));
    // The two left elect a leader among themselves and hold a 2-voter
    // configuration without the old leader.
    let new = c.leader_among(&rest).await;
    assert!(rest.contains(&new));
    c.wait_voters(2).await;
    let mut want: Vec<String> = rest.iter().map(|i| c.id(*i).to_string()).collect();
    want.sort();
    assert_eq!(c.voters(new), want);
    for i in rest {
        c.put_ok(i, &format!("after-{i}"), "removal").await;
    }
    for i in rest {
        assert_eq!(c.get(i, "before").await, (200, "removal".to_string()));
        for j in rest {
            assert_eq!(
                c.get(i, &format!("after-{j}")).await,
                (200, "removal".to_string())
            );
        }
    }
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_last_voter_is_a_conflict() {
    let c = TestCluster::start(1, |_| {}).await;
    let r = c.req(0, "DELETE", "/v1/cluster/members/n0", "").await;
    r.assert_error(Code::Conflict);
    assert_eq!(
        r.json()["error"],
        "\"n0\" is the only voter; removing it would leave no cluster"
    );
    assert_eq!(c.voters(0), ["n0"]);
    c.put_ok(0, "still", "serving").await;
    c.shutdown_all().await;
}

/// A running node that is no member of the cluster: its own single-node
/// cluster, id `id`, data under the cluster's temp dir.
async fn outsider(c: &TestCluster, id: &str) -> Node {
    let mut cfg = test_config(c.dir.path(), 0);
    cfg.node.id = id.to_string();
    cfg.node.data_dir = c.dir.path().join(format!("outsider-{id}"));
    Node::start(cfg, free_listener().await, free_listener().await)
        .await
        .expect("start the outsider")
}

/// A listener that answers `GET /raft/info` with `info` and nothing else
/// (404): who a Raft address claims to be, without Raft behind it.
fn stand_in(info: NodeInfo, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route(
        dcache::raft::rpc::INFO,
        axum::routing::get(move || {
            let info = info.clone();
            async move { axum::Json(info) }
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("serve the stand-in");
    })
}

/// Every join refusal that retrying cannot fix is a 409 `conflict` (on the
/// native and the seed route), and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_conflicts_are_409_and_change_nothing() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let n1_raft = c.nodes[1].raft.to_string();
    let join = |id: &str, addr: &str| json!({ "id": id, "addr": addr }).to_string();

    // An id the node at that address does not report.
    let r = c
        .req(
            leader,
            "POST",
            "/v1/cluster/members",
            join("ghost", &n1_raft),
        )
        .await;
    r.assert_error(Code::Conflict);
    assert_eq!(
        r.json()["error"],
        format!("the node at {n1_raft} reports id \"n1\", not \"ghost\"")
    );

    // A member's id with other addresses: a node that reports "n1" (it
    // is another n1) at an address that is not n1's.
    let other_n1 = outsider(&c, "n1").await;
    let other = other_n1.raft_addr.to_string();
    let want = format!(
        "member \"n1\" already exists with addresses (raft={n1_raft} http={}); remove it first",
        c.nodes[1].http
    );
    let r = c
        .req(leader, "POST", "/v1/cluster/members", join("n1", &other))
        .await;
    r.assert_error(Code::Conflict);
    assert_eq!(r.json()["error"], want);
    // The seed's /join: the same refusal in the seed's words.
    let r = c.req(leader, "POST", "/join", join("n1", &other)).await;
    r.assert_seed_error(409, Code::Conflict);
    assert_eq!(r.json()["error"], format!("failed to join cluster: {want}"));
    other_n1.shutdown(false).await.unwrap();

    // An address that belongs to another member: n2 stops and something
    // that says it is "x" answers on n2's Raft address. The stand-in
    // answers `GET /raft/info` only, so to the leader n2 is just
    // unreachable (a real x would refuse RPCs addressed to n2: 421).
    let n2 = if leader == 2 { 1 } else { 2 };
    let n2_raft = c.nodes[n2].raft.to_string();
    let n2_id = c.id(n2).to_string();
    c.stop(n2, false).await;
    let x = stand_in(
        NodeInfo {
            id: NodeId::from("x"),
            raft_addr: n2_raft.clone(),
            http_addr: c.nodes[n2].http.to_string(),
            incarnation: 1,
            empty_log: true,
        },
        bind_retry(&n2_raft, WAIT).await,
    );
    let r = c
        .req(leader, "POST", "/v1/cluster/members", join("x", &n2_raft))
        .await;
    r.assert_error(Code::Conflict);
    assert_eq!(
        r.json()["error"],
        format!("raft address {n2_raft} already belongs to member \"{n2_id}\"")
    );
    x.abort();

    // Nothing changed: the same three voters, and the cluster serves.
    let mut want: Vec<String> = (0..3).map(|i| c.id(i).to_string()).collect();
    want.sort();
    assert_eq!(c.voters(leader), want);
    c.put_ok(leader, "after", "conflicts").await;
    c.shutdown_all().await;
}

/// A follower whose data was lost (log wiped, identity kept) cannot rejoin
/// as the same member: it had acknowledged entries, and openraft would
/// refuse its shorter log forever (replication stalls; the node is never
/// ready). Its join is refused for good with the way out, and after the
/// operator removes it, the same start joins it as a new member, which
/// catches up (by snapshot) with every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_lost_its_data_must_be_removed_before_it_rejoins() {
    let mut c = TestCluster::start(3, |cfg| cfg.raft.snapshot_threshold = 20).await;
    let leader = c.leader().await;
    // A follower that joins through n0 (n0 bootstraps; a wiped n0 refuses
    // to start at all: tests/e2e.rs).
    let f = others(leader)
        .into_iter()
        .find(|&i| i != 0)
        .expect("two followers");
    for i in 0..60 {
        c.put_ok(leader, &format!("k{i}"), "v").await;
    }
    c.stop(f, false).await;
    let data = c.nodes[f].cfg.node.data_dir.clone();
    std::fs::remove_dir_all(data.join("raft-log")).unwrap();
    std::fs::remove_dir_all(data.join("snapshots")).unwrap();
    assert!(!c.nodes[f].cfg.cluster.join_addr.is_empty());
    c.restart(f).await;
    let e = tokio::time::timeout(WAIT, c.nodes[f].node.as_mut().unwrap().failed())
        .await
        .expect("the join is refused for good within the wait")
        .to_string();
    assert!(
        e.contains("lost its Raft state")
            && e.contains(&format!("DELETE /v1/cluster/members/{}", c.id(f))),
        "{e}"
    );
    // The leader's replication reaches the wiped node, which refuses it
    // (the RPCs name its old incarnation), so the leader's view of its log
    // does not go back (openraft panics on a log reversion) and it goes on.
    let refused = wait_for(
        "the leader's RPCs reach the wiped node and are refused",
        WAIT,
        || async {
            let r = c.req(f, "GET", "/v1/cluster", "").await;
            r.json()["refused_rpcs"].as_u64().filter(|&n| n > 0)
        },
    )
    .await;
    assert!(refused > 0);
    c.put_ok(leader, "during", "v").await;
    c.stop(f, false).await;
    let r = c
        .req(
            leader,
            "DELETE",
            &format!("/v1/cluster/members/{}", c.id(f)),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.restart(f).await;
    c.wait_voters(3).await;
    c.wait_ready(f).await;
    for i in [0, 30, 59] {
        let r = c
            .req(f, "GET", &format!("/v1/kv/k{i}?consistency=stale"), "")
            .await;
        assert_eq!(
            (r.status, r.text()),
            (200, "v".to_string()),
            "k{i} on the rejoined node"
        );
    }
    c.shutdown_all().await;
}

/// Nodes that join at the same moment race each other's membership
/// changes (openraft refuses a change whose expected membership moved on);
/// that refusal is retryable, not a conflict, so every joiner ends up a
/// voter and none stops (found by the fault suite: a node exited with "last
/// membership log id mismatch" while the cluster formed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_joining_at_once_all_become_voters() {
    for round in 0..5 {
        let mut c = TestCluster::start(1, |cfg| cfg.raft.snapshot_threshold = 50).await;
        // A log to catch up on widens the window in which one joiner's
        // promotion races the next joiner's learner entry.
        let keys: Vec<String> = (0..400).map(|i| format!("k{i}")).collect();
        let writes = keys.iter().map(|k| c.put(0, k, "v"));
        for r in futures_util::future::join_all(writes).await {
            assert_eq!(r.status, 200);
        }
        let join = c.nodes[0].http.to_string();
        for i in 1..5 {
            let mut cfg = test_config(c.dir.path(), i);
            cfg.cluster.join_addr = join.clone();
            c.add(cfg).await;
        }
        c.wait_voters(5).await;
        for i in 0..5 {
            let node = c.nodes[i].node.as_mut().unwrap();
            let stopped =
                tokio::time::timeout(std::time::Duration::from_millis(1), node.failed()).await;
            assert!(
                stopped.is_err(),
                "round {round}: node {i} stopped: {:?}",
                stopped.map(|e| e.to_string())
            );
        }
        c.shutdown_all().await;
    }
}
