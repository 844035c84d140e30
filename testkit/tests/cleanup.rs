//! A `TestCluster` cleans up after a test that panics: every node stopped
//! (no task left running, no listener holding a port) and its temp dir
//! removed, by the time the panic has unwound.

use std::net::SocketAddr;
use std::path::PathBuf;

use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_dropped_by_a_panic_stops_its_nodes_and_removes_its_dir() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let (tx, rx) = tokio::sync::oneshot::channel::<(Vec<SocketAddr>, PathBuf)>();
    let test = tokio::spawn(async move {
        let c = TestCluster::start(2, |_| {}).await;
        c.put_ok(1, "k", "v").await;
        let addrs = c.nodes.iter().flat_map(|n| [n.http, n.raft]).collect();
        tx.send((addrs, c.dir.path().to_path_buf())).unwrap();
        panic!("the test fails with its cluster running");
    });
    let err = test.await.expect_err("the test panicked");
    assert!(err.is_panic());
    let (addrs, dir) = rx.await.unwrap();

    // Already done when the panic has unwound: no waiting here.
    assert!(!dir.exists(), "{} was not removed", dir.display());
    for a in &addrs {
        let refused = tokio::net::TcpStream::connect(a).await.is_err();
        assert!(refused, "something still listens on {a}");
        std::net::TcpListener::bind(a).unwrap_or_else(|e| panic!("{a} is still held: {e}"));
    }
    // Raft's own background tasks end once its core has stopped.
    wait_for("every task the cluster spawned to end", WAIT, || async {
        (metrics.num_alive_tasks() <= tasks_before).then_some(())
    })
    .await;
}
