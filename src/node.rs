//! The composition root: open storage, build Raft, start the listeners,
//! bootstrap or join, and shut down in order.
//!
//! Start-up order: bind both listeners (so a port clash fails fast and
//! tests can bind port 0) → check the data dir belongs to this node id →
//! open the log and the state machine (verifying checksums) → start Raft →
//! serve Raft RPCs → serve clients → bootstrap (empty `join_addr`, fresh
//! data dir) or join in the background with backoff.
//!
//! Shutdown order ([`Node::shutdown`]): stop accepting client connections →
//! if leader, hand leadership to the most up-to-date voter → drain in-flight
//! requests (bounded) → stop Raft → stop the Raft listener → fsync the log.
//!
//! Not here: signal handling and process exit codes (`main.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::api::AppState;
use crate::api::Limits;
use crate::api::ServeOptions;
use crate::cluster::Cluster;
use crate::cluster::ServiceConfig;
use crate::config;
use crate::config::Config;
use crate::error::Error;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::raft;
use crate::raft::NodeId;
use crate::raft::log_store::LogStore;
use crate::raft::network::PeerNetwork;
use crate::raft::rpc;
use crate::raft::state_machine::StateMachine;

/// How long a peer-RPC TCP connect may take.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Header read bound on both listeners (slowloris defence).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection cap on the Raft listener (peers only; generous).
const RAFT_MAX_CONNECTIONS: usize = 256;
/// How long a snapshot may take to send and install.
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 60_000;
/// Cap on log entries kept after a snapshot, so a briefly lagging follower
/// catches up from the log instead of a snapshot.
const MAX_LOG_KEPT_AFTER_SNAPSHOT: u64 = 1000;
/// How long an abrupt stop waits for in-flight requests.
const ABRUPT_DRAIN: Duration = Duration::from_millis(300);
/// Name of the file that binds a data dir to a node id.
const IDENTITY_FILE: &str = "node.json";

/// A running node.
pub struct Node {
    pub id: NodeId,
    /// Actual bound client address.
    pub http_addr: SocketAddr,
    /// Actual bound Raft address.
    pub raft_addr: SocketAddr,
    pub cluster: Arc<Cluster>,
    log: LogStore,
    http_stop: CancellationToken,
    raft_stop: CancellationToken,
    join_stop: CancellationToken,
    http_task: JoinHandle<std::io::Result<()>>,
    raft_task: JoinHandle<std::io::Result<()>>,
    join_task: Option<JoinHandle<()>>,
    transfer_timeout: Duration,
}

/// Bind both listeners from the config.
pub async fn bind(cfg: &Config) -> Result<(TcpListener, TcpListener)> {
    let http = TcpListener::bind(&cfg.http.bind_addr).await.map_err(|e| {
        Error::InvalidInput(format!(
            "cannot listen on http.bind_addr {}: {e}",
            cfg.http.bind_addr
        ))
    })?;
    let raft = TcpListener::bind(&cfg.raft.bind_addr).await.map_err(|e| {
        Error::InvalidInput(format!(
            "cannot listen on raft.bind_addr {}: {e}",
            cfg.raft.bind_addr
        ))
    })?;
    Ok((http, raft))
}

/// The address peers and clients should use: the configured advertise
/// address, else the bind address as written, unless its port is 0 (tests),
/// then the actual bound address.
fn advertise(configured: &str, bind: &str, bound: SocketAddr) -> String {
    if !configured.is_empty() {
        configured.to_string()
    } else if bind.ends_with(":0") {
        bound.to_string()
    } else {
        bind.to_string()
    }
}

