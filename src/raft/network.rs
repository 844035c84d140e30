//! Peer transport, client side: openraft's [`RaftNetworkV2`] and a
//! follower's read-index requests to the peer's `raft.bind_addr` listener:
//! AppendEntries and read-index requests on peer streams
//! ([`super::stream`], one connection per target and kind, opened on
//! demand), every other RPC over HTTP/1.1 (see [`super::rpc`]), and those
//! two too for a peer that does not speak the streams.
//!
//! Bodies are MessagePack. Each target gets its own `reqwest::Client`, which
//! keeps connections alive and reconnects on demand; every call is bounded:
//! append, vote, pre-vote and leadership transfer by openraft's per-RPC
//! deadline (`RPCOption::hard_ttl`) capped at `raft.rpc_timeout_ms`; a
//! snapshot by openraft's install-snapshot timeout alone (node's
//! `INSTALL_SNAPSHOT_TIMEOUT_MS`).
//!
//! Invariants:
//! - A failed connection and a call that does not finish in time both map
//!   to openraft's `Unreachable` (openraft backs off before trying that peer
//!   again); an error the peer answered with, or an HTTP body that does
//!   not decode, maps to `Network` (on the stream, an answer that does not
//!   decode breaks the connection: `Unreachable`). None of them panics.
//! - Every RPC carries the cluster secret when one is configured, and the
//!   sender's node id (`x-dcache-raft-from`; on the stream, its hello).
//! - A stream exchange that fails or does not finish in time drops the
//!   connection before the next call (a late answer is never read as the
//!   next one's).
//! - With TLS, every RPC is TLS (https, or the stream over TLS) with this
//!   node's certificate as client
//!   certificate, and the target's certificate must chain to the CA and
//!   name the target's node id (`net::tls::node_name`), whatever address
//!   it answers on; a target no certificate can name is unreachable.
//! - Outgoing connections are bound to the node's own Raft IP when that IP is
//!   a specific address, so per-address network faults cut what they say.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
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
use super::stream;
use super::typ;
use crate::net::ClusterSecret;
use crate::net::tls::ClientTls;
use crate::net::tls::Tls;

/// Creates one [`PeerClient`] per target.
#[derive(Clone, Debug)]
pub struct PeerNetwork {
    me: NodeId,
    local_ip: Option<IpAddr>,
    connect_timeout: Duration,
    rpc_timeout: Duration,
    secret: Option<ClusterSecret>,
    tls: Option<Arc<Tls>>,
}

impl PeerNetwork {
    /// `local_ip`: bind outgoing connections to this address (None: let the
    /// kernel choose). `connect_timeout`: TCP connect bound. `rpc_timeout`:
    /// upper bound of one append/vote RPC (`raft.rpc_timeout_ms`); openraft's
    /// own per-call deadline applies when it is shorter. `secret`: sent
    /// with every RPC (`cluster.secret`). `me`: this node's id, sent with
    /// every RPC. `tls`: https to peers (None: plain HTTP).
    pub fn new(
        me: NodeId,
        local_ip: Option<IpAddr>,
        connect_timeout: Duration,
        rpc_timeout: Duration,
        secret: Option<ClusterSecret>,
        tls: Option<Arc<Tls>>,
    ) -> Self {
        Self {
            me,
            local_ip,
            connect_timeout,
            rpc_timeout,
            secret,
            tls,
        }
    }

