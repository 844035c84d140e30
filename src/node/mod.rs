//! The composition root: open storage, build Raft, start the listeners,
//! bootstrap or join, and shut down in order.
//!
//! Start-up order: bind both listeners (so a port clash fails fast and
//! tests can bind port 0) → check the data dir belongs to this node id →
//! open the log and the state machine (verifying checksums) → start Raft →
//! refuse a data dir that lost its Raft state (empty `join_addr`) → bind
//! the Redis listener (`redis.bind_addr`, if set) → serve Raft RPCs →
//! serve Redis clients → serve HTTP clients → bootstrap (empty
//! `join_addr`, fresh data dir) or join in the background with backoff.
//!
//! Shutdown order ([`Node::shutdown`]): stop the join loop → if leader, hand
//! leadership to the most up-to-date live voter while still serving (so
//! requests arriving meanwhile are forwarded, not refused) → stop accepting
//! client connections (HTTP and Redis), end watch streams and drain
//! in-flight requests (bounded by `shutdown.drain_timeout_ms`) → stop
//! active expiry → stop Raft → stop the Raft listener → fsync the log
//! (graceful only).
//!
//! Every start-up failure is an [`Error::Startup`] naming what failed
//! (listener, data dir path, Raft settings), and leaves nothing running:
//! the refusals come before any task starts (Raft is shut down), and a
//! failed bootstrap stops the node it had started. The listeners the
//! caller handed over are closed when `start` returns an error.
//!
//! Not here: signal handling and process exit codes (the binary).
//!
//! Uses: `api`, `resp`, `cluster`, `raft`, `kv`, `config`, `error`, `id`,
//! `net`, `wire`, `auth`. Used by: the binary.

mod identity;
mod join;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::api::AppState;
use crate::api::Limits;
use crate::cluster::Cluster;
use crate::cluster::ServiceConfig;
use crate::config;
use crate::config::Config;
use crate::error::Error;
use crate::error::Result;
use crate::id::NodeId;
use crate::net::ServeOptions;
use crate::net::tls::Side;
use crate::net::tls::Tls;
use crate::raft;
use crate::raft::LeaderContact;

/// How long a peer-RPC TCP connect may take.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Header read bound on both listeners (slowloris defence); the default
/// of [`Tuning::header_timeout`].
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection cap on the Raft listener (peers only; generous).
const RAFT_MAX_CONNECTIONS: usize = 256;
/// How long a snapshot may take to send and install.
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 60_000;
/// Cap on log entries kept after a snapshot, so a briefly lagging follower
/// catches up from the log instead of a snapshot.
const MAX_LOG_KEPT_AFTER_SNAPSHOT: u64 = 1000;
/// Entries openraft puts in one AppendEntries at most (its default, set
/// explicitly because the Raft listener's body bound is derived from it).
const MAX_PAYLOAD_ENTRIES: u64 = 300;
/// Encoding overhead allowed per log entry (log id, stamp, framing).
const ENTRY_OVERHEAD: u64 = 1024;
/// Encoding overhead allowed per AppendEntries (vote, log ids).
const APPEND_OVERHEAD: u64 = 64 * 1024;

/// Least time a joining learner gets to catch up before promotion.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an abrupt stop waits for in-flight requests.
const ABRUPT_DRAIN: Duration = Duration::from_millis(300);

/// Built-in bounds that are not configuration keys. Production uses
/// [`Tuning::default`]; tests shorten them through [`Node::start_tuned`] to
/// reach the defences they bound within a test's time.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How long a client (or peer) may take to send a request's headers on
    /// either listener before the connection is closed without an answer
    /// (slowloris defence). Also closes keep-alive connections idle for
    /// that long, bounds a peer's message body (and each snapshot chunk)
    /// on the Raft listener (408), and the rest of a Redis command once
    /// its first byte arrived.
    pub header_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// A running node.