/// Bind outgoing peer connections to the Raft bind IP when it is a specific
/// address (so per-address fault injection cuts exactly this node).
fn local_ip(bound: SocketAddr) -> Option<IpAddr> {
    let ip = bound.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Refuse to start on a data dir that belongs to another node id.
fn check_identity(dir: &Path, id: &NodeId) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot create node.data_dir {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::InvalidInput(format!("{} is damaged: {e}", path.display())))?;
            let found = v.get("id").and_then(|x| x.as_str()).unwrap_or_default();
            if found != id.0 {
                return Err(Error::InvalidInput(format!(
                    "data dir {} belongs to node {found:?}, not {:?}; use that node id or another data dir",
                    dir.display(),
                    id.0
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, json!({ "id": id.0 }).to_string())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        }
        Err(e) => Err(Error::Storage(e)),
    }
}

fn raft_config(cfg: &config::RaftConfig) -> Result<openraft::Config> {
    let c = openraft::Config {
        cluster_name: "dcache".into(),
        heartbeat_interval: cfg.heartbeat_interval_ms,
        election_timeout_min: cfg.election_timeout_min_ms,
        election_timeout_max: cfg.election_timeout_max_ms,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_threshold),
        max_in_snapshot_log_to_keep: cfg.snapshot_threshold.min(MAX_LOG_KEPT_AFTER_SNAPSHOT),
        replication_lag_threshold: cfg.snapshot_threshold.saturating_mul(2),
        enable_pre_vote: Some(true),
        // A restarted leader must win a new election instead of resuming
        // from its saved vote: our state machine is rebuilt in memory and the
        // commit index is not fsynced on its own, so a restored leader could
        // compute a read index below writes it acknowledged before the
        // crash and serve stale reads (found by the fault suite: kill -9 of
        // the whole cluster; openraft documents this condition).
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    c.validate()
        .map_err(|e| Error::InvalidInput(format!("invalid raft settings: {e}")))
}

impl Node {
    /// Start a node on already-bound listeners.
    pub async fn start(cfg: Config, http: TcpListener, raft_listener: TcpListener) -> Result<Node> {
        let http_bound = http.local_addr()?;
        let raft_bound = raft_listener.local_addr()?;
        let http_adv = advertise(&cfg.http.advertise_addr, &cfg.http.bind_addr, http_bound);
        let raft_adv = advertise(&cfg.raft.advertise_addr, &cfg.raft.bind_addr, raft_bound);
        let id = NodeId(if cfg.node.id.is_empty() {
            raft_adv.clone()
        } else {
            cfg.node.id.clone()
        });
        let data_dir = cfg.node.data_dir.clone();
        check_identity(&data_dir, &id)?;
        let log = LogStore::open(
            &data_dir.join("raft-log"),
            Some(Duration::from_micros(cfg.raft.log_flush_wait_us)),
        )?;
        let sm = StateMachine::open(&data_dir.join("snapshots"))?;
        let reader = sm.reader();
        let network = PeerNetwork::new(
            local_ip(raft_bound),
            PEER_CONNECT_TIMEOUT,
            Duration::from_millis(cfg.raft.rpc_timeout_ms),
        );
        let raft_cfg = Arc::new(raft_config(&cfg.raft)?);
        let raft = raft::Raft::new(id.clone(), raft_cfg, network, log.clone(), sm)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot start raft: {e}")))?;

        let request_timeout = Duration::from_millis(cfg.http.request_timeout_ms);
        let transfer_timeout = Duration::from_millis(cfg.raft.election_timeout_max_ms * 2);
        let service_cfg = ServiceConfig {
            request_timeout,
            read_policy: match cfg.raft.read_policy {
                config::ReadPolicy::ReadIndex => openraft::ReadPolicy::ReadIndex,
                config::ReadPolicy::Lease => openraft::ReadPolicy::LeaseRead,
            },
            catch_up_timeout: request_timeout.max(Duration::from_secs(60)),
            transfer_timeout,
            quorum_timeout: Duration::from_millis(cfg.raft.election_timeout_max_ms),
        };
        let contact = Arc::new(rpc::LeaderContact::default());
        let cluster = Arc::new(Cluster::new(
            raft.clone(),
            reader,
            log.clone(),
            id.clone(),
            service_cfg,
            contact.clone(),
        ));

        let drain_timeout = Duration::from_millis(cfg.shutdown.drain_timeout_ms);
        let raft_stop = CancellationToken::new();
        let info = rpc::NodeInfo {
            id: id.clone(),
            raft_addr: raft_adv.clone(),
            http_addr: http_adv.clone(),
        };
        let raft_task = tokio::spawn(api::serve(
            raft_listener,
            rpc::router(raft.clone(), info, contact),
            raft_stop.clone(),
            ServeOptions {
                name: "raft",
                max_connections: RAFT_MAX_CONNECTIONS,
                header_timeout: HEADER_TIMEOUT,
                drain_timeout: Duration::from_secs(1),
            },
        ));

        let limits = Limits {
            max_key_bytes: cfg.http.max_key_bytes,
            max_value_bytes: cfg.http.max_value_bytes,
            request_timeout,
        };
        let state = AppState::new(cluster.clone(), limits, Arc::new(Metrics::new()));
        let http_stop = CancellationToken::new();
        let http_task = tokio::spawn(api::serve(
            http,
            api::router(state),
            http_stop.clone(),
            ServeOptions {
                name: "http",
                max_connections: cfg.http.max_connections,
                header_timeout: HEADER_TIMEOUT,
                drain_timeout,
            },
        ));

        let me = raft::Node {
            raft_addr: raft_adv.clone(),
            http_addr: http_adv.clone(),
        };
        let join_stop = CancellationToken::new();
        let mut join_task = None;
        if cfg.cluster.join_addr.is_empty() {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            if !initialized {
                tracing::info!(node_id = %id, "bootstrapping a new single-node cluster");
                raft.initialize(BTreeMap::from([(id.clone(), me)]))
                    .await
                    .map_err(|e| Error::Unavailable(format!("cannot bootstrap: {e}")))?;
            }
        } else {
            join_task = Some(tokio::spawn(join_loop(
                cluster.clone(),
                cfg.cluster.join_addr.clone(),
                me,
                Duration::from_millis(cfg.cluster.join_retry_max_ms),
                join_stop.clone(),
            )));
        }
        tracing::info!(
            node_id = %id,
            http = %http_bound,
            raft = %raft_bound,
            http_advertise = %http_adv,
            raft_advertise = %raft_adv,
            data_dir = %data_dir.display(),
            "node started"
        );
        Ok(Node {
            id,
            http_addr: http_bound,
            raft_addr: raft_bound,
            cluster,
            log,
            http_stop,
            raft_stop,
            join_stop,
            http_task,
            raft_task,
            join_task,
            transfer_timeout,
        })
    }

    /// Stop the node. `graceful`: hand over leadership and drain requests
    /// first; otherwise stop at once (tests use this to simulate a crash of
    /// the process's services; the data dir is left as a crash would leave
    /// it, minus unflushed buffers).
    pub async fn shutdown(self, graceful: bool) -> Result<()> {
        tracing::info!(node_id = %self.id, graceful, "shutting down");
        self.join_stop.cancel();
        // Hand over leadership while still serving, so requests arriving
        // meanwhile are forwarded to the new leader rather than refused.
        if graceful && self.cluster.is_leader() && self.cluster.best_transfer_target().is_some() {
            match tokio::time::timeout(self.transfer_timeout, self.cluster.transfer_leader(None))
                .await
            {
                Ok(Ok(new)) => {
                    tracing::info!(new_leader = ?new.map(|n| n.0), "leadership handed over")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "leadership transfer failed"),
                Err(_) => tracing::warn!("leadership transfer timed out"),
            }
        }
        self.http_stop.cancel();
        // Graceful: wait for the drain (bounded by drain_timeout inside).
        // Abrupt: idle connections close at once; give in-flight ones a
        // moment, then drop them.
        let mut http_task = self.http_task;
        if graceful {
            let _ = http_task.await;
        } else if tokio::time::timeout(ABRUPT_DRAIN, &mut http_task)
            .await
            .is_err()
        {
            http_task.abort();
            let _ = http_task.await;
        }
        if let Some(t) = self.join_task {
            t.abort();
        }
        if let Err(e) = self.cluster.raft().shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
        self.raft_stop.cancel();
        let _ = self.raft_task.await;
        if graceful {
            self.log.sync().await?;
        }
        tracing::info!(node_id = %self.id, "stopped");
        Ok(())
    }
}

/// Ask `join_addr` (any member) to add this node, with capped exponential
/// backoff, until it succeeds, the node finds itself a voter, or shutdown.
async fn join_loop(
    cluster: Arc<Cluster>,
    join_addr: String,
    me: raft::Node,
    max_backoff: Duration,
    stop: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(90))
        .no_proxy()
        .build()
        .expect("build HTTP client");
    let id = cluster.id().clone();
    let url = format!("http://{join_addr}/join");
    let mut delay = Duration::from_millis(100);
    loop {
        let m = cluster.metrics();
        let membership = m.membership_config.membership();
        let is_voter = membership.voter_ids().any(|v| v == id);
        if is_voter && membership.get_node(&id) == Some(&me) {
            tracing::info!(node_id = %id, "already a voter; not joining");
            return;
        }
        let attempt = client
            .post(&url)
            .header("content-type", "application/json")
            .body(json!({ "id": id.0, "addr": me.raft_addr }).to_string())
            .send();
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = attempt => r,
        };
        match outcome {
            Ok(r) if r.status().is_success() => {
                tracing::info!(node_id = %id, via = %join_addr, "joined the cluster");
                return;
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tracing::warn!(via = %join_addr, %status, body = %body.trim(), retry_in = ?delay, "join refused");
            }
            Err(e) => {
                tracing::warn!(via = %join_addr, error = %e, retry_in = ?delay, "join request failed")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(max_backoff);
    }
}