    /// The TLS client configuration for `target` (None: plain); Err when
    /// TLS is on and no certificate can name the target's id.
    fn client_tls(&self, target: &NodeId) -> Result<Option<ClientTls>, String> {
        match &self.tls {
            Some(t) => t
                .node_client(Some(target.as_str()))
                .map(Some)
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }
}

impl PeerNetwork {
    /// A client for `target` outside openraft's replication (a follower
    /// asking the leader for a read index).
    pub fn peer(&self, target: NodeId, node: &Node) -> PeerClient {
        let scheme = crate::net::scheme(self.tls.is_some());
        let tls = self.client_tls(&target);
        let http = tls.clone().map(|tls| {
            crate::net::http_client(crate::net::HttpClientOptions {
                connect_timeout: self.connect_timeout,
                local_address: self.local_ip,
                tls,
                ..Default::default()
            })
        });
        let peer = stream::Peer {
            hello: stream::Hello {
                from: self.me.clone(),
                to: target.clone(),
                incarnation: node.incarnation,
                secret: self.secret.as_ref().map(|s| s.header_value().to_string()),
                purpose: stream::Purpose::Append,
            },
            addr: node.raft_addr.clone(),
            local_ip: self.local_ip,
            connect_timeout: self.connect_timeout,
            tls,
        };
        PeerClient {
            http,
            peer,
            appends: stream::Link::new(stream::Purpose::Append),
            read_indexes: tokio::sync::Mutex::new(stream::Link::new(stream::Purpose::ReadIndex)),
            base: format!("{scheme}://{}", node.raft_addr),
            rpc_timeout: self.rpc_timeout,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        self.peer(target, node)
    }
}

/// Connection to one peer.
pub struct PeerClient {
    base: String,
    http: Result<reqwest::Client, String>,
    /// Who this node is and whom it talks to: the target, its incarnation
    /// as the membership records it, its Raft address, the secret (what
    /// every RPC's headers and every stream's hello say), and how the
    /// streams dial it.
    peer: stream::Peer,
    /// AppendEntries go on this stream ([`stream`]).
    appends: stream::Link,
    /// Read-index requests go on this one (a client shared by the reads
    /// of one follower, one request at a time).
    read_indexes: tokio::sync::Mutex<stream::Link>,
    rpc_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

/// Why [`PeerClient::writes`] has no outcome for its writes.
#[derive(Debug, Clone)]
pub enum WritesFailed {
    /// The leader refused the request or never got it: nothing proposed.
    NotSent(String),
    /// The leader does not serve [`rpc::WRITES`] (an older version).
    Unsupported,
    /// No answer within the budget: the writes may commit.
    TimedOut(String),
    /// The request went out and the answer was lost: they may commit.
    Unknown(String),
}

enum CallError {
    /// No connection, or no answer in time.
    Unreachable(Msg),
    /// The peer answered with an error, or an answer that does not decode.
    Remote(Msg),
}

impl CallError {
    fn into_rpc(self) -> typ::RPCError {
        match self {
            CallError::Unreachable(m) => typ::RPCError::Unreachable(Unreachable::new(&m)),
            CallError::Remote(m) => typ::RPCError::Network(NetworkError::new(&m)),
        }
    }
    fn into_streaming(self) -> typ::StreamingError {
        match self {
            CallError::Unreachable(m) => typ::StreamingError::Unreachable(Unreachable::new(&m)),
            CallError::Remote(m) => typ::StreamingError::Network(NetworkError::new(&m)),
        }
    }
}

impl PeerClient {
    /// A POST of a MessagePack body to `url` with the headers every peer
    /// RPC carries: addressee, sender, the addressee's incarnation and the
    /// cluster secret when one is configured.
    fn post(&self, http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let hello = &self.peer.hello;
        let req = http
            .post(url)
            .header("content-type", rpc::CONTENT_TYPE)
            .header(rpc::TO_HEADER, hello.to.as_str())
            .header(rpc::FROM_HEADER, hello.from.as_str())
            .header(rpc::INCARNATION_HEADER, hello.incarnation);
        match &hello.secret {
            Some(s) => req.header(crate::wire::header::CLUSTER_SECRET, s.as_str()),
            None => req,
        }
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        let body = rmp_serde::to_vec_named(req)
            .map_err(|e| CallError::Remote(Msg(format!("encode {path}: {e}"))))?;
        self.send(path, reqwest::Body::from(body), ttl).await
    }

    /// POST `body` to `path` and decode the MessagePack answer, bounded by
    /// `ttl` (answer included).
    async fn send<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: reqwest::Body,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        let url = format!("{}{}", self.base, path);
        let http = self
            .http
            .as_ref()
            .map_err(|e| CallError::Unreachable(Msg(format!("{url}: {e}"))))?;
        let fut = async {
            let resp = self
                .post(http, &url)
                .body(body)
                .send()
                .await
                .map_err(|e| CallError::Unreachable(Msg(format!("{url}: {e}"))))?;
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
            Err(_) => Err(CallError::Unreachable(Msg(format!(
                "{url}: no answer from {} within {ttl:?}",
                self.peer.hello.to
            )))),
        }
    }
}

impl PeerClient {
    /// The node this client talks to.
    pub fn target(&self) -> &NodeId {
        &self.peer.hello.to
    }

