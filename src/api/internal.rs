//! `POST /internal/kv`: the leader end of a follower's forwarded Redis
//! command. The body is a MessagePack [`Op`] (a read to run linearizably,
//! or a `kv::Command` to propose: current followers hand writes over the
//! Raft listener instead, `cluster::forward`, and send one here only to a
//! leader that lacks that route); the answer is the MessagePack
//! `kv::Response`, or an [`ApiError`] with its code like every route.
//!
//! Invariants:
//! - Runs here or fails: never forwarded again (a node that is no longer
//!   the leader answers `not_leader`, and the forwarding node retries once
//!   leadership moved), so a command takes at most one hop.
//! - Bounded like every body ([`Raw`]); the deadline is the forwarder's
//!   budget.
//!
//! Not here: the RESP front end (`resp`), which sends these.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;

use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use crate::kv::redis::Op;
use crate::wire::Code;
use crate::wire::MSGPACK;

pub(super) async fn kv(State(state): State<AppState>, raw: Raw) -> Response {
    let op: Op = match rmp_serde::from_slice(&raw.body) {
        Ok(op) => op,
        Err(e) => {
            return ApiError::new(Code::InvalidInput, format!("bad /internal/kv body: {e}"))
                .into_response();
        }
    };
    let c = state.cluster();
    let res = c.run_op(&op, raw.deadline).await;
    match res {
        Ok(r) => match rmp_serde::to_vec_named(&r) {
            Ok(body) => {
                let mut resp = body.into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(MSGPACK));
                resp
            }
            Err(e) => ApiError::new(Code::Internal, format!("cannot encode the answer: {e}"))
                .into_response(),
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}
