//! The cluster service: the one door to Raft. The HTTP API (and later RESP)
//! calls it to write, read at a consistency level, change membership and
//! observe the node; `node` calls it to shut Raft down. It owns the
//! translation from openraft's errors to [`crate::error::Error`].
//!
//! Invariants:
//! - Writes go through Raft only; reads touch the state machine only through
//!   [`StateReader`]. Nothing here holds the state machine's lock across an
//!   await.
//! - Every operation takes a deadline and returns by it: leadership checks,
//!   waits for a leader, ReadIndex rounds and proposals all share it.
//! - [`Error::NotLeader`] and [`Error::NoLeader`] are returned only when the
//!   request was not proposed, so the caller may forward or retry it safely.
//!   `NotLeader` always names a leader that reached this node within an
//!   election timeout.
//! - A leader that has not heard from a quorum within its lease confirms
//!   leadership with one bounded heartbeat round before proposing, and
//!   answers `NoLeader` if that fails (CheckQuorum), instead of proposing
//!   entries that cannot commit.
//! - A linearizable read confirms leadership (ReadIndex, or the lease when
//!   configured) and waits until the local state machine has applied up to
//!   the read index before reading. A follower gets the read index from the
//!   leader (`follower_read`) and reads locally, or forwards the read.
//!
//! Not here: forwarding a request as it came to the leader (the API layer
//! does it, because it holds the original request; this module hands the
//! leader a follower's writes, `forward`); openraft types in the public surface (they
//! stay in `raft` and inside this module).
//!
//! Uses: `raft`, `kv`, `id`, `error`, `net`, `config`, `wire` (header names). Used by: `api`, `resp`, `node`.

mod evict;
/// Victims one write may name at most (bounds a log entry's size).
pub use evict::MAX_VICTIMS as MAX_EVICTION_VICTIMS;
mod expiry;
mod follower_read;
mod forward;
mod membership;
mod scan;
mod status;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ChangeMembershipError;
use openraft::errors::ClientWriteError;
use openraft::errors::LinearizableReadError;
use openraft::errors::RaftError;
use tokio::time::Instant;

pub use self::evict::Evictor;
pub use self::forward::Forward;
pub use self::scan::Scan;
pub use self::scan::ScanOutcome;
pub use self::status::CacheStatus;
pub use self::status::Member;
pub use self::status::Readiness;
pub use self::status::Role;
pub use self::status::Stats;
pub use self::status::Status;
pub use self::watch::WatchHub;
use crate::config::ReadPolicy;
use crate::error::Error;
use crate::error::Leader;
use crate::error::Result;
use crate::id::NodeId;
use crate::kv;
use crate::kv::Entry;
use crate::raft::LeaderContact;
use crate::raft::Raft;
use crate::raft::log_store::LogStore;
use crate::raft::network::PeerNetwork;
use crate::raft::state_machine::StateReader;
pub use crate::raft::state_machine::StateSummary;
use crate::raft::typ;

/// Consistency level of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (default).
    Linearizable,
    /// Whatever this node has applied; may lag the leader.
    Stale,
}

/// Result of a write that committed and was applied.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub response: kv::Response,
    /// Log index of the write.
    pub raft_index: u64,
}

/// Result of a read.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub entry: Option<Entry>,
    /// Applied index of the state the read observed.
    pub raft_index: u64,
    /// The serving node's time for the read (its stamp: never below the
    /// replicated clock), for a key's remaining TTL.
    pub now_ms: u64,
}

/// Tunables of the service, from config.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub read_policy: ReadPolicy,
    /// Memory bound, eviction policy, active expiry.
    pub cache: crate::config::CacheConfig,
    /// How long a joining learner may take to catch up before promotion.
    pub catch_up_timeout: Duration,
    /// The longest election timeout. A follower that has not heard from its
    /// leader for this long stops routing to it; a leader whose lease has
    /// lapsed gets this long to confirm leadership with a quorum.
    pub election_timeout: Duration,
    /// The cluster secret the join probe presents (None: none configured).
    pub secret: Option<crate::net::ClusterSecret>,
    /// Clients to peers' Raft listeners: a follower asks the leader for
    /// read indexes through them (`follower_read`).
    pub peers: PeerNetwork,
    /// TLS for calls to other nodes (None: plain HTTP).
    pub tls: Option<Arc<crate::net::tls::Tls>>,
}

/// The outcome of one shared ReadIndex round on the leader (`None`: no
/// answer within an election timeout).
type LeaderRound =
    Option<std::result::Result<typ::Linearizer, typ::RaftError<typ::LinearizableReadError>>>;

