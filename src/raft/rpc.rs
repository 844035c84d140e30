//! Peer transport, server side: the internal HTTP listener on
//! `raft.bind_addr` that feeds peer RPCs into the local Raft.
//!
//! Only peers talk to this listener; clients use the HTTP API. Requests and
//! responses are MessagePack ([`MsgPack`]), except `GET /raft/info` (JSON),
//! which a leader uses to check that a joining node is reachable and is who
//! it says.
//!
//! Invariants:
//! - With a cluster secret configured, every request (any route, any
//!   method) without the secret in `x-dcache-cluster-secret` is answered
//!   401 by the outermost layer, before routing and before any body byte is
//!   read; the comparison is constant-time (`net::ClusterSecret`).
//! - With TLS (the listener requires a CA-signed client certificate), every
//!   request must name its sender in `x-dcache-raft-from` and the client
//!   certificate must name that node, or it is answered 403 before any
//!   body byte is read; an append, vote, pre-vote, transfer or snapshot
//!   whose vote names another node than the sender is answered 403 too,
//!   so a member cannot speak for another one.
//! - Malformed bodies are answered with 400 and never reach Raft.
//! - Body sizes are bounded by what a legitimate message can be: an
//!   AppendEntries by `max_append_bytes` (the node derives it from the
//!   config: entries per append × the largest entry a client can cause;
//!   forwarded writes ([`WRITES`]) share that bound),
//!   votes, transfers and read-index requests by [`MAX_SMALL_RPC_BODY`]; a snapshot streams to
//!   disk in chunks (never whole in memory), bounded by
//!   `MAX_SNAPSHOT_BYTES` on disk.
//! - A message body must arrive whole within the body timeout (the
//!   listener's header timeout), and a snapshot's next chunk within it,
//!   or the request is answered 408: a stalled peer cannot hold a
//!   connection and a buffer.
//! - An AppendEntries that a current leader sent touches [`LeaderContact`].
//!
//! Not here: the accept loop and its limits (`net::serve`), the client side
//! (`raft::network`), the peer stream that carries AppendEntries on the
//! same listener and hands this router every connection that is HTTP
//! (`raft::stream`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::FromRequest;
use axum::extract::Request;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::LeaderContact;
use super::NodeId;
use super::Raft;
use super::typ;
use crate::net::ClusterSecret;

pub const CONTENT_TYPE: &str = "application/msgpack";
pub const APPEND: &str = "/raft/append";
pub const VOTE: &str = "/raft/vote";
pub const PRE_VOTE: &str = "/raft/pre-vote";
pub const SNAPSHOT: &str = "/raft/snapshot";
pub const TRANSFER_LEADER: &str = "/raft/transfer-leader";
pub const INFO: &str = "/raft/info";
/// A follower asks the leader for a read index (see [`ReadIndex`]).
pub const READ_INDEX: &str = "/raft/read-index";
/// A follower hands the leader the client writes it received ([`Writes`]).
pub const WRITES: &str = "/raft/writes";
/// Header naming the node a peer RPC is meant for. A node that is not that
/// node answers 421 without passing the RPC to Raft: a process started on a
/// former member's address must not receive (and act on) its messages.
pub const TO_HEADER: &str = "x-dcache-raft-to";
/// The incarnation of the target that the sender's membership records (see
/// `node::identity`): a node whose data dir has another one lost the state
/// that membership describes and refuses the RPC.
pub const INCARNATION_HEADER: &str = "x-dcache-raft-incarnation";
/// Header naming the node that sends a peer RPC. With TLS, the sender's
/// client certificate must name that node (`net::tls::names_node`), and
/// the RPC's own sender (the vote's leader or candidate) must be it.
pub const FROM_HEADER: &str = "x-dcache-raft-from";

/// Largest body of a vote, pre-vote or leadership-transfer RPC: a vote and
/// a log id, a few hundred bytes in practice.
pub const MAX_SMALL_RPC_BODY: usize = 64 * 1024;
/// Largest snapshot file accepted; it streams to disk, so this bounds disk,
/// not memory.
const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Largest encoded vote at the start of a snapshot body.
const MAX_VOTE_BYTES: usize = 64 * 1024;