pub struct Node {
    pub id: NodeId,
    /// Actual bound client address.
    pub http_addr: SocketAddr,
    /// Actual bound Raft address.
    pub raft_addr: SocketAddr,
    pub cluster: Arc<Cluster>,
    http_stop: CancellationToken,
    raft_stop: CancellationToken,
    join_stop: CancellationToken,
    http_task: JoinHandle<std::io::Result<()>>,
    raft_task: JoinHandle<std::io::Result<()>>,
    join_task: Option<JoinHandle<Result<()>>>,
    leader_log: JoinHandle<()>,
    /// Stops the expiry loop and the snapshot policy.
    background_stop: CancellationToken,
    expiry_task: JoinHandle<()>,
    compaction_task: JoinHandle<()>,
    /// Actual bound Redis address (`None`: `redis.bind_addr` is empty).
    pub redis_addr: Option<SocketAddr>,
    redis_stop: CancellationToken,
    redis_task: Option<JoinHandle<std::io::Result<()>>>,
    tls: Option<Arc<Tls>>,
    tls_watch: CancellationToken,
    tokens: Option<Arc<crate::auth::Tokens>>,
}

/// Bind both listeners from the config.
pub async fn bind(cfg: &Config) -> Result<(TcpListener, TcpListener)> {
    let http = TcpListener::bind(&cfg.http.bind_addr).await.map_err(|e| {
        Error::Startup(format!(
            "cannot listen on http.bind_addr {}: {e}",
            cfg.http.bind_addr
        ))
    })?;
    let raft = TcpListener::bind(&cfg.raft.bind_addr).await.map_err(|e| {
        Error::Startup(format!(
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

/// The TLS files of `tls.*`, read (None: TLS off). The node id must be a
/// name a certificate can carry, and this node's certificate must carry
/// it: peers check.
fn load_tls(cfg: &Config, id: &NodeId) -> Result<Option<Arc<Tls>>> {
    if !cfg.tls.enabled() {
        return Ok(None);
    }
    let t = &cfg.tls;
    let tls = Tls::load(crate::net::tls::TlsFiles {
        cert: t.cert_file.clone(),
        key: t.key_file.clone(),
        ca: t.ca_file.clone(),
        client_auth: match t.client_auth {
            config::ClientAuth::None => crate::net::tls::ClientAuth::None,
            config::ClientAuth::Optional => crate::net::tls::ClientAuth::Optional,
            config::ClientAuth::Required => crate::net::tls::ClientAuth::Required,
        },
    })
    .map_err(|e| Error::Startup(e.to_string()))?;
    if crate::net::tls::node_name(&id.0).is_none() {
        return Err(Error::Startup(format!(
            "with TLS the node id must be a DNS name, an IP address or host:port (a certificate names it); {:?} is none",
            id.0
        )));
    }
    if !tls.own_certificate_names(&id.0) {
        return Err(Error::Startup(format!(
            "tls.cert_file {} does not name node id {:?} (as a DNS or IP subject alternative name): peers would refuse it",
            t.cert_file.display(),
            id.0
        )));
    }
    tracing::info!(node_id = %id, client_auth = ?t.client_auth, "TLS on the HTTP, Raft and Redis listeners");
    Ok(Some(tls))
}

/// What an operator should fix, said loudly at start and in `/health`.
fn security_warnings(
    has_secret: bool,
    has_auth: bool,
    has_tls: bool,
    raft_bound: SocketAddr,
    http_bound: SocketAddr,
) -> Vec<String> {
    let mut w = Vec::new();
    let all_loopback = http_bound.ip().is_loopback() && raft_bound.ip().is_loopback();
    if !has_tls && !all_loopback {
        w.push(format!(
            "no TLS (tls.cert_file) and a listener is not on loopback (HTTP {http_bound}, Raft {raft_bound}): data, tokens and the cluster secret cross the network in clear text"
        ));
    }
    if has_auth && !has_secret {
        w.push(
            "auth is enabled but no cluster secret is set: joining nodes authenticate with the secret, so no node can join this cluster (set cluster.secret)".to_string(),
        );
    }
    if !has_auth && !http_bound.ip().is_loopback() {
        w.push(format!(
            "auth is disabled (auth.enabled) and the HTTP API is on {http_bound}, not loopback: anyone who can reach it can read, write and change membership"
        ));
    }
    if !has_secret && !raft_bound.ip().is_loopback() {
        w.push(format!(
            "no cluster secret (cluster.secret) and the Raft listener is on {raft_bound}, not loopback: anyone who can reach it can act as a peer (append, vote, install snapshots, join); set cluster.secret or firewall the Raft port"
        ));
    }
    w
}

/// The largest AppendEntries body a legitimate leader sends: entries per
/// append × the largest entry a client can cause. An entry's command comes
/// from one client request, whose body is bounded by
/// [`Limits::max_body_bytes`] (a transaction decodes to no more than its
/// JSON body; a plain write to less), plus the eviction victims the leader
/// may attach (up to [`crate::cluster::MAX_EVICTION_VICTIMS`] keys).
/// Membership entries are far smaller.
fn max_append_bytes(limits: &Limits) -> usize {
    let victims = crate::cluster::MAX_EVICTION_VICTIMS as u64 * (limits.max_key_bytes as u64 + 16);
    let entry = limits.max_body_bytes() as u64 + victims + ENTRY_OVERHEAD;
    let total = MAX_PAYLOAD_ENTRIES
        .saturating_mul(entry)
        .saturating_add(APPEND_OVERHEAD);
    usize::try_from(total).unwrap_or(usize::MAX)
}

fn raft_config(cfg: &config::RaftConfig) -> Result<openraft::Config> {
    let c = openraft::Config {
        cluster_name: "dcache".into(),
        heartbeat_interval: cfg.heartbeat_interval_ms,
        election_timeout_min: cfg.election_timeout_min_ms,
        election_timeout_max: cfg.election_timeout_max_ms,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        // raft::compaction decides (entries and bytes against the state's
        // size) and asks openraft to build.
        snapshot_policy: SnapshotPolicy::Never,
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
        .map_err(|e| Error::Startup(format!("invalid raft settings: {e}")))
}

impl Node {
    /// Start a node on already-bound listeners.
    pub async fn start(cfg: Config, http: TcpListener, raft_listener: TcpListener) -> Result<Node> {
        Self::start_tuned(cfg, http, raft_listener, Tuning::default()).await
    }

    /// [`Node::start`] with non-default built-in bounds (tests).
    pub async fn start_tuned(
        cfg: Config,
        http: TcpListener,
        raft_listener: TcpListener,
        tuning: Tuning,
    ) -> Result<Node> {
        let http_bound = http.local_addr()?;
        let raft_bound = raft_listener.local_addr()?;
        let http_adv = advertise(&cfg.http.advertise_addr, &cfg.http.bind_addr, http_bound);
        let raft_adv = advertise(&cfg.raft.advertise_addr, &cfg.raft.bind_addr, raft_bound);
        let id = NodeId(if cfg.node.id.is_empty() {
            raft_adv.clone()
        } else {
            cfg.node.id.clone()
        });
        let secret = cfg
            .cluster_secret()
            .map_err(|e| Error::Startup(e.to_string()))?
            .map(|s| crate::net::ClusterSecret::new(s.expose()));
        let tokens = if cfg.auth.enabled {
            let t = crate::auth::Tokens::load(&cfg.auth.tokens_file)
                .map_err(|e| Error::Startup(format!("auth.tokens_file: {e}")))?;
            tracing::info!(tokens = t.len(), "bearer tokens required on the client API");
            Some(Arc::new(t))
        } else {
            None
        };
        let tokens_kept = tokens.clone();
        let tls = load_tls(&cfg, &id)?;
        let warnings = security_warnings(
            secret.is_some(),
            tokens.is_some(),
            tls.is_some(),
            raft_bound,
            http_bound,
        );
        for w in &warnings {
            tracing::warn!(node_id = %id, "SECURITY: {w}");
        }
        let data_dir = cfg.node.data_dir.clone();
        let found = identity::check(&data_dir, &id)?;
        let ran_before = found.ran_before;
        let log_dir = data_dir.join("raft-log");
        let log = raft::log_store::LogStore::open(
            &log_dir,
            Some(Duration::from_micros(cfg.raft.log_flush_wait_us)),
        )
        .map_err(|e| Error::Startup(format!("cannot open the raft log: {e}")))?;
        let snap_dir = data_dir.join("snapshots");
        let watch = crate::cluster::WatchHub::new(cfg.watch.clone());
        let sm = raft::state_machine::StateMachine::open_with_sink(&snap_dir, watch.clone())
            .map_err(|e| {
                Error::Startup(format!(
                    "cannot open the snapshots in {}: {e}",
                    snap_dir.display()
                ))
            })?;
        let reader = sm.reader();
        let network = raft::network::PeerNetwork::new(
            id.clone(),
            local_ip(raft_bound),
            PEER_CONNECT_TIMEOUT,
            Duration::from_millis(cfg.raft.rpc_timeout_ms),
            secret.clone(),
            tls.clone(),
        );
        let raft_cfg = Arc::new(raft_config(&cfg.raft)?);
        let raft = raft::Raft::new(id.clone(), raft_cfg, network.clone(), log.clone(), sm)
            .await
            .map_err(|e| Error::Startup(format!("cannot start raft: {e}")))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| Error::Startup(format!("cannot read the raft state: {e}")))?;
        // A dir that ran a node but holds no Raft state lost it: this node
        // is not the member the cluster knows, whatever its id says.
        let incarnation = if ran_before && !initialized {
            let n = identity::renew(&data_dir, &id)?;
            tracing::warn!(node_id = %id, "the data dir holds no Raft state: new incarnation {n}");
            n
        } else {
            found.incarnation
        };
        // Refusals come before any task starts, so a refused start leaves
        // nothing running and its listeners closed (the caller may retry
        // on the same ports).
        if cfg.cluster.join_addr.is_empty() && !initialized && ran_before {
            // The dir ran a node before but its Raft state is gone (wiped
            // or lost): bootstrapping would found a second, empty cluster
            // next to the one this node belonged to.
            let _ = raft.shutdown().await;
            return Err(Error::Startup(format!(
                "data dir {} has run node {:?} before but holds no Raft state; set cluster.join_addr to rejoin its cluster, or remove {} to bootstrap a new one",
                data_dir.display(),
                id.0,
                data_dir.join(identity::IDENTITY_FILE).display()
            )));
        }
        let redis_listener = if cfg.redis.bind_addr.is_empty() {
            None
        } else {
            match TcpListener::bind(&cfg.redis.bind_addr)
                .await
                .and_then(|l| Ok((l.local_addr()?, l)))
            {
                Ok(bound) => Some(bound),
                Err(e) => {
                    let _ = raft.shutdown().await;
                    return Err(Error::Startup(format!(
                        "cannot listen on redis.bind_addr {}: {e}",
                        cfg.redis.bind_addr
                    )));
                }
            }
        };

        let request_timeout = Duration::from_millis(cfg.http.request_timeout_ms);
        let service_cfg = ServiceConfig {
            read_policy: cfg.raft.read_policy,
            cache: cfg.cache.clone(),
            catch_up_timeout: request_timeout.max(CATCH_UP_TIMEOUT),
            election_timeout: Duration::from_millis(cfg.raft.election_timeout_max_ms),
            secret: secret.clone(),
            peers: network,
            tls: tls.clone(),
        };
        let contact = Arc::new(LeaderContact::default());
        let background_stop = CancellationToken::new();
        let compaction_task = tokio::spawn(raft::compaction::run(
            raft.clone(),
            reader.clone(),
            cfg.raft.snapshot_threshold,
            background_stop.clone(),
        ));
        let cluster = Arc::new(Cluster::new(
            raft.clone(),
            reader,
            log,
            id.clone(),
            service_cfg,
            contact.clone(),
            watch,
        ));

        let leader_log = tokio::spawn(cluster.clone().log_leader_changes());
        let expiry_task = tokio::spawn(cluster.clone().run_expiry(background_stop.clone()));
        let raft_stop = CancellationToken::new();
        let info = raft::rpc::NodeInfo {
            id: id.clone(),
            raft_addr: raft_adv.clone(),
            http_addr: http_adv.clone(),
            incarnation,
            empty_log: false,
        };
        let limits = Limits {
            max_key_bytes: cfg.http.max_key_bytes,
            max_value_bytes: cfg.http.max_value_bytes,
            request_timeout,
        };
        let peer_limits = raft::rpc::PeerLimits {
            max_append_bytes: max_append_bytes(&limits),
            body_timeout: tuning.header_timeout,
        };
        let peer_stream = Arc::new(raft::stream::Server::new(
            raft.clone(),
            &info,
            contact.clone(),
            secret.clone(),
            peer_limits,
            tls.is_some(),
        ));
        let raft_router = raft::rpc::router(
            raft.clone(),
            info,
            contact,
            snap_dir.clone(),
            secret.clone(),
            peer_limits,
            tls.is_some(),
            cluster.clone(),
        );
        // One listener, two protocols: the peer stream (AppendEntries) and
        // HTTP (every other peer RPC); `raft::stream` tells them apart.
        let raft_task = tokio::spawn(crate::net::serve_with(
            raft_listener,
            raft_stop.clone(),
            ServeOptions {
                name: "raft",
                max_connections: RAFT_MAX_CONNECTIONS,
                max_connections_per_ip: RAFT_MAX_CONNECTIONS,
                header_timeout: tuning.header_timeout,
                drain_timeout: Duration::from_secs(1),
                tls: tls.as_ref().map(|t| t.acceptor(Side::Peers)),
            },
            move |stream, peer, activity, shutdown| {
                peer_stream.clone().serve_connection(
                    raft_router.clone(),
                    stream,
                    peer,
                    activity,
                    shutdown,
                )
            },
        ));

        let redis_stop = CancellationToken::new();
        let mut redis_addr = None;
        let mut redis_task = None;
        if let Some((bound, listener)) = redis_listener {
            redis_addr = Some(bound);
            cluster.set_redis_addr(advertise("", &cfg.redis.bind_addr, bound));
            let server = crate::resp::Server::new(
                cluster.clone(),
                crate::resp::RedisLimits {
                    max_key_bytes: limits.max_key_bytes,
                    max_value_bytes: limits.max_value_bytes,
                    request_timeout,
                    command_timeout: tuning.header_timeout,
                },
                tokens.clone(),
            );
            redis_task = Some(tokio::spawn(crate::resp::serve(
                listener,
                server,
                redis_stop.clone(),
                ServeOptions {
                    name: "redis",
                    max_connections: cfg.http.max_connections,
                    max_connections_per_ip: cfg.http.max_connections_per_ip,
                    header_timeout: tuning.header_timeout,
                    drain_timeout: Duration::from_millis(cfg.shutdown.drain_timeout_ms),
                    tls: tls.as_ref().map(|t| t.acceptor(Side::Clients)),
                },
            )));
        }
        let protection = api::Protection {
            cluster_secret: secret.clone(),
            warnings,
            rate_limit: api::guard::RateLimit::new(
                cfg.http.rate_limit_per_ip,
                cfg.http.rate_limit_burst,
            )
            .map(Arc::new),
            tokens,
            protect_probes: cfg.auth.protect_probes,
        };
        let state = AppState::new(cluster.clone(), limits, protection);
        let http_stop = CancellationToken::new();
        let http_task = tokio::spawn(crate::net::serve(
            http,
            api::router(state),
            http_stop.clone(),
            ServeOptions {
                name: "http",
                max_connections: cfg.http.max_connections,
                max_connections_per_ip: cfg.http.max_connections_per_ip,
                header_timeout: tuning.header_timeout,
                drain_timeout: Duration::from_millis(cfg.shutdown.drain_timeout_ms),
                tls: tls.as_ref().map(|t| t.acceptor(Side::Clients)),
            },
        ));
        let tls_watch = CancellationToken::new();
        if let Some(t) = &tls
            && cfg.tls.reload_check_ms > 0
        {
            tokio::spawn(t.clone().watch_files(
                Duration::from_millis(cfg.tls.reload_check_ms),
                tls_watch.clone(),
            ));
        }

        let me = raft::Node {
            raft_addr: raft_adv.clone(),
            http_addr: http_adv.clone(),
            incarnation,
        };
        let join_stop = CancellationToken::new();
        let mut join_task = None;
        let mut bootstrap = None;
        if cfg.cluster.join_addr.is_empty() {
            if !initialized {
                bootstrap = Some(me);
            }
        } else {
            join_task = Some(tokio::spawn(join::run(
                cluster.clone(),
                cfg.cluster.join_addr.clone(),
                me,
                Duration::from_millis(cfg.cluster.join_retry_max_ms),
                secret.clone(),
                join_stop.clone(),
            )));
        }
        let node = Node {
            id: id.clone(),
            http_addr: http_bound,
            raft_addr: raft_bound,
            cluster,
            http_stop,
            raft_stop,
            join_stop,
            http_task,
            raft_task,
            join_task,
            leader_log,
            background_stop,
            expiry_task,
            compaction_task,
            redis_addr,
            redis_stop,
            redis_task,
            tls,
            tls_watch,
            tokens: tokens_kept,
        };
        if let Some(me) = bootstrap {
            tracing::info!(node_id = %id, "bootstrapping a new single-node cluster");
            if let Err(e) = raft.initialize(BTreeMap::from([(id.clone(), me)])).await {
                // Stop what started, as for any refused start.
                let _ = node.shutdown(false).await;
                return Err(Error::Startup(format!("cannot bootstrap: {e}")));
            }
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
        Ok(node)
    }

    /// The node's TLS material (None: TLS off); `Tls::reload` reads the
    /// files again (SIGHUP): new connections use the new certificate, open
    /// ones go on.
    pub fn tls(&self) -> Option<Arc<Tls>> {
        self.tls.clone()
    }

    /// The bearer tokens the node accepts (None: `auth.enabled` is off);
    /// `Tokens::reload` reads `auth.tokens_file` again (SIGHUP): a token
    /// whose line was removed is refused from its next request on.
    pub fn tokens(&self) -> Option<Arc<crate::auth::Tokens>> {
        self.tokens.clone()
    }

    /// Resolves if a background task fails for good (today: the join loop
    /// was refused permanently); the node should then stop and the process
    /// exit non-zero. Never resolves otherwise.
    pub async fn failed(&mut self) -> Error {
        if let Some(task) = &mut self.join_task {
            let res = task.await;
            self.join_task = None;
            match res {
                Ok(Err(e)) => return e,
                Ok(Ok(())) => {}
                Err(e) if e.is_panic() => {
                    return Error::Startup(format!("the join task panicked: {e}"));
                }
                Err(_) => {}
            }
        }
        std::future::pending().await
    }

    /// Stop at once, synchronously, for owners that cannot await (a test
    /// fixture's `Drop` while a test panics): cancel the join loop and both
    /// listeners and abort their tasks, with no handover, drain or fsync
    /// (as a crash would). The listeners close and the connections drop as
    /// soon as the runtime drops the aborted tasks (at the latest when it
    /// shuts down); Raft stops once its last handles, held by those tasks
    /// and this `Node`, are dropped. [`Node::shutdown`] may still be
    /// awaited afterwards to wait for all of it.
    pub fn abort(&self) {
        self.tls_watch.cancel();
        self.join_stop.cancel();
        self.http_stop.cancel();
        self.redis_stop.cancel();
        self.cluster.watch().close();
        self.raft_stop.cancel();
        self.http_task.abort();
        if let Some(t) = &self.redis_task {
            t.abort();
        }
        self.raft_task.abort();
        if let Some(t) = &self.join_task {
            t.abort();
        }
    }

    /// Stop the node. `graceful`: hand over leadership and drain requests
    /// first; otherwise stop at once (tests use this to simulate a crash of
    /// the process's services; the data dir is left as a crash would leave
    /// it, minus unflushed buffers).
    pub async fn shutdown(self, graceful: bool) -> Result<()> {
        tracing::info!(node_id = %self.id, graceful, "shutting down");
        self.tls_watch.cancel();
        self.join_stop.cancel();
        if graceful {
            self.cluster.handover().await;
        }
        self.http_stop.cancel();
        self.redis_stop.cancel();
        // Watch streams never finish on their own: end them (each with a
        // final event) so the drain does not wait for them.
        self.cluster.watch().close();
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
        if let Some(mut t) = self.redis_task {
            if graceful {
                let _ = t.await;
            } else if tokio::time::timeout(ABRUPT_DRAIN, &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
        if let Some(t) = self.join_task {
            t.abort();
        }
        self.background_stop.cancel();
        let _ = self.expiry_task.await;
        let _ = self.compaction_task.await;
        self.cluster.shutdown_raft().await;
        self.leader_log.abort();
        self.raft_stop.cancel();
        let _ = self.raft_task.await;
        if graceful {
            self.cluster.sync_log().await?;
        }
        tracing::info!(node_id = %self.id, "stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_bound_follows_the_value_cap() {
        let limits = |v: usize| Limits {
            max_key_bytes: 4096,
            max_value_bytes: v,
            request_timeout: Duration::from_secs(1),
        };
        let small = max_append_bytes(&limits(4096));
        let big = max_append_bytes(&limits(1 << 20));
        // 300 entries of the largest request body each, at least.
        assert!(small >= 300 * limits(4096).max_body_bytes());
        assert!(big >= 300 * limits(1 << 20).max_body_bytes());
        assert!(small < 2 << 30 && small < big, "{small} {big}");
        // Never overflows, even at the bounds.
        let _ = max_append_bytes(&limits(config::bounds::MAX_VALUE_BYTES));
    }
}
