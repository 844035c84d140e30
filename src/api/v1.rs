//! The native API: `/v1/kv/{key}` (raw bytes in and out, CAS, consistency
//! levels, index headers) and `/v1/cluster` (membership and leadership).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::delete;
use axum::routing::get;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::Flavor;
use super::INDEX;
use super::RAFT_INDEX;
use super::Raw;
use super::error::ApiError;
use super::error::render;
use super::keys;
use super::on_leader;
use crate::cluster::Consistency;
use crate::error::Error;
use crate::kv::Command;
use crate::kv::Response as KvResponse;
use crate::raft::NodeId;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/v1/cluster", get(cluster_status))
        .route("/v1/cluster/members", post(add_member))
        .route("/v1/cluster/members/{id}", delete(remove_member))
        .route("/v1/cluster/transfer-leader", post(transfer_leader))
        .route("/v1/status/digest", get(digest))
}

/// Query parameters of the kv routes.
#[derive(Debug, Default)]
struct KvQuery {
    cas: Option<u64>,
    consistency: Option<Consistency>,
}

fn kv_query(raw: &Raw) -> Result<KvQuery, Error> {
    let mut q = KvQuery::default();
    for (k, v) in raw.query()? {
        match k.as_str() {
            "cas" => {
                q.cas = Some(v.parse().map_err(|_| {
                    Error::InvalidInput(format!(
                        "invalid cas {v:?}: expected a modify index (unsigned integer)"
                    ))
                })?)
            }
            "consistency" => q.consistency = Some(keys::parse_consistency(&v)?),
            // `redirect` is handled by the forwarder; others are ignored,
            // as etcd and Consul do.
            _ => {}
        }
    }
    Ok(q)
}

fn path_key(raw: &Raw, max: usize) -> Result<String, Error> {
    keys::path_key(raw.uri.path(), "/v1/kv/", max)
}

fn header_u64(h: &mut HeaderMap, name: &'static str, v: u64) {
    h.insert(name, HeaderValue::from(v));
}

fn cas_failed(current: u64, raft_index: u64) -> Response {
    let msg = if current == 0 {
        "compare-and-set failed: the key does not exist".to_string()
    } else {
        format!("compare-and-set failed: the key's modify index is {current}")
    };
    let mut r = ApiError::new(StatusCode::PRECONDITION_FAILED, "cas_mismatch", msg)
        .with_extra("current_index", current.into())
        .render(Flavor::V1);
    header_u64(r.headers_mut(), INDEX, current);
    header_u64(r.headers_mut(), RAFT_INDEX, raft_index);
    r
}

async fn get_key(State(state): State<AppState>, raw: Raw) -> Response {
    let parsed =
        path_key(&raw, state.limits().max_key_bytes).and_then(|k| Ok((k, kv_query(&raw)?)));
    let (key, q) = match parsed {
        Ok(x) => x,
        Err(e) => return render(e, Flavor::V1),
    };
    let level = q.consistency.unwrap_or(Consistency::Linearizable);
    let read = || async {
        let r = state.cluster().read(&key, level).await?;
        Ok(match r.entry {
            None => {
                let mut resp =
                    ApiError::new(StatusCode::NOT_FOUND, "key_not_found", "key not found")
                        .render(Flavor::V1);
                header_u64(resp.headers_mut(), RAFT_INDEX, r.raft_index);
                resp
            }
            Some(e) => {
                let mut resp = e.value.into_response();
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                header_u64(h, INDEX, e.meta.modify_index);
                header_u64(h, RAFT_INDEX, r.raft_index);
                header_u64(h, "x-dcache-create-index", e.meta.create_index);
                header_u64(h, "x-dcache-version", e.meta.version);
                resp
            }
        })
    };
    match level {
        Consistency::Stale => read().await.unwrap_or_else(|e| render(e, Flavor::V1)),
        Consistency::Linearizable => on_leader(&state, &raw, Flavor::V1, read).await,
    }
}

