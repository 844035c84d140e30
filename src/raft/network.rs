//! Peer transport, client side: openraft's [`RaftNetworkV2`] over HTTP/1.1
//! to the peer's `raft.bind_addr` listener (see [`super::rpc`]).
//!
//! Bodies are MessagePack. Each target gets its own `reqwest::Client`, which
//! keeps connections alive and reconnects on demand; every call is bounded by
//! openraft's per-RPC deadline (`RPCOption::hard_ttl`).
//!
//! Invariants:
//! - A failed connection maps to `Unreachable` (openraft backs off), a
//!   timeout to `Timeout`, anything the peer answered with an error to
//!   `Network`; none of them panics.
//! - Outgoing connections are bound to the node's own Raft IP when that IP is
//!   a specific address, so per-address network faults cut what they say.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use openraft::RaftNetworkFactory;
use openraft::errors::NetworkError;
use openraft::errors::ReplicationClosed;
use openraft::errors::Unreachable;
use openraft::network::RPCOption;
use openraft::network::RaftNetworkV2;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Node;
use super::NodeId;
use super::SnapshotData;
use super::TypeConfig;
use super::rpc;
use super::typ;

/// Creates one [`PeerClient`] per target.
#[derive(Clone)]
pub struct PeerNetwork {
    local_ip: Option<IpAddr>,
    connect_timeout: Duration,
    rpc_timeout: Duration,
}

impl PeerNetwork {
    /// `local_ip`: bind outgoing connections to this address (None: let the
    /// kernel choose). `connect_timeout`: TCP connect bound. `rpc_timeout`:
    /// upper bound of one append/vote RPC (`raft.rpc_timeout_ms`); openraft's
    /// own per-call deadline applies when it is shorter.
    pub fn new(local_ip: Option<IpAddr>, connect_timeout: Duration, rpc_timeout: Duration) -> Self {
        Self {
            local_ip,
            connect_timeout,
            rpc_timeout,
        }
    }

    fn client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(5))
            .no_proxy();
        if let Some(ip) = self.local_ip {
            b = b.local_address(ip);
        }
        // Only fails if the TLS backend or resolver cannot start; we use neither.
        b.build().expect("build HTTP client")
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            base: format!("http://{}", node.raft_addr),
            http: self.client(),
            rpc_timeout: self.rpc_timeout,
        }
    }
}

/// Connection to one peer.
pub struct PeerClient {
    target: NodeId,
    base: String,
    http: reqwest::Client,
    rpc_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

enum CallError {
    Unreachable(Msg),
    Timeout(Msg),
    Remote(Msg),
}

impl CallError {
    fn into_rpc(self) -> typ::RPCError {
        match self {
            CallError::Unreachable(m) | CallError::Timeout(m) => {
                typ::RPCError::Unreachable(Unreachable::new(&m))
            }
            CallError::Remote(m) => typ::RPCError::Network(NetworkError::new(&m)),
        }
    }
    fn into_streaming(self) -> typ::StreamingError {
        match self {
            CallError::Unreachable(m) | CallError::Timeout(m) => {
                typ::StreamingError::Unreachable(Unreachable::new(&m))
            }
            CallError::Remote(m) => typ::StreamingError::Network(NetworkError::new(&m)),
        }
    }
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        let body = rmp_serde::to_vec_named(req)
            .map_err(|e| CallError::Remote(Msg(format!("encode {path}: {e}"))))?;
        let url = format!("{}{}", self.base, path);
        let fut = async {
            let resp = self
                .http
                .post(&url)
                .header("content-type", rpc::CONTENT_TYPE)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        CallError::Timeout(Msg(format!("{url}: {e}")))
                    } else {
                        CallError::Unreachable(Msg(format!("{url}: {e}")))
                    }
                })?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| CallError::Unreachable(Msg(format!("{url}: reading body: {e}"))))?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes);
                return Err(CallError::Remote(Msg(format!("{url}: {status}: {text}"))));
            }
            rmp_serde::from_slice(&bytes)
                .map_err(|e| CallError::Remote(Msg(format!("{url}: decode response: {e}"))))
        };
        match tokio::time::timeout(ttl, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(Msg(format!(
                "{url}: no answer from {} within {ttl:?}",
                self.target
            )))),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: typ::AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<typ::AppendEntriesResponse, typ::RPCError> {
        self.call(rpc::APPEND, &rpc, option.hard_ttl().min(self.rpc_timeout))
            .await
            .map_err(CallError::into_rpc)
    }

    async fn vote(
        &mut self,
        rpc: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, typ::RPCError> {
        self.call(rpc::VOTE, &rpc, option.hard_ttl().min(self.rpc_timeout))
            .await
            .map_err(CallError::into_rpc)
    }

    async fn pre_vote(
        &mut self,
        rpc: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, typ::RPCError> {
        self.call(rpc::PRE_VOTE, &rpc, option.hard_ttl().min(self.rpc_timeout))
            .await
            .map_err(CallError::into_rpc)
    }

    async fn full_snapshot(
        &mut self,
        vote: typ::Vote,
        snapshot: typ::Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<typ::SnapshotResponse, typ::StreamingError> {
        let req = rpc::SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        // A snapshot may be large: allow the configured snapshot timeout,
        // which openraft passes as the hard TTL here.
        tokio::select! {
            r = self.call(rpc::SNAPSHOT, &req, option.hard_ttl()) => r.map_err(CallError::into_streaming),
            closed = cancel => Err(typ::StreamingError::Closed(closed)),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: typ::TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<typ::TransferLeaderResponse, typ::RPCError> {
        self.call(
            rpc::TRANSFER_LEADER,
            &req,
            option.hard_ttl().min(self.rpc_timeout),
        )
        .await
        .map_err(CallError::into_rpc)
    }
}
