//! In-process test cluster: real nodes (Raft, HTTP, storage) inside the
//! test process, on 127.0.0.1 with free ports and data dirs in one temp
//! dir.
//!
//! Cleanup: [`TestCluster::shutdown_all`] stops every node; if a test
//! panics before that, `Drop` does it: every running node is aborted at
//! once (listeners closed, tasks cancelled: `dcache::node::Node::abort`),
//! then, on a multi-threaded runtime, shut down and awaited (Raft stopped)
//! before the temp dir is removed. On a current-thread runtime (which
//! cannot block) the runtime's own shutdown drops the aborted tasks.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dcache::config::Config;
use dcache::node::Node;
use dcache::node::Tuning;
use tokio::runtime::Handle;
use tokio::runtime::RuntimeFlavor;

use crate::http::Resp;
use crate::http::send;
use crate::ports::bind_retry;
use crate::ports::free_listener;
use crate::wait::WAIT;
use crate::wait::wait_for;
use crate::wait::wait_ok;

/// Bound on stopping one node in `Drop`.
const DROP_STOP: Duration = Duration::from_secs(10);

pub struct TestNode {
    pub cfg: Config,
    pub tuning: Tuning,
    pub node: Option<Node>,
    pub http: SocketAddr,
    pub raft: SocketAddr,
}

pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub dir: tempfile::TempDir,
    /// Plain HTTP, or, once a node with `tls.*` is added, https trusting
    /// its CA and presenting its certificate (so `client_auth: required`
    /// lets it in).
    pub client: reqwest::Client,
    scheme: &'static str,
}