/// The body of a snapshot RPC: `vote_len u32 LE`, the vote (MessagePack),
/// then the snapshot file's bytes, streamed from `file`.
pub fn snapshot_body(vote: &typ::Vote, file: std::fs::File) -> std::io::Result<reqwest::Body> {
    use futures_util::StreamExt;
    let vote = rmp_serde::to_vec_named(vote).map_err(std::io::Error::other)?;
    let mut head = (vote.len() as u32).to_le_bytes().to_vec();
    head.extend_from_slice(&vote);
    let head =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) });
    let file =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 1 << 20);
    Ok(reqwest::Body::wrap_stream(head.chain(file)))
}

/// Who a Raft listener belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub raft_addr: String,
    pub http_addr: String,
    /// The node's data-dir incarnation (0 from nodes that predate it).
    #[serde(default)]
    pub incarnation: u64,
    /// The node's Raft log is empty (a fresh node, or one whose data was
    /// lost): filled in when asked, not at start.
    #[serde(default)]
    pub empty_log: bool,
}

/// The leader's answer to [`READ_INDEX`]: after leadership was confirmed by
/// a quorum (one ReadIndex round, begun after the request arrived), every
/// write acknowledged so far is at or below `index`. A follower whose state
/// machine has applied `index` may answer a linearizable read locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadIndex {
    pub index: u64,
    /// The leader's wall clock when it answered (ms since the epoch): the
    /// follower reads keys' deadlines at no earlier time than this.
    pub leader_ms: u64,
}

/// The body of [`WRITES`]: client writes that a follower received, each
/// with what is left of its client's budget. The leader proposes each one
/// as if a client had sent it there, and answers one [`Written`] per write,
/// in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Writes {
    pub writes: Vec<ForwardedWrite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedWrite {
    /// Milliseconds the leader has to commit and apply it.
    pub budget_ms: u64,
    pub cmd: crate::kv::Command,
}

/// One forwarded write's outcome on the leader: applied (its response and
/// log index), or refused with a code of the error contract (whose class
/// says whether it was applied; `not_leader` means it was not proposed).
pub type Written = Result<Applied, Refused>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub response: crate::kv::Response,
    pub raft_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refused {
    pub code: crate::wire::Code,
    pub message: String,
}

/// What runs forwarded writes on the leader (the cluster service; this
/// listener only carries them): proposes each write by its budget.
pub trait Proposer: Send + Sync + 'static {
    fn propose(&self, writes: Writes) -> futures_util::future::BoxFuture<'_, Vec<Written>>;
}

/// A MessagePack body: extractor for requests (400 if it does not decode),
/// responder for answers.
pub struct MsgPack<T>(pub T);

impl<T: DeserializeOwned> FromRequest<RpcState> for MsgPack<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &RpcState) -> Result<Self, Response> {
        let body = tokio::time::timeout(state.body_timeout, Bytes::from_request(req, state))
            .await
            .map_err(|_| body_timeout(state.body_timeout))?
            .map_err(IntoResponse::into_response)?;
        rmp_serde::from_slice(&body).map(MsgPack).map_err(|e| {
            (StatusCode::BAD_REQUEST, format!("malformed RPC body: {e}")).into_response()
        })
    }
}

impl<T: Serialize> IntoResponse for MsgPack<T> {
    fn into_response(self) -> Response {
        match rmp_serde::to_vec_named(&self.0) {
            Ok(b) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], b).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encode: {e}")).into_response(),
        }
    }
}

/// Raft refused or is stopped: 503 with the reason, which the peer's
/// client reports as a network error.
struct Unavailable(String);

impl<E: std::fmt::Display> From<E> for Unavailable {
    fn from(e: E) -> Self {
        Unavailable(e.to_string())
    }
}

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, unavailable(&self.0)).into_response()
    }
}

/// The text a peer gets when this node's Raft refused its RPC or is
/// stopped (HTTP's 503 body, the peer stream's Err answer).
pub(super) fn unavailable(why: &str) -> String {
    format!("raft unavailable: {why}")
}

type Answer<T> = Result<MsgPack<T>, Unavailable>;

#[derive(Clone)]
struct RpcState {
    raft: Raft,
    info: NodeInfo,
    contact: Arc<LeaderContact>,
    /// Where received snapshots are written before they are installed.
    snapshot_dir: PathBuf,
    /// Bound on reading a message body, and on the wait for each chunk of
    /// a snapshot (a legitimate peer sends within its own RPC deadline).
    body_timeout: Duration,
    /// Runs the client writes followers forward ([`WRITES`]).
    proposer: Arc<dyn Proposer>,
}