    /// Whether this client still reaches `node` as the membership records
    /// it now (same incarnation, same Raft address).
    pub fn reaches(&self, node: &Node) -> bool {
        self.peer.hello.incarnation == node.incarnation && self.peer.addr == node.raft_addr
    }

    /// Ask the target (the leader) for a read index ([`rpc::READ_INDEX`]),
    /// bounded by `ttl` and `raft.rpc_timeout_ms`. Any failure is a
    /// message: the caller forwards the read instead.
    pub async fn read_index(&self, ttl: Duration) -> Result<rpc::ReadIndex, String> {
        let ttl = ttl.min(self.rpc_timeout);
        let mut link = self.read_indexes.lock().await;
        let answer = match Self::on_stream(&self.peer, &mut link, &(), ttl).await {
            Ok(r) => r,
            Err(left) => {
                drop(link);
                self.send(rpc::READ_INDEX, reqwest::Body::from(Vec::new()), left)
                    .await
            }
        };
        answer.map_err(|e| match e {
            CallError::Unreachable(m) | CallError::Remote(m) => m.0,
        })
    }

    /// Hand the target (the leader) client writes ([`rpc::WRITES`]), bounded
    /// by `ttl` (not by `raft.rpc_timeout_ms`: each write has its client's
    /// budget). The error says whether the leader may have proposed them.
    pub async fn writes(
        &self,
        w: &rpc::Writes,
        ttl: Duration,
    ) -> Result<Vec<rpc::Written>, WritesFailed> {
        let url = format!("{}{}", self.base, rpc::WRITES);
        let http = self
            .http
            .as_ref()
            .map_err(|e| WritesFailed::NotSent(format!("{url}: {e}")))?;
        let body = rmp_serde::to_vec_named(w)
            .map_err(|e| WritesFailed::NotSent(format!("encode {url}: {e}")))?;
        let req = self.post(http, &url).timeout(ttl).body(body);
        let failed = |e: reqwest::Error| {
            if e.is_connect() {
                WritesFailed::NotSent(format!("{url}: {e}"))
            } else if e.is_timeout() {
                WritesFailed::TimedOut(format!("{url}: no answer within {ttl:?}"))
            } else {
                WritesFailed::Unknown(format!("{url}: {e}"))
            }
        };
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(failed)?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(WritesFailed::Unsupported);
        }
        if !status.is_success() {
            // The route answers 200 whenever it ran: anything else was
            // refused before any write was proposed (secret, certificate,
            // addressee, body size or time).
            let text = String::from_utf8_lossy(&bytes);
            return Err(WritesFailed::NotSent(format!("{url}: {status}: {text}")));
        }
        let written: Vec<rpc::Written> = rmp_serde::from_slice(&bytes)
            .map_err(|e| WritesFailed::Unknown(format!("{url}: decode response: {e}")))?;
        if written.len() != w.writes.len() {
            return Err(WritesFailed::Unknown(format!(
                "{url}: {} outcomes for {} writes",
                written.len(),
                w.writes.len()
            )));
        }
        Ok(written)
    }