/// Node `n<i>` with its data in `dir/n<i>` and fast Raft timings.
pub fn test_config(dir: &Path, i: usize) -> Config {
    let mut cfg = Config::default();
    cfg.node.id = format!("n{i}");
    cfg.node.data_dir = dir.join(format!("n{i}"));
    // Real ports are chosen by `add` (see `free_listener`).
    cfg.http.bind_addr = "127.0.0.1:0".into();
    cfg.raft.bind_addr = "127.0.0.1:0".into();
    cfg.redis.bind_addr = "127.0.0.1:0".into();
    cfg.raft.heartbeat_interval_ms = 100;
    cfg.raft.election_timeout_min_ms = 500;
    cfg.raft.election_timeout_max_ms = 1000;
    cfg.http.request_timeout_ms = 5000;
    cfg.shutdown.drain_timeout_ms = 2000;
    cfg.cluster.join_retry_max_ms = 500;
    cfg
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
        Self::start_tuned(n, Tuning::default(), tweak).await
    }

    /// [`TestCluster::start`] with non-default built-in bounds.
    pub async fn start_tuned(n: usize, tuning: Tuning, tweak: impl Fn(&mut Config)) -> TestCluster {
        let mut c = TestCluster::empty();
        for i in 0..n {
            let mut cfg = test_config(c.dir.path(), i);
            if i > 0 {
                cfg.cluster.join_addr = c.nodes[0].http.to_string();
            }
            tweak(&mut cfg);
            c.add_tuned(cfg, tuning.clone()).await;
        }
        c.wait_voters(n).await;
        for i in 0..n {
            c.wait_ready(i).await;
        }
        c
    }

    /// No nodes yet (see [`TestCluster::add`]).
    pub fn empty() -> TestCluster {
        init_test_logging();
        TestCluster {
            nodes: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            client: crate::http::client(),
            scheme: "http",
        }
    }

    /// Start a node from `cfg` on two free ports (recorded in its cfg).
    pub async fn add(&mut self, cfg: Config) -> usize {
        self.add_tuned(cfg, Tuning::default()).await
    }

    pub async fn add_tuned(&mut self, mut cfg: Config, tuning: Tuning) -> usize {
        let http = free_listener().await;
        let raft = free_listener().await;
        let (ha, ra) = (http.local_addr().unwrap(), raft.local_addr().unwrap());
        if cfg.tls.enabled() && self.scheme == "http" {
            let t = &cfg.tls;
            let tls = dcache::net::tls::ClientTls::from_files(
                &t.ca_file,
                Some((t.cert_file.as_path(), t.key_file.as_path())),
            )
            .expect("the node's TLS files");
            self.client = crate::http::client_with(dcache::net::HttpClientOptions {
                tls: Some(tls),
                ..Default::default()
            });
            self.scheme = "https";
        }
        cfg.http.bind_addr = ha.to_string();
        cfg.raft.bind_addr = ra.to_string();
        let node = Node::start_tuned(cfg.clone(), http, raft, tuning.clone())
            .await
            .unwrap_or_else(|e| panic!("start node {}: {e}", cfg.node.id));
        self.nodes.push(TestNode {
            cfg,
            tuning,
            node: Some(node),
            http: ha,
            raft: ra,
        });
        self.nodes.len() - 1
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.nodes[i].http, path)
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> &str {
        &self.nodes[i].cfg.node.id
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].node.as_ref().expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].node.is_some())
    }

    /// Index of the node every running node agrees is leader.
    pub async fn leader(&self) -> usize {
        self.leader_among(&self.running().collect::<Vec<_>>()).await
    }

    /// Index of the node every node in `among` agrees is leader (it must be
    /// one of them).
    pub async fn leader_among(&self, among: &[usize]) -> usize {
        wait_for(&format!("a leader agreed by {among:?}"), WAIT, || async {
            let mut leader = None;
            for &i in among {
                let l = self.node(i).cluster.status().leader_id?;
                if leader.is_some_and(|x: String| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = leader?;
            let idx = among.iter().copied().find(|i| self.id(*i) == l)?;
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

    /// Wait until a running leader reports exactly `n` voters and no
    /// membership change in flight.
    pub async fn wait_voters(&self, n: usize) {
        wait_ok(&format!("{n} voters"), WAIT, || async {
            let l = self
                .running()
                .find(|i| self.node(*i).cluster.is_leader())
                .ok_or("no leader")?;
            let st = self.node(l).cluster.status();
            let voters = st.members.iter().filter(|m| m.role == "voter").count();
            if voters == n && st.membership_settled {
                Ok(())
            } else {
                Err(format!(
                    "{voters} voters, settled {}",
                    st.membership_settled
                ))
            }
        })
        .await
    }

    /// The voter ids a node reports, sorted.
    pub fn voters(&self, i: usize) -> Vec<String> {
        let mut v: Vec<String> = self
            .node(i)
            .cluster
            .status()
            .members
            .into_iter()
            .filter(|m| m.role == "voter")
            .map(|m| m.id)
            .collect();
        v.sort();
        v
    }

    /// Stop node `i` (graceful or abrupt). Its data dir stays; see
    /// [`TestCluster::wait_log_free`] before opening it.
    pub async fn stop(&mut self, i: usize, graceful: bool) {
        let node = self.nodes[i].node.take().expect("node running");
        node.shutdown(graceful).await.expect("shutdown");
    }

    /// Wait until stopped node `i`'s Raft log is closed (its directory lock
    /// free), so that the data dir can be opened again.
    ///
    /// `Node::shutdown` returns once Raft's core has stopped, but tasks the
    /// node spawned (openraft's replication tasks until their last RPC
    /// returns, aborted tasks the runtime has not dropped yet) may still
    /// hold the log a moment longer, and so may a test's own clone of the
    /// node's `Cluster`. A restarted binary never sees this (its old
    /// process is gone); in one process, a restart or a test reading the
    /// WAL would find the directory locked.
    pub async fn wait_log_free(&self, i: usize) {
        assert!(self.nodes[i].node.is_none(), "node {i} is running");
        let lock = self.nodes[i].cfg.node.data_dir.join("raft-log/LOCK");
        let what = format!("node {i}'s raft log lock ({}) to be free", lock.display());
        wait_ok(&what, WAIT, || async {
            // flock(2): another open file description conflicts even in
            // this process; closing `f` releases the probe's own lock. No
            // file (a test wiped the log): nothing to wait for.
            match std::fs::File::open(&lock) {
                Ok(f) => f.try_lock().map_err(std::io::Error::from),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await;
    }

    /// Restart a stopped node on the same addresses and data dir.
    pub async fn restart(&mut self, i: usize) {
        self.wait_log_free(i).await;
        let cfg = self.nodes[i].cfg.clone();
        let tuning = self.nodes[i].tuning.clone();
        let http = bind_retry(&cfg.http.bind_addr, WAIT).await;
        let raft = bind_retry(&cfg.raft.bind_addr, WAIT).await;
        let node = Node::start_tuned(cfg, http, raft, tuning)
            .await
            .unwrap_or_else(|e| panic!("restart node {i}: {e}"));
        self.nodes[i].node = Some(node);
    }

    /// `method path` with `body` to node `i`, read fully.
    pub async fn req(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        send(self.client.request(m, self.url(i, path)).body(body)).await
    }

    /// PUT /v1/kv/{key} on node `i`.
    pub async fn put(&self, i: usize, key: &str, value: &str) -> Resp {
        self.req(i, "PUT", &format!("/v1/kv/{key}"), value.to_string())
            .await
    }

    /// GET /v1/kv/{key} → (status, body).
    pub async fn get(&self, i: usize, key: &str) -> (u16, String) {
        let r = self.req(i, "GET", &format!("/v1/kv/{key}"), "").await;
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    }

    /// Retry a write until it is acknowledged (2xx) or the deadline passes.
    pub async fn put_ok(&self, i: usize, key: &str, value: &str) {
        let what = format!("put {key} via node {i} to be acknowledged");
        wait_ok(&what, WAIT, || async {
            let r = self
                .client
                .put(self.url(i, &format!("/v1/kv/{key}")))
                .body(value.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!(
                    "{}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ))
            }
        })
        .await
    }

    /// `GET path` on node `i`: asserts a 200 and returns the JSON body
    /// (`/v1/status`, `/v1/status/digest`, `/v1/cluster`).
    pub async fn get_json(&self, i: usize, path: &str) -> serde_json::Value {
        let r = self.req(i, "GET", path, "").await;
        assert_eq!(r.status, 200, "GET {path} on node {i}: {}", r.text());
        r.json()
    }

    /// Wait until every running node reports the same applied index, key
    /// count and state digest on `GET /v1/status/digest`, and return that
    /// summary. Only a cluster that stops changing converges: call it once
    /// the writes of interest are acknowledged.
    pub async fn wait_converged(&self) -> serde_json::Value {
        let running: Vec<usize> = self.running().collect();
        wait_ok(&format!("nodes {running:?} to converge"), WAIT, || async {
            let mut first: Option<serde_json::Value> = None;
            for &i in &running {
                let d = self.get_json(i, "/v1/status/digest").await;
                match &first {
                    None => first = Some(d),
                    Some(f) if *f == d => {}
                    Some(f) => return Err(format!("node {}: {f} / node {i}: {d}", running[0])),
                }
            }
            first.ok_or_else(|| "no node is running".to_string())
        })
        .await
    }

    /// `POST /v1/cluster/transfer-leader {"to": <id of node to>}` through
    /// node `via`: asserts the 200 answer naming `to` as the leader.
    pub async fn transfer_leader(&self, via: usize, to: usize) {
        let to = self.id(to).to_string();
        let body = serde_json::json!({ "to": to }).to_string();
        let r = self
            .req(via, "POST", "/v1/cluster/transfer-leader", body)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), serde_json::json!({ "leader": to }));
    }

    /// Stop every running node (abruptly).
    pub async fn shutdown_all(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_some() {
                self.stop(i, false).await;
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let running: Vec<Node> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.node.take())
            .collect();
        if running.is_empty() {
            return;
        }
        // At once, without awaiting: no listener accepts from here on.
        for n in &running {
            n.abort();
        }
        // Then wait for Raft to stop, so nothing writes into the temp dir
        // while it is removed. Only a multi-threaded runtime can block here.
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| {
                    h.block_on(async {
                        for n in running {
                            let _ = tokio::time::timeout(DROP_STOP, n.shutdown(false)).await;
                        }
                    })
                });
            }
            _ => drop(running),
        }
    }
}