async fn put_key(State(state): State<AppState>, raw: Raw) -> Response {
    let limits = state.limits().clone();
    let parsed = path_key(&raw, limits.max_key_bytes).and_then(|k| Ok((k, kv_query(&raw)?)));
    let (key, q) = match parsed {
        Ok(x) => x,
        Err(e) => return render(e, Flavor::V1),
    };
    if raw.body.len() > limits.max_value_bytes {
        let e = Error::TooLarge {
            what: "value",
            size: raw.body.len(),
            limit: limits.max_value_bytes,
        };
        return render(e, Flavor::V1);
    }
    on_leader(&state, &raw, Flavor::V1, || async {
        let cmd = Command::Set {
            key: key.clone(),
            value: raw.body.to_vec(),
            cas: q.cas,
        };
        let out = state.cluster().write(cmd).await?;
        Ok(match out.response {
            KvResponse::Set { meta } => {
                let mut r = Json(json!({
                    "key": key,
                    "modify_index": meta.modify_index,
                    "create_index": meta.create_index,
                    "version": meta.version,
                }))
                .into_response();
                header_u64(r.headers_mut(), INDEX, meta.modify_index);
                header_u64(r.headers_mut(), RAFT_INDEX, out.raft_index);
                r
            }
            KvResponse::CasFailed { current } => cas_failed(current, out.raft_index),
            other => unexpected(other),
        })
    })
    .await
}

async fn delete_key(State(state): State<AppState>, raw: Raw) -> Response {
    let parsed =
        path_key(&raw, state.limits().max_key_bytes).and_then(|k| Ok((k, kv_query(&raw)?)));
    let (key, q) = match parsed {
        Ok(x) => x,
        Err(e) => return render(e, Flavor::V1),
    };
    on_leader(&state, &raw, Flavor::V1, || async {
        let cmd = Command::Delete {
            key: key.clone(),
            cas: q.cas,
        };
        let out = state.cluster().write(cmd).await?;
        Ok(match out.response {
            KvResponse::Deleted { existed } => {
                let mut r = Json(json!({ "key": key, "deleted": existed })).into_response();
                header_u64(r.headers_mut(), INDEX, out.raft_index);
                header_u64(r.headers_mut(), RAFT_INDEX, out.raft_index);
                r
            }
            KvResponse::CasFailed { current } => cas_failed(current, out.raft_index),
            other => unexpected(other),
        })
    })
    .await
}

fn unexpected(r: KvResponse) -> Response {
    tracing::error!(response = ?r, "state machine returned an unexpected response");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected state machine response",
    )
    .render(Flavor::V1)
}

async fn cluster_status(State(state): State<AppState>) -> Response {
    Json(state.cluster().status()).into_response()
}

async fn digest(State(state): State<AppState>) -> Response {
    Json(state.cluster().reader().summary()).into_response()
}

#[derive(Deserialize)]
struct MemberBody {
    id: String,
    addr: String,
}

fn bad_json(e: serde_json::Error) -> Response {
    render(
        Error::InvalidInput(format!("invalid request body: {e}")),
        Flavor::V1,
    )
}

async fn add_member(State(state): State<AppState>, raw: Raw) -> Response {
    let body: MemberBody = match serde_json::from_slice(&raw.body) {
        Ok(b) => b,
        Err(e) => return bad_json(e),
    };
    if body.id.is_empty() {
        return render(
            Error::InvalidInput("id must not be empty".into()),
            Flavor::V1,
        );
    }
    if let Err(e) = super::seed::check_addr(&body.addr) {
        return render(e, Flavor::V1);
    }
    on_leader(&state, &raw, Flavor::V1, || async {
        state
            .cluster()
            .join(NodeId(body.id.clone()), body.addr.clone())
            .await?;
        Ok(Json(json!({ "id": body.id, "added": true })).into_response())
    })
    .await
}

async fn remove_member(State(state): State<AppState>, raw: Raw) -> Response {
    let rest = raw
        .uri
        .path()
        .strip_prefix("/v1/cluster/members/")
        .unwrap_or_default();
    let id = match keys::decode(rest, "member id") {
        Ok(id) => id,
        Err(e) => return render(e, Flavor::V1),
    };
    on_leader(&state, &raw, Flavor::V1, || async {
        state.cluster().remove(NodeId(id.clone())).await?;
        Ok(Json(json!({ "id": id, "removed": true })).into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
struct TransferBody {
    #[serde(default)]
    to: Option<String>,
}

async fn transfer_leader(State(state): State<AppState>, raw: Raw) -> Response {
    let body: TransferBody = if raw.body.is_empty() {
        TransferBody::default()
    } else {
        match serde_json::from_slice(&raw.body) {
            Ok(b) => b,
            Err(e) => return bad_json(e),
        }
    };
    on_leader(&state, &raw, Flavor::V1, || async {
        let new = state.cluster().transfer_leader(body.to.map(NodeId)).await?;
        Ok(Json(json!({ "leader": new.map(|n| n.0) })).into_response())
    })
    .await
}