    /// One bounded append/vote-style RPC: openraft's deadline, capped by
    /// `raft.rpc_timeout_ms`.
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, typ::RPCError> {
        let ttl = option.hard_ttl().min(self.rpc_timeout);
        self.call(path, req, ttl).await.map_err(CallError::into_rpc)
    }
}

impl PeerClient {
    /// One call on `link` (see [`stream::Link::call`]) to `peer`; Err: it
    /// must go over HTTP instead, with what is left of `ttl`.
    async fn on_stream<Req: Serialize, Resp: DeserializeOwned>(
        peer: &stream::Peer,
        link: &mut stream::Link,
        req: &Req,
        ttl: Duration,
    ) -> Result<Result<Resp, CallError>, Duration> {
        if link.use_http() {
            return Err(ttl);
        }
        let addr = &peer.addr;
        Ok(match link.call(peer, req, ttl).await {
            stream::Outcome::Answered(Ok(r)) => Ok(r),
            stream::Outcome::Answered(Err(m)) => {
                Err(CallError::Remote(Msg(format!("{addr} (stream): {m}"))))
            }
            stream::Outcome::Refused(m) => Err(CallError::Remote(Msg(m))),
            stream::Outcome::Unreachable(m) => Err(CallError::Unreachable(Msg(m))),
            stream::Outcome::UseHttp(left) => return Err(left),
        })
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        req: typ::AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<typ::AppendEntriesResponse, typ::RPCError> {
        let ttl = option.hard_ttl().min(self.rpc_timeout);
        match Self::on_stream(&self.peer, &mut self.appends, &req, ttl).await {
            Ok(r) => r.map_err(CallError::into_rpc),
            Err(left) => self
                .call(rpc::APPEND, &req, left)
                .await
                .map_err(CallError::into_rpc),
        }
    }

    async fn vote(
        &mut self,
        req: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, typ::RPCError> {
        self.rpc(rpc::VOTE, &req, &option).await
    }

    async fn pre_vote(
        &mut self,
        req: typ::VoteRequest,
        option: RPCOption,
    ) -> Result<typ::VoteResponse, typ::RPCError> {
        self.rpc(rpc::PRE_VOTE, &req, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: typ::TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<typ::TransferLeaderResponse, typ::RPCError> {
        self.rpc(rpc::TRANSFER_LEADER, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: typ::Vote,
        snapshot: typ::Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<typ::SnapshotResponse, typ::StreamingError> {
        // The body is the vote, then the snapshot file as it is on disk,
        // streamed: never the whole snapshot in memory.
        let body = rpc::snapshot_body(&vote, snapshot.snapshot.file)
            .map_err(|e| CallError::Remote(Msg(format!("snapshot: {e}"))).into_streaming())?;
        // A snapshot may be large: openraft passes its install-snapshot
        // timeout as the hard TTL here, and `raft.rpc_timeout_ms` does not
        // apply.
        tokio::select! {
            r = self.send(rpc::SNAPSHOT, body, option.hard_ttl()) => r.map_err(CallError::into_streaming),
            closed = cancel => Err(typ::StreamingError::Closed(closed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that speaks the stream: the client opens it once, says who
    /// it is and whom it means (with the secret), and sends every
    /// AppendEntries on it, nothing over HTTP.
    #[tokio::test]
    async fn appends_go_on_one_stream_after_a_hello() {
        use tokio::io::AsyncReadExt;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut magic = [0u8; 8];
            s.read_exact(&mut magic).await.unwrap();
            assert_eq!(&magic, stream::MAGIC);
            let mut buf = Vec::new();
            stream::read_frame(&mut s, 1 << 16, &mut buf).await.unwrap();
            let hello: stream::Hello = rmp_serde::from_slice(&buf).unwrap();
            let mut out = stream::MAGIC.to_vec();
            out.extend_from_slice(&stream::frame(&stream::Welcome::Accepted).unwrap());
            s.write_all(&out).await.unwrap();
            let mut appends = 0;
            while stream::read_frame(&mut s, 1 << 20, &mut buf).await.is_ok() {
                let _: typ::AppendEntriesRequest = rmp_serde::from_slice(&buf).unwrap();
                appends += 1;
                let ok: stream::Answer = Ok(openraft::raft::AppendEntriesResponse::Success);
                s.write_all(&stream::frame(&ok).unwrap()).await.unwrap();
            }
            // All of them on this one connection.
            (hello, appends)
        });
        let secret = ClusterSecret::new("s3cret-s3cret-s3cret-s3cret");
        let mut client = n0_to_n1(addr, Some(secret), 42);
        for n in 1..=3 {
            let resp = client
                .append_entries(heartbeat(), RPCOption::new(Duration::from_secs(5)))
                .await
                .unwrap_or_else(|e| panic!("append {n}: {e}"));
            assert!(matches!(
                resp,
                openraft::raft::AppendEntriesResponse::Success
            ));
            assert!(client.appends.is_open());
        }
        drop(client);
        let (hello, appends) = server.await.unwrap();
        assert_eq!((hello.from.as_str(), hello.to.as_str()), ("n0", "n1"));
        assert_eq!(hello.incarnation, 42);
        assert_eq!(hello.purpose, stream::Purpose::Append);
        assert_eq!(hello.secret.as_deref(), Some("s3cret-s3cret-s3cret-s3cret"));
        assert_eq!(appends, 3);
    }

    /// openraft may drop an AppendEntries call half way (it cancels a
    /// replication stream): the next call must not read the abandoned
    /// call's answer as its own, so it opens a new connection.
    #[tokio::test]
    async fn an_abandoned_call_is_never_answered_on_the_next_one() {
        use tokio::io::AsyncReadExt;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (got_first, first_arrived) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut got_first = Some(got_first);
            let mut answered = 0;
            // Connection 1 gets the abandoned call and answers nothing;
            // connection 2 gets the next one and answers it.
            for i in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut magic = [0u8; 8];
                s.read_exact(&mut magic).await.unwrap();
                stream::read_frame(&mut s, 1 << 16, &mut buf).await.unwrap();
                let mut out = stream::MAGIC.to_vec();
                out.extend_from_slice(&stream::frame(&stream::Welcome::Accepted).unwrap());
                s.write_all(&out).await.unwrap();
                stream::read_frame(&mut s, 1 << 20, &mut buf).await.unwrap();
                if i == 0 {
                    got_first.take().unwrap().send(()).unwrap();
                } else {
                    let ok: stream::Answer = Ok(openraft::raft::AppendEntriesResponse::Success);
                    s.write_all(&stream::frame(&ok).unwrap()).await.unwrap();
                    answered += 1;
                }
                conns.push(s);
            }
            answered
        });
        let mut client = n0_to_n1(addr, None, 0);
        let long = RPCOption::new(Duration::from_secs(30));
        {
            // The first call, dropped once its request has arrived.
            let call = client.append_entries(heartbeat(), long.clone());
            tokio::select! {
                r = call => panic!("the first call got an answer: {r:?}"),
                _ = first_arrived => {}
            }
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            client.append_entries(heartbeat(), long),
        )
        .await
        .expect("the second call is answered on a new connection")
        .unwrap();
        assert!(matches!(
            resp,
            openraft::raft::AppendEntriesResponse::Success
        ));
        assert_eq!(server.await.unwrap(), 1);
    }

    /// n0's client for n1 at `addr`, whose incarnation is `incarnation`.
    fn n0_to_n1(
        addr: std::net::SocketAddr,
        secret: Option<ClusterSecret>,
        incarnation: u64,
    ) -> PeerClient {
        let net = PeerNetwork::new(
            NodeId::from("n0"),
            None,
            Duration::from_secs(2),
            Duration::from_secs(5),
            secret,
            None,
        );
        let node = Node {
            raft_addr: addr.to_string(),
            http_addr: addr.to_string(),
            incarnation,
        };
        net.peer(NodeId::from("n1"), &node)
    }

    fn heartbeat() -> typ::AppendEntriesRequest {
        typ::AppendEntriesRequest {
            vote: typ::Vote::new_committed(1, NodeId::from("n0")),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }
    }

    /// A peer that speaks only HTTP (a version before the stream): the
    /// client falls back to HTTP for its AppendEntries, and stays there.
    #[tokio::test]
    async fn an_http_only_peer_gets_its_appends_over_http() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().route(
            rpc::APPEND,
            axum::routing::post(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let ok: typ::AppendEntriesResponse =
                        openraft::raft::AppendEntriesResponse::Success;
                    rpc::MsgPack(ok)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut client = n0_to_n1(addr, None, 0);
        for n in 1..=2 {
            let resp = client
                .append_entries(heartbeat(), RPCOption::new(Duration::from_secs(5)))
                .await
                .unwrap_or_else(|e| panic!("append {n}: {e}"));
            assert!(
                matches!(resp, openraft::raft::AppendEntriesResponse::Success),
                "{resp:?}"
            );
            assert!(client.appends.use_http());
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), n);
        }
        server.abort();
    }
}