/// Where a leader-only request should run, as this node sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Here,
    Forward(Leader),
    NoLeader,
}

pub struct Cluster {
    raft: Raft,
    /// The last time this node stamped on a proposal (ms since the epoch):
    /// stamps never go back, on this node or (through the replicated clock)
    /// across leaders.
    stamped: AtomicU64,
    evictor: Evictor,
    hits: AtomicU64,
    misses: AtomicU64,
    contact: Arc<LeaderContact>,
    reader: StateReader,
    log: LogStore,
    id: NodeId,
    cfg: ServiceConfig,
    watch: Arc<WatchHub>,
    /// This node's advertised Redis protocol address, once its listener is
    /// bound (unset: no Redis listener).
    redis_addr: std::sync::OnceLock<String>,
    /// The client to the current leader's Raft listener (follower reads).
    leader_peer: std::sync::Mutex<Option<Arc<crate::raft::network::PeerClient>>>,
    /// Follower reads waiting for a read index from the leader, and the
    /// leader's reads waiting for a ReadIndex round (see `follower_read`).
    follower_reads: Arc<follower_read::SharedRound<Option<crate::raft::rpc::ReadIndex>>>,
    leader_reads: Arc<follower_read::SharedRound<LeaderRound>>,
    /// Client writes waiting to be handed to the leader (`forward`).
    forwarded_writes: Arc<forward::WriteQueue>,
}

/// This node's wall clock (ms since the epoch).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `fut` bounded by `deadline`; `None` if the deadline passed first.
async fn until<F: Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, fut).await.ok()
}

impl Cluster {
    pub fn new(
        raft: Raft,
        reader: StateReader,
        log: LogStore,
        id: NodeId,
        cfg: ServiceConfig,
        contact: Arc<LeaderContact>,
        watch: Arc<WatchHub>,
    ) -> Self {
        let evictor = Evictor::new(cfg.cache.eviction_policy, cfg.cache.max_memory.0);
        Self {
            raft,
            stamped: AtomicU64::new(0),
            evictor,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            contact,
            reader,
            log,
            id,
            cfg,
            watch,
            redis_addr: std::sync::OnceLock::new(),
            leader_peer: std::sync::Mutex::new(None),
            follower_reads: Arc::default(),
            leader_reads: Arc::default(),
            forwarded_writes: Arc::default(),
        }
    }

    /// Record the advertised address of this node's Redis listener (once).
    pub fn set_redis_addr(&self, addr: String) {
        let _ = self.redis_addr.set(addr);
    }

    /// This node's advertised Redis protocol address, if it serves one.
    pub fn redis_addr(&self) -> Option<&str> {
        self.redis_addr.get().map(String::as_str)
    }

    /// The watch history this node's state machine feeds.
    pub fn watch(&self) -> &Arc<WatchHub> {
        &self.watch
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    fn metrics(&self) -> typ::RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.current_leader.as_ref() == Some(&self.id)
    }

    /// Where a leader-only request goes, from openraft's metrics and the
    /// leader-contact clock (no network).
    fn route(&self) -> Route {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if m.state == ServerState::Leader && m.current_leader.as_ref() == Some(&self.id) {
            return Route::Here;
        }
        let Some(id) = m.current_leader.clone() else {
            return Route::NoLeader;
        };
        let Some(node) = m.membership_config.membership().get_node(&id) else {
            return Route::NoLeader;
        };
        // A follower that has not heard from its leader for an election
        // timeout does not route to it: the leader is gone or cut off.
        if id == self.id || self.contact.since() >= self.cfg.election_timeout {
            return Route::NoLeader;
        }
        Route::Forward(Leader {
            id,
            http_addr: node.http_addr.clone(),
        })
    }

    /// Wait until `done(route)` holds or `deadline` passes; returns the last
    /// route seen. Woken by metrics changes and by leader contact.
    async fn wait_route(&self, deadline: Instant, done: impl Fn(&Route) -> bool) -> Route {
        let mut rx = self.raft.metrics();
        loop {
            let touched = self.contact.touched();
            let route = self.route();
            if done(&route) || Instant::now() >= deadline {
                return route;
            }
            // Contact freshness also expires with time alone: re-check at
            // least every heartbeat-ish interval.
            let tick = Instant::now() + self.cfg.election_timeout / 8;
            tokio::select! {
                _ = rx.changed() => {}
                _ = touched => {}
                _ = tokio::time::sleep_until(tick.min(deadline)) => {}
            }
        }
    }

