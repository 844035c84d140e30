//! Peer transport, server side: the internal HTTP listener on
//! `raft.bind_addr` that feeds peer RPCs into the local Raft.
//!
//! Only peers talk to this listener; clients use the HTTP API. Requests and
//! responses are MessagePack, except `GET /raft/info` (JSON), which a leader
//! uses to check that a joining node is reachable and is who it says.
//!
//! Invariants:
//! - Malformed bodies are answered with 400 and never reach Raft.
//! - Body sizes are bounded (snapshots get a larger bound than other RPCs).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
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

use super::NodeId;
use super::Raft;
use super::typ;

pub const CONTENT_TYPE: &str = "application/msgpack";
pub const APPEND: &str = "/raft/append";
pub const VOTE: &str = "/raft/vote";
pub const PRE_VOTE: &str = "/raft/pre-vote";
pub const SNAPSHOT: &str = "/raft/snapshot";
pub const TRANSFER_LEADER: &str = "/raft/transfer-leader";
pub const INFO: &str = "/raft/info";

/// Largest AppendEntries body accepted (many entries of up to the value cap).
const MAX_RPC_BODY: usize = 256 * 1024 * 1024;
/// Largest snapshot accepted in one request.
const MAX_SNAPSHOT_BODY: usize = 4 * 1024 * 1024 * 1024 - 1;

#[derive(Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub vote: typ::Vote,
    pub meta: typ::SnapshotMeta,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Who a Raft listener belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub raft_addr: String,
    pub http_addr: String,
}

/// When this node last received AppendEntries (heartbeats included) from a
/// leader. A follower that has not heard from its leader for an election
/// timeout stops treating it as the leader for routing (see `cluster`).
#[derive(Debug)]
pub struct LeaderContact {
    origin: Instant,
    last_ms: AtomicU64,
}

/// `last_ms` value meaning "no contact since this process started": a
/// restarted follower must not treat the leader remembered from its saved
/// vote as live before that leader has actually reached it.
const NEVER: u64 = u64::MAX;

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(NEVER),
        }
    }
}

impl LeaderContact {
    pub fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        let _ = self
            .last_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur == NEVER || ms > cur).then_some(ms)
            });
    }

    /// Time since the last contact; `Duration::MAX` if there was none.
    pub fn since(&self) -> Duration {
        match self.last_ms.load(Ordering::Relaxed) {
            NEVER => Duration::MAX,
            last => self
                .origin
                .elapsed()
                .saturating_sub(Duration::from_millis(last)),
        }
    }
}

#[derive(Clone)]
struct RpcState {
    raft: Raft,
    info: NodeInfo,
    contact: Arc<LeaderContact>,
}

/// The router for the Raft listener.
pub fn router(raft: Raft, info: NodeInfo, contact: Arc<LeaderContact>) -> Router {
    Router::new()
        .route(APPEND, post(append))
        .route(VOTE, post(vote))
        .route(PRE_VOTE, post(pre_vote))
        .route(TRANSFER_LEADER, post(transfer_leader))
        .layer(DefaultBodyLimit::max(MAX_RPC_BODY))
        .merge(
            Router::new()
                .route(SNAPSHOT, post(snapshot))
                .layer(DefaultBodyLimit::max(MAX_SNAPSHOT_BODY)),
        )
        .route(INFO, get(node_info))
        .with_state(RpcState {
            raft,
            info,
            contact,
        })
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    rmp_serde::from_slice(body).map_err(|e| {
        Box::new((StatusCode::BAD_REQUEST, format!("malformed RPC body: {e}")).into_response())
    })
}

fn encode<T: Serialize>(v: &T) -> Response {
    match rmp_serde::to_vec_named(v) {
        Ok(b) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encode: {e}")).into_response(),
    }
}

fn fatal(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("raft unavailable: {e}"),
    )
        .into_response()
}

async fn append(State(s): State<RpcState>, body: Bytes) -> Response {
    let req: typ::AppendEntriesRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.raft.append_entries(req).await {
        Ok(resp) => {
            // Any answer but HigherVote means the sender is the current leader.
            if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
                s.contact.touch();
            }
            encode(&resp)
        }
        Err(e) => fatal(e),
    }
}

async fn vote(State(s): State<RpcState>, body: Bytes) -> Response {
    let req: typ::VoteRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.raft.vote(req).await {
        Ok(resp) => encode(&resp),
        Err(e) => fatal(e),
    }
}

async fn pre_vote(State(s): State<RpcState>, body: Bytes) -> Response {
    let req: typ::VoteRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.raft.pre_vote(req).await {
        Ok(resp) => encode(&resp),
        Err(e) => fatal(e),
    }
}

async fn snapshot(State(s): State<RpcState>, body: Bytes) -> Response {
    let req: SnapshotRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    // Reject a damaged snapshot before openraft hands it to the state machine.
    if let Err(e) = super::snapshot::verify_data(&req.data) {
        return (StatusCode::BAD_REQUEST, format!("snapshot rejected: {e}")).into_response();
    }
    let snap = typ::Snapshot {
        meta: req.meta,
        snapshot: std::io::Cursor::new(req.data),
    };
    match s.raft.install_full_snapshot(req.vote, snap).await {
        Ok(resp) => encode(&resp),
        Err(e) => fatal(e),
    }
}

async fn transfer_leader(State(s): State<RpcState>, body: Bytes) -> Response {
    let req: typ::TransferLeaderRequest = match decode(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.raft.handle_transfer_leader(req).await {
        Ok(resp) => encode(&resp),
        Err(e) => fatal(e),
    }
}

async fn node_info(State(s): State<RpcState>) -> Json<NodeInfo> {
    Json(s.raft_info())
}

impl RpcState {
    fn raft_info(&self) -> NodeInfo {
        self.info.clone()
    }
}