/// 408: the body did not arrive within the bound.
fn body_timeout(bound: Duration) -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        format!("request body not received within {bound:?}"),
    )
        .into_response()
}

/// What a peer request may be: its size and how long its body may take.
#[derive(Debug, Clone, Copy)]
pub struct PeerLimits {
    /// The largest AppendEntries body accepted.
    pub max_append_bytes: usize,
    /// Bound on a message body, and on the wait for each snapshot chunk.
    pub body_timeout: Duration,
}

/// The router for the Raft listener. `secret`: the cluster secret every
/// request must carry (None: peers are not authenticated).
/// `limits`: body sizes and the body timeout ([`PeerLimits`]). `tls`:
/// the listener serves mutual TLS, so every request's client certificate
/// must name its sender. `proposer`: runs forwarded client writes.
#[allow(clippy::too_many_arguments)]
pub fn router(
    raft: Raft,
    info: NodeInfo,
    contact: Arc<LeaderContact>,
    snapshot_dir: PathBuf,
    secret: Option<ClusterSecret>,
    limits: PeerLimits,
    tls: bool,
    proposer: Arc<dyn Proposer>,
) -> Router {
    let PeerLimits {
        max_append_bytes,
        body_timeout,
    } = limits;
    let me = Target {
        id: info.id.clone(),
        incarnation: info.incarnation,
        contact: contact.clone(),
    };
    Router::new()
        .route(VOTE, post(vote))
        .route(PRE_VOTE, post(pre_vote))
        .route(TRANSFER_LEADER, post(transfer_leader))
        .route(READ_INDEX, post(read_index))
        .layer(DefaultBodyLimit::max(MAX_SMALL_RPC_BODY))
        .route(
            APPEND,
            post(append).layer(DefaultBodyLimit::max(max_append_bytes)),
        )
        .route(
            WRITES,
            post(writes).layer(DefaultBodyLimit::max(max_append_bytes)),
        )
        .route(SNAPSHOT, post(snapshot))
        .route_layer(axum::middleware::from_fn_with_state(me, addressed_to_us))
        .route(INFO, get(node_info))
        .with_state(RpcState {
            raft,
            info,
            contact,
            snapshot_dir,
            body_timeout,
            proposer,
        })
        .layer(axum::middleware::from_fn_with_state(
            max_append_bytes,
            refuse_declared_over,
        ))
        .layer(axum::middleware::from_fn_with_state(
            tls,
            certificate_names_sender,
        ))
        // Outermost: runs before routing, extractors and body limits, so a
        // peer without the secret never gets a byte of its body read.
        .layer(axum::middleware::from_fn_with_state(secret, require_secret))
}

/// The sender a request names (`x-dcache-raft-from`), put in the request's
/// extensions by [`certificate_names_sender`] when TLS proved it.
#[derive(Debug, Clone)]
struct ProvenSender(Option<NodeId>);

/// With TLS: 403 unless the client certificate names the node the request
/// says it comes from.
async fn certificate_names_sender(
    State(tls): State<bool>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    if !tls {
        req.extensions_mut().insert(ProvenSender(None));
        return next.run(req).await;
    }
    let from = header(&req, FROM_HEADER);
    let certs = req.extensions().get::<crate::net::PeerCertificates>();
    if let Some(why) = sender_not_named(certs, from.as_deref()) {
        return (StatusCode::FORBIDDEN, [(header::CONNECTION, "close")], why).into_response();
    }
    req.extensions_mut()
        .insert(ProvenSender(from.map(NodeId::from)));
    next.run(req).await
}

/// A message that speaks for another node than its proven sender: 403.
struct Impersonation(String);

impl IntoResponse for Impersonation {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, self.0).into_response()
    }
}

/// Err when TLS proved the sender and the message speaks for another node.
fn check_sender(proven: &ProvenSender, claimed: &NodeId) -> Result<(), Impersonation> {
    match impersonation(proven.0.as_ref(), claimed) {
        Some(why) => Err(Impersonation(why)),
        None => Ok(()),
    }
}

/// Why a message that speaks for `claimed` may not come from `proven`
/// (the sender TLS proved; None: nothing proven, nothing checked). The
/// HTTP routes and the peer stream both ask this.
pub(super) fn impersonation(proven: Option<&NodeId>, claimed: &NodeId) -> Option<String> {
    let p = proven?;
    (p != claimed).then(|| format!("node {p} sent a message on behalf of node {claimed}"))
}

