//! In-process test cluster: real nodes (Raft, HTTP, storage) on 127.0.0.1
//! with free ports and temp dirs. Tests wait on conditions with deadlines,
//! never on fixed sleeps. [`proc`] runs the real binary as child processes.

#![allow(dead_code)]

pub mod proc;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use dcache::config::Config;
use dcache::node::Node;
use tokio::net::TcpListener;

pub const WAIT: Duration = Duration::from_secs(20);

/// Poll `cond` until it returns Some, or panic after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct TestNode {
    pub cfg: Config,
    pub node: Option<Node>,
    pub http: SocketAddr,
    pub raft: SocketAddr,
}

pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// Fast Raft timings for tests.
pub fn test_config(dir: &std::path::Path, i: usize) -> Config {
    let mut cfg = Config::default();
    cfg.node.id = format!("n{i}");
    cfg.node.data_dir = dir.join(format!("n{i}"));
    // Real ports are chosen by `add` (see `free_listener`).
    cfg.http.bind_addr = "127.0.0.1:0".into();
    cfg.raft.bind_addr = "127.0.0.1:0".into();
    cfg.raft.heartbeat_interval_ms = 100;
    cfg.raft.election_timeout_min_ms = 500;
    cfg.raft.election_timeout_max_ms = 1000;
    cfg.http.request_timeout_ms = 5000;
    cfg.shutdown.drain_timeout_ms = 2000;
    cfg.cluster.join_retry_max_ms = 500;
    cfg
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `DCACHE_TEST_LOG=<filter>` prints node logs (all nodes share the
/// process; the span fields say which request).
pub fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("DCACHE_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

impl TestCluster {
    /// Start `n` nodes: n0 bootstraps, the others join through n0. Returns
    /// when every node is ready and all are voters.
    pub async fn start(n: usize, tweak: impl Fn(&mut Config)) -> TestCluster {
        init_test_logging();
        let dir = tempfile::tempdir().unwrap();
        let mut c = TestCluster {
            nodes: Vec::new(),
            dir,
            client: client(),
        };
        for i in 0..n {
            let mut cfg = test_config(c.dir.path(), i);
            if i > 0 {
                cfg.cluster.join_addr = c.nodes[0].http.to_string();
            }
            tweak(&mut cfg);
            c.add(cfg).await;
        }
        c.wait_voters(n).await;
        for i in 0..n {
            c.wait_ready(i).await;
        }
        c
    }

    /// Start a node from `cfg` (binding port 0 → real ports recorded in cfg).
    pub async fn add(&mut self, mut cfg: Config) -> usize {
        let http = free_listener().await;
        let raft = free_listener().await;
        let (ha, ra) = (http.local_addr().unwrap(), raft.local_addr().unwrap());
        cfg.http.bind_addr = ha.to_string();
        cfg.raft.bind_addr = ra.to_string();
        let node = Node::start(cfg.clone(), http, raft)
            .await
            .expect("start node");
        self.nodes.push(TestNode {
            cfg,
            node: Some(node),
            http: ha,
            raft: ra,
        });
        self.nodes.len() - 1
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{}", self.nodes[i].http, path)
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].node.as_ref().expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].node.is_some())
    }

    /// Index of the node every running node agrees is leader.
    pub async fn leader(&self) -> usize {
        wait_for("an agreed leader", WAIT, || async {
            let mut leader = None;
            for i in self.running() {
                let st = self.node(i).cluster.status();
                let l = st.leader_id?;
                if leader.is_some_and(|x: String| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = leader?;
            let idx = self.running().find(|i| self.nodes[*i].cfg.node.id == l)?;
            self.node(idx).cluster.is_leader().then_some(idx)
        })
        .await
    }

    pub async fn wait_ready(&self, i: usize) {
        wait_for(&format!("node {i} ready"), WAIT, || async {
            self.node(i).cluster.readiness().await.ready.then_some(())
        })
        .await
    }

    pub async fn wait_voters(&self, n: usize) {
        wait_for(&format!("{n} voters"), WAIT, || async {
            let l = self.running().find(|i| self.node(*i).cluster.is_leader())?;
            let st = self.node(l).cluster.status();
            let voters = st.members.iter().filter(|m| m.role == "voter").count();
            (voters == n && st.membership_settled).then_some(())
        })
        .await
    }

    /// Stop node `i` (graceful or abrupt). Its data dir stays.
    pub async fn stop(&mut self, i: usize, graceful: bool) {
        let node = self.nodes[i].node.take().expect("node running");
        node.shutdown(graceful).await.expect("shutdown");
    }

    /// Restart a stopped node on the same addresses and data dir.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].node.is_none());
        let cfg = self.nodes[i].cfg.clone();
        let http = bind_retry(&cfg.http.bind_addr).await;
        let raft = bind_retry(&cfg.raft.bind_addr).await;
        let node = Node::start(cfg, http, raft).await.expect("restart node");
        self.nodes[i].node = Some(node);
    }

    pub async fn put(&self, i: usize, key: &str, value: &str) -> reqwest::Response {
        self.client
            .put(self.url(i, &format!("/v1/kv/{key}")))
            .body(value.to_string())
            .send()
            .await
            .unwrap()
    }

    /// GET /v1/kv/{key} → (status, body).
    pub async fn get(&self, i: usize, key: &str) -> (u16, String) {
        let r = self
            .client
            .get(self.url(i, &format!("/v1/kv/{key}")))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Retry a write until it is acknowledged (2xx) or the deadline passes.
    pub async fn put_ok(&self, i: usize, key: &str, value: &str) {
        wait_for(&format!("put {key} via node {i}"), WAIT, || async {
            let r = self
                .client
                .put(self.url(i, &format!("/v1/kv/{key}")))
                .body(value.to_string())
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await
    }

    pub async fn shutdown_all(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_some() {
                self.stop(i, false).await;
            }
        }
    }
}

/// The next candidate port below the kernel's ephemeral range (32768+):
/// 20000-31999, from a per-process offset (so concurrent test processes
/// mostly use different ports) plus `region`, advancing `next`. Ports
/// come back only after 12000 calls, so within one process a port
/// released by a stopped node is not handed out again.
pub fn low_port(next: &std::sync::atomic::AtomicU16, region: u16) -> u16 {
    let base = (std::process::id() % 500) as u16 * 20;
    let off = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 12_000;
    20_000 + (base + region + off) % 12_000
}

/// A listener on 127.0.0.1 with a port below the kernel's ephemeral range
/// (see [`low_port`]), so that while a node is stopped no outgoing
/// connection can be given its port and its restart can rebind it.
pub async fn free_listener() -> TcpListener {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    for _ in 0..2000 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", low_port(&NEXT, 0))).await {
            return l;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// Rebinding a port just released can briefly fail; retry with a bound.
async fn bind_retry(addr: &str) -> TcpListener {
    wait_for(&format!("bind {addr}"), Duration::from_secs(10), || async {
        TcpListener::bind(addr).await.ok()
    })
    .await
}