    /// The route now; if no leader is known, wait (at most two election
    /// timeouts, and never past `deadline`) for one.
    async fn route_or_wait(&self, deadline: Instant) -> Route {
        match self.route() {
            Route::NoLeader => {
                let bound = deadline.min(Instant::now() + self.cfg.election_timeout * 2);
                self.wait_route(bound, |r| *r != Route::NoLeader).await
            }
            r => r,
        }
    }

    /// Wait until the leader is someone other than `old` (or there is none),
    /// bounded by two election timeouts and `deadline`. The API calls this
    /// before retrying a request that forwarding could not deliver.
    pub async fn wait_leader_change(&self, old: &NodeId, deadline: Instant) {
        let bound = deadline.min(Instant::now() + self.cfg.election_timeout * 2);
        self.wait_route(bound, |r| match r {
            Route::Forward(l) => l.id != *old,
            Route::Here | Route::NoLeader => true,
        })
        .await;
    }

    fn not_leader(&self, f: typ::ForwardToLeader) -> Error {
        match (f.leader_id, f.leader_node) {
            (Some(id), Some(node)) if id != self.id => Error::NotLeader(Leader {
                id,
                http_addr: node.http_addr,
            }),
            _ => Error::NoLeader,
        }
    }

    fn read_error(&self, e: typ::RaftError<typ::LinearizableReadError>) -> Error {
        match e {
            RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => self.not_leader(f),
            RaftError::APIError(LinearizableReadError::QuorumNotEnough(e)) => {
                tracing::debug!(error = %e, "no quorum");
                Error::NoLeader
            }
            RaftError::Fatal(f) => Error::Unavailable(f.to_string()),
        }
    }

    /// Confirm with Raft that this node leads with a quorum behind it and
    /// return the log id a linearizable read must wait for. Uses the lease
    /// when `mode` allows and it is valid; otherwise one heartbeat round,
    /// bounded by an election timeout and `deadline`.
    async fn confirm_leadership(
        &self,
        mode: ReadPolicy,
        deadline: Instant,
    ) -> Result<typ::Linearizer> {
        if mode == ReadPolicy::Lease {
            match self
                .raft
                .get_read_linearizer(openraft::ReadPolicy::LeaseRead)
                .await
            {
                Ok(l) => return Ok(l),
                // No valid lease: a leader just elected, or one cut off from
                // its quorum. Ask the quorum instead.
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {}
                Err(e) => return Err(self.read_error(e)),
            }
        }
        // One ReadIndex round shared by every caller waiting at the same
        // moment (each joins a round begun after it arrived).
        let bound = deadline.min(Instant::now() + self.cfg.election_timeout);
        let (raft, limit) = (self.raft.clone(), self.cfg.election_timeout);
        let round: follower_read::Round<LeaderRound> = Box::new(move || {
            Box::pin(async move {
                tokio::time::timeout(
                    limit,
                    raft.get_read_linearizer(openraft::ReadPolicy::ReadIndex),
                )
                .await
                .ok()
            })
        });
        match until(bound, self.leader_reads.join(round))
            .await
            .flatten()
            .flatten()
        {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(self.read_error(e)),
            None if Instant::now() >= deadline => Err(Error::Timeout(self.remaining(deadline))),
            None => Err(Error::NoLeader),
        }
    }

    /// This node must be the leader: `Ok` here, else where to go. A node
    /// whose Raft has stopped (a storage failure, shutdown) says so.
    async fn lead(&self, deadline: Instant) -> Result<()> {
        if let Err(e) = &self.raft.metrics().borrow_watched().running_state {
            return Err(Error::Unavailable(format!(
                "raft stopped on this node: {e}"
            )));
        }
        match self.route_or_wait(deadline).await {
            Route::Here => Ok(()),
            Route::Forward(l) => Err(Error::NotLeader(l)),
            Route::NoLeader => Err(Error::NoLeader),
        }
    }

    /// For error messages: how long the caller's budget was (approximately;
    /// the deadline is what matters).
    fn remaining(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
    }

    /// The time to stamp on a proposal: this node's wall clock, but never
    /// below the replicated clock or an earlier stamp of this node, so the
    /// replicated clock never goes back, across leader changes too.
    pub fn stamp(&self) -> u64 {
        let floor = self.reader.clock_ms();
        let now = wall_ms().max(floor);
        self.stamped.fetch_max(now, Ordering::Relaxed).max(now)
    }