/// Why the client certificate `certs` (its leaf) does not prove that the
/// peer is node `from` (None: it does). The HTTP routes and the peer
/// stream both ask this.
pub(super) fn sender_not_named(
    certs: Option<&crate::net::PeerCertificates>,
    from: Option<&str>,
) -> Option<String> {
    let named = match (from, certs) {
        (Some(from), Some(c)) => {
            c.0.first()
                .is_some_and(|leaf| crate::net::tls::names_node(leaf, from))
        }
        _ => false,
    };
    (!named).then(|| {
        format!(
            "the client certificate does not name the sending node {}",
            from.unwrap_or("(no x-dcache-raft-from)")
        )
    })
}

/// The body bound of a route: AppendEntries gets `max_append`, the small
/// RPCs [`MAX_SMALL_RPC_BODY`]; None for the snapshot (it streams to disk
/// with its own bound) and bodiless routes.
fn body_bound(path: &str, max_append: usize) -> Option<usize> {
    match path {
        APPEND | WRITES => Some(max_append),
        VOTE | PRE_VOTE | TRANSFER_LEADER | READ_INDEX => Some(MAX_SMALL_RPC_BODY),
        _ => None,
    }
}

/// A declared body length over the route's bound is refused at once (413,
/// unread); a body that turns out longer than declared fails its extractor
/// (`DefaultBodyLimit`).
async fn refuse_declared_over(
    State(max_append): State<usize>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(max) = body_bound(req.uri().path(), max_append) else {
        return next.run(req).await;
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            format!("RPC body of {n} bytes is over this route's bound of {max} bytes"),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// Why a peer without the cluster secret is refused (HTTP's 401, the peer
/// stream's refusal).
pub(super) const NO_SECRET: &str =
    "this Raft listener requires the cluster secret (cluster.secret)";

/// 401 unless the request carries the cluster secret (when one is set).
async fn require_secret(
    State(secret): State<Option<ClusterSecret>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match &secret {
        Some(s)
            if !s.matches(
                req.headers()
                    .get(crate::wire::header::CLUSTER_SECRET)
                    .map(|v| v.as_bytes()),
            ) =>
        {
            // Close the connection: the body (if any) stays unread.
            (
                StatusCode::UNAUTHORIZED,
                [(header::CONNECTION, "close")],
                NO_SECRET,
            )
                .into_response()
        }
        _ => next.run(req).await,
    }
}

/// The node a vote speaks for.
pub(super) fn voter(vote: &typ::Vote) -> &NodeId {
    use openraft::vote::RaftLeaderId;
    vote.leader_id().node_id()
}

async fn append(
    State(s): State<RpcState>,
    Extension(proven): Extension<ProvenSender>,
    MsgPack(req): MsgPack<typ::AppendEntriesRequest>,
) -> Result<Answer<typ::AppendEntriesResponse>, Impersonation> {
    check_sender(&proven, voter(&req.vote))?;
    Ok(append_checked(s, req).await)
}

async fn append_checked(
    s: RpcState,
    req: typ::AppendEntriesRequest,
) -> Answer<typ::AppendEntriesResponse> {
    append_entries(&s.raft, &s.contact, req)
        .await
        .map(MsgPack)
        .map_err(Unavailable)
}

/// Hand an AppendEntries (its sender already checked) to Raft, and note
/// the contact with a current leader. Err: Raft refused or is stopped. The
/// HTTP route and the peer stream both run this.
pub(super) async fn append_entries(
    raft: &Raft,
    contact: &LeaderContact,
    req: typ::AppendEntriesRequest,
) -> Result<typ::AppendEntriesResponse, String> {
    let resp = raft.append_entries(req).await.map_err(|e| e.to_string())?;
    // Any answer but HigherVote means the sender is the current leader.
    if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
        contact.touch();
    }
    Ok(resp)
}

/// Confirm leadership with a ReadIndex round and answer the read index
/// (see [`ReadIndex`]); 503 if this node is not the leader or cannot reach
/// a quorum (the follower then forwards the read instead).
async fn read_index(State(s): State<RpcState>) -> Answer<ReadIndex> {
    read_index_now(&s.raft)
        .await
        .map(MsgPack)
        .map_err(Unavailable)
}

/// A ReadIndex round on this node (the leader), begun now: the index and
/// the leader's clock (see [`ReadIndex`]); Err: not the leader, no quorum,
/// or Raft stopped. The HTTP route and the peer stream both answer this.
pub(super) async fn read_index_now(raft: &Raft) -> Result<ReadIndex, String> {
    let linearizer = raft
        .get_read_linearizer(openraft::ReadPolicy::ReadIndex)
        .await
        .map_err(|e| e.to_string())?;
    let leader_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(ReadIndex {
        index: linearizer.read_log_id().index(),
        leader_ms,
    })
}

/// Propose the client writes a follower forwarded, each by its own budget,
/// and answer their outcomes in order (always 200: a refusal is per write).
async fn writes(State(s): State<RpcState>, MsgPack(w): MsgPack<Writes>) -> MsgPack<Vec<Written>> {
    MsgPack(s.proposer.propose(w).await)
}

async fn vote(
    State(s): State<RpcState>,
    Extension(proven): Extension<ProvenSender>,
    MsgPack(req): MsgPack<typ::VoteRequest>,
) -> Result<Answer<typ::VoteResponse>, Impersonation> {
    check_sender(&proven, voter(&req.vote))?;
    Ok(s.raft.vote(req).await.map(MsgPack).map_err(Into::into))
}

async fn pre_vote(
    State(s): State<RpcState>,
    Extension(proven): Extension<ProvenSender>,
    MsgPack(req): MsgPack<typ::VoteRequest>,
) -> Result<Answer<typ::VoteResponse>, Impersonation> {
    check_sender(&proven, voter(&req.vote))?;
    Ok(s.raft.pre_vote(req).await.map(MsgPack).map_err(Into::into))
}

async fn transfer_leader(
    State(s): State<RpcState>,
    Extension(proven): Extension<ProvenSender>,
    MsgPack(req): MsgPack<typ::TransferLeaderRequest>,
) -> Result<Answer<typ::TransferLeaderResponse>, Impersonation> {
    check_sender(&proven, voter(req.from_leader()))?;
    Ok(s.raft
        .handle_transfer_leader(req)
        .await
        .map(MsgPack)
        .map_err(Into::into))
}

/// Receive a snapshot: the vote, then the file, streamed to a temp file in
/// the snapshot dir (bounded by [`MAX_SNAPSHOT_BYTES`]), verified whole,
/// then handed to Raft, which installs it (the state machine renames it
/// into place). A damaged snapshot is refused with 400 before Raft sees it.
async fn snapshot(
    State(s): State<RpcState>,
    Extension(proven): Extension<ProvenSender>,
    body: axum::body::Body,
) -> Response {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = s.snapshot_dir.join(format!(
        "recv-{}-{n}{}",
        std::process::id(),
        super::snapshot::TMP_SUFFIX
    ));
    let result = receive_snapshot(&s, &proven, body, &tmp).await;
    // Installed snapshots were renamed away; anything else is garbage.
    let _ = tokio::fs::remove_file(&tmp).await;
    match result {
        Ok(r) => r,
        Err(r) => *r,
    }
}

fn bad_request(msg: String) -> Box<Response> {
    Box::new((StatusCode::BAD_REQUEST, msg).into_response())
}

async fn receive_snapshot(
    s: &RpcState,
    proven: &ProvenSender,
    body: axum::body::Body,
    tmp: &std::path::Path,
) -> Result<Response, Box<Response>> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut stream = body.into_data_stream();
    let mut head = bytes::BytesMut::new();
    let mut vote: Option<typ::Vote> = None;
    let mut file = tokio::io::BufWriter::with_capacity(
        1 << 20,
        tokio::fs::File::create(tmp).await.map_err(|e| {
            Box::new(Unavailable(format!("cannot write {}: {e}", tmp.display())).into_response())
        })?,
    );
    let mut written: u64 = 0;
    loop {
        let next = tokio::time::timeout(s.body_timeout, stream.next())
            .await
            .map_err(|_| Box::new(body_timeout(s.body_timeout)))?;
        let Some(chunk) = next else { break };
        let mut chunk = chunk.map_err(|e| bad_request(format!("snapshot body: {e}")))?;
        if vote.is_none() {
            head.extend_from_slice(&chunk);
            if head.len() < 4 {
                continue;
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
            if len > MAX_VOTE_BYTES {
                return Err(bad_request("snapshot body: vote too large".into()));
            }
            if head.len() < 4 + len {
                continue;
            }
            let v: typ::Vote = rmp_serde::from_slice(&head[4..4 + len])
                .map_err(|e| bad_request(format!("snapshot body: vote: {e}")))?;
            check_sender(proven, voter(&v)).map_err(|e| Box::new(e.into_response()))?;
            vote = Some(v);
            chunk = head.split_off(4 + len).freeze();
        }
        written += chunk.len() as u64;
        if written > MAX_SNAPSHOT_BYTES {
            return Err(bad_request(format!(
                "snapshot over {MAX_SNAPSHOT_BYTES} bytes"
            )));
        }
        file.write_all(&chunk).await.map_err(|e| {
            Box::new(Unavailable(format!("writing {}: {e}", tmp.display())).into_response())
        })?;
    }
    let vote = vote.ok_or_else(|| bad_request("snapshot body: no vote".into()))?;
    file.flush().await.map_err(|e| {
        Box::new(Unavailable(format!("writing {}: {e}", tmp.display())).into_response())
    })?;
    drop(file);
    let path = tmp.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || {
        let meta = super::snapshot::verify(&path)?;
        let file = std::fs::File::open(&path)?;
        Ok::<_, std::io::Error>((meta, super::snapshot::SnapshotFile { path, file }))
    })
    .await
    .map_err(|e| Box::new(Unavailable(e.to_string()).into_response()))?;
    // Reject a damaged snapshot before openraft hands it to the state machine.
    let (meta, data) = checked.map_err(|e| bad_request(format!("snapshot rejected: {e}")))?;
    let snap = typ::Snapshot {
        meta,
        snapshot: data,
    };
    let answer: Answer<_> = match s.raft.install_full_snapshot(vote, snap).await {
        Ok(resp) => Ok(MsgPack(resp)),
        Err(e) => Err(e.into()),
    };
    Ok(answer.into_response())
}

