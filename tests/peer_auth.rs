//! The cluster secret (`cluster.secret`): peers and membership requests
//! must present it; without it they are refused with 401 before any body
//! is read.

use std::time::Duration;

use dcache::config::Secret;
use dcache::wire::Code;
use dcache::wire::header;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::cluster::test_config;
use dcache_testkit::http::send;
use dcache_testkit::raw;

const SECRET: &str = "peer-auth-test-secret-0123456789";

fn with_secret(s: &str) -> impl Fn(&mut dcache::config::Config) + '_ {
    move |c| c.cluster.secret = Secret::new(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_with_a_secret_replicate() {
    let c = TestCluster::start(3, with_secret(SECRET)).await;
    let l = c.leader().await;
    c.put_ok(l, "k", "v").await;
    for i in 0..3 {
        let r = c.req(i, "GET", "/v1/kv/k?consistency=stale", "").await;
        // Replication reached every node (followers may lag: wait).
        if r.status != 200 {
            dcache_testkit::wait_for("k replicated", WAIT, || async {
                (c.req(i, "GET", "/v1/kv/k?consistency=stale", "")
                    .await
                    .status
                    == 200)
                    .then_some(())
            })
            .await;
        }
    }
    // On loopback with a secret there is nothing to warn about.
    let h = c.get_json(0, "/health").await;
    assert_eq!(h["warnings"], serde_json::json!([]), "{h}");
    c.shutdown_all().await;
}

/// A node whose secret is wrong or missing asks to join, is refused with
/// `unauthorized` (permanent), and its node reports the failure; the
/// cluster keeps one voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_the_secret_cannot_join() {
    let mut c = TestCluster::start(1, with_secret(SECRET)).await;
    for (i, secret) in [(1, Some("another-secret-of-enough-length")), (2, None)] {
        let mut cfg = test_config(c.dir.path(), i);
        cfg.cluster.join_addr = c.nodes[0].http.to_string();
        if let Some(s) = secret {
            cfg.cluster.secret = Secret::new(s);
        }
        let n = c.add(cfg).await;
        let node = c.nodes[n].node.as_mut().unwrap();
        let err = tokio::time::timeout(WAIT, node.failed())
            .await
            .expect("the join loop gives up");
        let msg = err.to_string();
        assert!(msg.contains(Code::Unauthorized.as_str()), "{msg}");
        assert!(!msg.contains(SECRET), "{msg}");
        c.stop(n, false).await;
        assert_eq!(c.voters(0), vec!["n0".to_string()]);
    }

    // Membership requests without the secret: 401 on both APIs, with the
    // code; with it, they get past the check (here: a bad address).
    let body = r#"{"id":"x","addr":"127.0.0.1:1"}"#;
    let r = c.req(0, "POST", "/join", body).await;
    r.assert_seed_error(401, Code::Unauthorized);
    let r = c.req(0, "POST", "/leave", r#"{"id":"n0"}"#).await;
    r.assert_seed_error(401, Code::Unauthorized);
    let r = c.req(0, "POST", "/v1/cluster/members", body).await;
    r.assert_error(Code::Unauthorized);
    let r = c.req(0, "DELETE", "/v1/cluster/members/n0", "").await;
    r.assert_error(Code::Unauthorized);
    let r = send(
        c.client
            .post(c.url(0, "/v1/cluster/members"))
            .header(header::CLUSTER_SECRET, "wrong-secret-of-enough-length")
            .body(body),
    )
    .await;
    r.assert_error(Code::Unauthorized);
    let r = send(
        c.client
            .post(c.url(0, "/v1/cluster/members"))
            .header(header::CLUSTER_SECRET, SECRET)
            .body(body),
    )
    .await;
    r.assert_error(Code::MemberUnreachable);
    // Other routes need no secret.
    c.put_ok(0, "open", "yes").await;
    c.shutdown_all().await;
}

/// Raw requests to the Raft port: without the secret, 401 at once, even
/// with a huge declared body that is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_port_refuses_requests_without_the_secret_before_the_body() {
    let c = TestCluster::start(1, with_secret(SECRET)).await;
    let raft = c.nodes[0].raft;
    for (method, path) in [
        ("POST", "/raft/append"),
        ("POST", "/raft/vote"),
        ("POST", "/raft/pre-vote"),
        ("POST", "/raft/snapshot"),
        ("POST", "/raft/transfer-leader"),
        ("POST", "/raft/read-index"),
        ("POST", "/raft/writes"),
        ("GET", "/raft/info"),
        ("POST", "/nope"),
    ] {
        for secret in [None, Some("wrong-secret-of-enough-length")] {
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/msgpack\r\n\
                 x-dcache-raft-to: n0\r\ncontent-length: 1000000000000\r\n"
            );
            if let Some(s) = secret {
                head.push_str(&format!("{}: {s}\r\n", header::CLUSTER_SECRET));
            }
            head.push_str("\r\n");
            // No body byte is ever sent: the answer must come anyway.
            let resp = raw::request(raft, head.as_bytes(), 0, Duration::from_secs(5)).await;
            assert_eq!(
                raw::status(&resp),
                Some(401),
                "{method} {path} secret {secret:?}: {}",
                String::from_utf8_lossy(&resp)
            );
        }
    }
    // With the secret, the info route answers.
    let r = send(
        c.client
            .get(format!("http://{raft}/raft/info"))
            .header(header::CLUSTER_SECRET, SECRET),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "n0");
    c.shutdown_all().await;
}

/// Without a secret the Raft port keeps today's behaviour; a node whose
/// Raft listener is not on loopback warns, in `/health` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_on_a_public_address_warns() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path(), 0);
    cfg.raft.bind_addr = "0.0.0.0:0".into();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raft = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let raft_port = raft.local_addr().unwrap().port();
    let node = dcache::node::Node::start(cfg, http, raft).await.unwrap();
    let client = dcache_testkit::http::client();
    let h = dcache_testkit::wait_for("health", WAIT, || async {
        let r = client
            .get(format!("http://{http_addr}/health"))
            .send()
            .await
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&r.bytes().await.ok()?).ok()
    })
    .await;
    let w = h["warnings"].as_array().expect("warnings");
    assert_eq!(w.len(), 2, "{h}");
    assert!(w[0].as_str().unwrap().contains("no TLS"), "{h}");
    assert!(w[1].as_str().unwrap().contains("cluster.secret"), "{h}");
    // No secret: the Raft port does not ask for one (the RPC is refused
    // for other reasons: it names no target).
    let resp = raw::request(
        format!("127.0.0.1:{raft_port}").parse().unwrap(),
        b"POST /raft/vote HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
        0,
        Duration::from_secs(5),
    )
    .await;
    assert_ne!(raw::status(&resp), Some(401));
    node.shutdown(false).await.unwrap();
}