    /// Propose a command and wait until it is committed and applied. On
    /// the leader, a write that would go past `cache.max_memory` carries the
    /// victims the eviction policy chose (see `evict`).
    pub async fn write(&self, cmd: kv::Command, deadline: Instant) -> Result<WriteOutcome> {
        let start = Instant::now();
        self.lead(deadline).await?;
        // CheckQuorum: the lease (no network) or one heartbeat round. Only
        // the confirmation matters; the proposal itself orders the write.
        let _confirmed = self.confirm_leadership(ReadPolicy::Lease, deadline).await?;
        let now_ms = self.stamp();
        let reservation = self
            .reader
            .inspect(|cache| self.evictor.plan(cache, &cmd, now_ms));
        let req = kv::Request {
            now_ms,
            evict: reservation.victims().to_vec(),
            max_memory: self.evictor.max_memory(),
            cmd,
        };
        let res = until(deadline, self.raft.client_write(req)).await;
        drop(reservation);
        match res {
            None => Err(Error::Timeout(start.elapsed())),
            Some(Ok(resp)) => Ok(WriteOutcome {
                response: resp.data,
                raft_index: resp.log_id.index,
            }),
            Some(Err(e)) => Err(self.write_error(e)),
        }
    }

    fn write_error(&self, e: typ::RaftError<typ::ClientWriteError>) -> Error {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.not_leader(f),
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                Error::OutcomeUnknown("leadership changed after the write was proposed")
            }
            // Membership changes racing each other (two nodes joining at
            // once) or a leader that has not committed its first entry yet:
            // nothing was appended, and a retry succeeds.
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                e @ (ChangeMembershipError::InProgress(_)
                | ChangeMembershipError::UncommittedLeaderLog(_)),
            )) => Error::Unavailable(format!("membership change must wait, retry: {e}")),
            RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => {
                Error::Unavailable(format!("the membership changed meanwhile, retry: {e}"))
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Error::Conflict(e.to_string())
            }
            // Raft stopped while the write was in flight: it may have been
            // proposed, so its fate is unknown.
            RaftError::Fatal(f) => {
                tracing::error!(error = %f, "raft stopped with a write in flight");
                Error::OutcomeUnknown("raft stopped on this node while the write was in flight")
            }
        }
    }

    /// On the leader, confirm leadership (ReadIndex, or the lease) and wait
    /// until the local state machine has applied the read index: a local
    /// read after this is linearizable.
    async fn linearize(&self, deadline: Instant) -> Result<()> {
        let start = Instant::now();
        self.lead(deadline).await?;
        let linearizer = self
            .confirm_leadership(self.cfg.read_policy, deadline)
            .await?;
        // Woken by the apply that reaches the read index, not by every
        // metrics publish as openraft's `await_ready` is (`raft::applied`).
        let index = linearizer.read_log_id().index();
        match until(deadline, self.reader.wait_applied(index)).await {
            None => Err(Error::Timeout(start.elapsed())),
            Some(()) => Ok(()),
        }
    }

    /// [`Cluster::linearize`] on the leader; on a follower, a read index
    /// from the leader and this node's state machine caught up to it (see
    /// `follower_read`), or `NotLeader` (forward the read) when that fails
    /// or when the eviction policy needs the leader to see every read.
    /// Returns a floor for the read's clock: the leader's wall clock when
    /// it confirmed leadership (0 on the leader itself).
    async fn linearize_anywhere(&self, deadline: Instant) -> Result<u64> {
        match self.linearize(deadline).await {
            // Eviction by access needs every read on the leader.
            Err(Error::NotLeader(leader)) if !self.evictor.tracks_access() => {
                match self.follower_linearize(&leader, deadline).await {
                    Some(leader_ms) => Ok(leader_ms),
                    None => Err(Error::NotLeader(leader)),
                }
            }
            r => r.map(|()| 0),
        }
    }

    /// Propose an expiry entry now (a read saw a key past its deadline on
    /// this leader's clock): it advances the replicated clock to this
    /// node's stamp, so the key is absent for every later read.
    async fn tick(&self, deadline: Instant) -> Result<()> {
        let tick = kv::Command::Tick {
            max: self.cfg.cache.expiry_batch,
        };
        self.write(tick, deadline).await.map(drop)
    }

    /// Read a key at the given consistency level.
    ///
    /// A linearizable read runs on the leader, or on a follower that got a
    /// read index from the leader and applied it (`follower_read`). If the
    /// key's deadline has passed on the leader's clock but not yet on the
    /// replicated clock (no expiry entry applied yet), the leader first
    /// proposes one and reads after it (a follower that sees such a key
    /// answers `NotLeader`, so the read is forwarded): a linearizable read
    /// never returns a key past its deadline as the leader saw it, and once
    /// it has seen the key expired, no later read (on any node) sees it
    /// again.
    pub async fn read(
        &self,
        key: &str,
        consistency: Consistency,
        deadline: Instant,
    ) -> Result<ReadOutcome> {
        let floor = match consistency {
            Consistency::Linearizable => self.linearize_anywhere(deadline).await?,
            Consistency::Stale => 0,
        };
        let now = self.stamp().max(floor);
        let touch = |k: &str| match self.evictor.touch_coin() {
            Some(coin) => self.reader.get_and_touch(k, now, coin),
            None => self.reader.get(k),
        };
        let mut r = touch(key);
        let due = r
            .entry
            .as_ref()
            .is_some_and(|e| e.expires_at != 0 && e.expires_at <= now);
        if consistency == Consistency::Linearizable && due {
            self.tick(deadline).await?;
            r = touch(key);
        }
        let counter = if r.entry.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(ReadOutcome {
            entry: r.entry,
            raft_index: r.applied_index,
            now_ms: now,
        })
    }

    /// Evaluate a Redis read ([`kv::redis::Query`]) linearizably: on the
    /// leader after ReadIndex, or on a follower after a read index from the
    /// leader (`follower_read`), and after any deadline that has passed on
    /// the leader's clock was applied (as [`Cluster::read`] does), under
    /// one read lock (so a multi-key read is atomic).
    pub async fn query(&self, q: &kv::redis::Query, deadline: Instant) -> Result<kv::redis::Reply> {
        let mut replies = self.query_many(std::slice::from_ref(q), deadline).await?;
        Ok(replies.pop().expect("one reply per query"))
    }

    /// Evaluate several Redis reads (a pipeline's consecutive reads) with
    /// one read index (one lease check or ReadIndex round) for all, taken
    /// after every one of them arrived, then each evaluated in order as
    /// [`Cluster::query`] does, on a state at or past that index. Each
    /// reply is linearizable: the state it sees lies within its own span.
    /// (Not atomic across the reads: an entry may apply between two.)
    pub async fn query_many(
        &self,
        qs: &[kv::redis::Query],
        deadline: Instant,
    ) -> Result<Vec<kv::redis::Reply>> {
        let floor = self.linearize_anywhere(deadline).await?;
        let now = self.stamp().max(floor);
        let due = self
            .reader
            .inspect(|c| c.deadline_range().is_some_and(|(first, _)| first <= now));
        if due {
            self.tick(deadline).await?;
        }
        let now = self.stamp().max(floor);
        let coin = self.evictor.touch_coin();
        let mut replies = Vec::with_capacity(qs.len());
        for q in qs {
            // Reads by key count as accesses (LRU/LFU) and as hits or
            // misses, as `read` does.
            if let Some(coin) = coin {
                for k in q.keys() {
                    self.reader.get_and_touch(k, now, coin);
                }
            }
            let (reply, found) = self.reader.inspect(|c| {
                let found = q.keys().iter().filter(|k| c.get_item(k).is_some()).count();
                (c.query(q, now), found as u64)
            });
            self.hits.fetch_add(found, Ordering::Relaxed);
            self.misses
                .fetch_add(q.keys().len() as u64 - found, Ordering::Relaxed);
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Run a front end's [`kv::redis::Op`] here (this node must lead for a
    /// write; reads run on any node as [`Cluster::query_many`] does):
    /// the one dispatch for the RESP listener and for `/internal/kv`.
    pub async fn run_op(&self, op: &kv::redis::Op, deadline: Instant) -> Result<kv::Response> {
        use kv::redis::Op;
        match op {
            Op::Write(cmd) => self.write(cmd.clone(), deadline).await.map(|w| w.response),
            Op::Read(q) => self.query(q, deadline).await.map(kv::Response::Reply),
            Op::Reads(qs) => {
                let replies = self.query_many(qs, deadline).await?;
                Ok(kv::Response::Multi {
                    results: Some(replies.into_iter().map(kv::Response::Reply).collect()),
                })
            }
        }
    }

    /// Applied index, key count, memory and a digest of the local state,
    /// for comparing replicas.
    pub fn digest(&self) -> StateSummary {
        self.reader.summary()
    }

    /// Stop Raft on this node (the last step before its listener closes).
    pub async fn shutdown_raft(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
    }

    /// fsync everything the Raft log holds.
    pub async fn sync_log(&self) -> std::io::Result<()> {
        self.log.sync().await
    }
}