fn header(req: &Request, name: &str) -> Option<String> {
    let value = req.headers().get(name)?;
    value.to_str().ok().map(str::to_owned)
}

/// Who this listener answers for.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) id: NodeId,
    pub(super) incarnation: u64,
    pub(super) contact: Arc<LeaderContact>,
}

impl Target {
    /// Why a peer message addressed to `to`, by a sender that knows this
    /// node's incarnation as `known` (0: unknown), is not for this node
    /// (see [`TO_HEADER`] and [`INCARNATION_HEADER`]); None when it is.
    pub(super) fn misaddressed(&self, to: Option<&str>, known: u64) -> Option<String> {
        let (me, incarnation) = (&self.id, self.incarnation);
        match to {
            Some(to) if to == me.as_str() && known != 0 && known != incarnation => {
                self.contact.refused_stale_incarnation();
                Some(format!(
                    "node {me} lost the Raft state of the member the sender knows \
                     (incarnation {known}, this data dir is {incarnation}); \
                     remove the member and let it join again"
                ))
            }
            Some(to) if to == me.as_str() => None,
            other => Some(format!(
                "this is node {me}, not {}",
                other.unwrap_or("(no target named)")
            )),
        }
    }
}

/// Refuse a peer RPC addressed to another node (see [`TO_HEADER`]), or to
/// an earlier incarnation of this one (see [`INCARNATION_HEADER`]).
async fn addressed_to_us(
    State(target): State<Target>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let to = header(&req, TO_HEADER);
    let known: u64 = header(&req, INCARNATION_HEADER)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    match target.misaddressed(to.as_deref(), known) {
        None => next.run(req).await,
        Some(why) => (StatusCode::MISDIRECTED_REQUEST, why).into_response(),
    }
}

async fn node_info(State(s): State<RpcState>) -> Json<NodeInfo> {
    use openraft::async_runtime::WatchReceiver;
    let empty_log = s.raft.metrics().borrow_watched().last_log_index.is_none();
    Json(NodeInfo {
        empty_log,
        ..s.info.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proven_sender_may_speak_only_for_itself() {
        let n1 = NodeId::from("n1");
        let n2 = NodeId::from("n2");
        let proven = ProvenSender(Some(n1.clone()));
        assert!(check_sender(&proven, &n1).is_ok());
        let refused = check_sender(&proven, &n2).expect_err("n1 speaking for n2");
        assert_eq!(refused.into_response().status(), StatusCode::FORBIDDEN);
        // Without TLS nothing is proven and nothing is checked here.
        assert!(check_sender(&ProvenSender(None), &n2).is_ok());
        // The vote's node is what is compared: a vote of n2.
        let vote = typ::Vote::new(3, n2.clone());
        assert_eq!(voter(&vote), &n2);
        assert!(check_sender(&proven, voter(&vote)).is_err());
    }
}
