//! The Go project's routes, kept byte-compatible in status codes and JSON
//! shapes: `/store`, `/store/{key}`, `/join`, `/leave`, `/stepdown`.
//! (`/health` lives in `admin`.)
//!
//! Differences from the seed, on purpose: reads are linearizable by default
//! (`?consistency=stale` opts out); keys may contain `/`; key and value sizes
//! are capped (413); writes are never silently lost on a follower.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::Flavor;
use super::Raw;
use super::error::ApiError;
use super::keys;
use super::on_leader;
use crate::cluster::Consistency;
use crate::error::Error;
use crate::kv::Command;
use crate::raft::NodeId;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/store", post(set))
        .route("/store/{*key}", get(get_key).delete(delete))
        .route("/join", post(join))
        .route("/leave", post(leave))
        .route("/stepdown", post(stepdown))
}

fn seed_error(status: StatusCode, msg: &str) -> Response {
    ApiError::new(status, "seed", msg).render(Flavor::Seed)
}

/// Map a failed write on a seed route to the seed's bodies; the error
/// classes the seed never had keep their own status and message.
fn write_failure(e: Error, generic: &str) -> Response {
    match e {
        Error::NoLeader | Error::NotLeader { .. } => {
            super::error::render(Error::NoLeader, Flavor::Seed)
        }
        e @ (Error::InvalidInput(_) | Error::TooLarge { .. } | Error::BodyTooLarge { .. }) => {
            super::error::render(e, Flavor::Seed)
        }
        e => {
            tracing::warn!(error = %e, "{generic}");
            seed_error(StatusCode::INTERNAL_SERVER_ERROR, generic)
        }
    }
}

/// The key from `/store/{key}`.
fn path_key(raw: &Raw, max: usize) -> Result<String, Error> {
    keys::path_key(raw.uri.path(), "/store/", max)
}

fn consistency(raw: &Raw) -> Result<Consistency, Error> {
    match raw.query()?.into_iter().find(|(k, _)| k == "consistency") {
        Some((_, v)) => keys::parse_consistency(&v),
        None => Ok(Consistency::Linearizable),
    }
}

#[derive(Deserialize)]
struct SetBody {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

async fn set(state: axum::extract::State<AppState>, raw: Raw) -> Response {
    let Ok(body) = serde_json::from_slice::<SetBody>(&raw.body) else {
        return seed_error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    let (key, value) = match (body.key, body.value) {
        (Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => (k, v),
        _ => return seed_error(StatusCode::BAD_REQUEST, "key and value are required"),
    };
    let limits = state.limits();
    if let Err(e) = keys::validate(&key, limits.max_key_bytes) {
        return super::error::render(e, Flavor::Seed);
    }
    if value.len() > limits.max_value_bytes {
        let e = Error::TooLarge {
            what: "value",
            size: value.len(),
            limit: limits.max_value_bytes,
        };
        return super::error::render(e, Flavor::Seed);
    }
    on_leader(&state, &raw, Flavor::Seed, || async {
        let cmd = Command::Set {
            key: key.clone(),
            value: value.into_bytes(),
            cas: None,
        };
        match state.cluster().write(cmd).await {
            Ok(_) => Ok((
                StatusCode::CREATED,
                Json(json!({ "key": key, "message": "value set successfully" })),
            )
                .into_response()),
            Err(e @ Error::NotLeader { .. }) => Err(e),
            Err(e) => Ok(write_failure(e, "failed to set value")),
        }
    })
    .await
}

async fn get_key(state: axum::extract::State<AppState>, raw: Raw) -> Response {
    let key = match path_key(&raw, state.limits().max_key_bytes) {
        Ok(k) => k,
        Err(e) => return super::error::render(e, Flavor::Seed),
    };
    let level = match consistency(&raw) {
        Ok(c) => c,
        Err(e) => return super::error::render(e, Flavor::Seed),
    };
    let read = || async {
        let r = state.cluster().read(&key, level).await?;
        Ok(match r.entry {
            None => seed_error(StatusCode::NOT_FOUND, "key not found"),
            Some(e) => match String::from_utf8(e.value) {
                Ok(value) => Json(json!({ "key": key, "value": value })).into_response(),
                Err(_) => seed_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "value is not valid UTF-8; read it with GET /v1/kv/{key}",
                ),
            },
        })
    };
    match level {
        Consistency::Stale => match read().await {
            Ok(r) => r,
            Err(e) => super::error::render(e, Flavor::Seed),
        },
        Consistency::Linearizable => on_leader(&state, &raw, Flavor::Seed, read).await,
    }
}

async fn delete(state: axum::extract::State<AppState>, raw: Raw) -> Response {
    let key = match path_key(&raw, state.limits().max_key_bytes) {
        Ok(k) => k,
        Err(e) => return super::error::render(e, Flavor::Seed),
    };
    on_leader(&state, &raw, Flavor::Seed, || async {
        let cmd = Command::Delete {
            key: key.clone(),
            cas: None,
        };
        match state.cluster().write(cmd).await {
            Ok(_) => Ok(
                Json(json!({ "key": key, "message": "value deleted successfully" }))
                    .into_response(),
            ),
            Err(e @ Error::NotLeader { .. }) => Err(e),
            Err(e) => Ok(write_failure(e, "failed to delete key")),
        }
    })
    .await
}

#[derive(Deserialize)]
struct JoinBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    addr: Option<String>,
}

/// Check that `addr` looks like host:port before dialling it.
pub fn check_addr(addr: &str) -> Result<(), Error> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid addr {addr:?}: expected host:port"
        )))
    }
}

/// Status for a failed membership request.
fn membership_failure(e: Error, what: &str) -> Response {
    let status = match &e {
        Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Unreachable(_) => StatusCode::BAD_GATEWAY,
        Error::NoLeader | Error::NotLeader { .. } | Error::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::warn!(error = %e, "{what}");
    seed_error(status, &format!("{what}: {e}"))
}

async fn join(state: axum::extract::State<AppState>, raw: Raw) -> Response {
    let Ok(body) = serde_json::from_slice::<JoinBody>(&raw.body) else {
        return seed_error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    let (id, addr) = match (body.id, body.addr) {
        (Some(i), Some(a)) if !i.is_empty() && !a.is_empty() => (i, a),
        _ => return seed_error(StatusCode::BAD_REQUEST, "id and addr are required"),
    };
    if let Err(e) = check_addr(&addr) {
        return membership_failure(e, "failed to join cluster");
    }
    on_leader(&state, &raw, Flavor::Seed, || async {
        match state.cluster().join(NodeId(id.clone()), addr.clone()).await {
            Ok(()) => {
                tracing::info!(id = %id, addr = %addr, "node joined");
                Ok(
                    Json(json!({ "id": id, "message": "node joined successfully" }))
                        .into_response(),
                )
            }
            Err(e @ Error::NotLeader { .. }) => Err(e),
            Err(e) => Ok(membership_failure(e, "failed to join cluster")),
        }
    })
    .await
}

#[derive(Deserialize)]
struct LeaveBody {
    #[serde(default)]
    id: Option<String>,
}

async fn leave(state: axum::extract::State<AppState>, raw: Raw) -> Response {
    let Ok(body) = serde_json::from_slice::<LeaveBody>(&raw.body) else {
        return seed_error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    let Some(id) = body.id.filter(|i| !i.is_empty()) else {
        return seed_error(StatusCode::BAD_REQUEST, "id is required");
    };
    on_leader(&state, &raw, Flavor::Seed, || async {
        match state.cluster().remove(NodeId(id.clone())).await {
            Ok(()) => Ok(Json(
                json!({ "id": id, "message": "node left configuration successfully" }),
            )
            .into_response()),
            Err(e @ Error::NotLeader { .. }) => Err(e),
            Err(e) => Ok(membership_failure(e, "failed to remove node")),
        }
    })
    .await
}

async fn stepdown(state: axum::extract::State<AppState>, raw: Raw) -> Response {
    on_leader(&state, &raw, Flavor::Seed, || async {
        match state.cluster().transfer_leader(None).await {
            Ok(_) => Ok(
                Json(json!({ "message": "leadership transfer initiated successfully" }))
                    .into_response(),
            ),
            Err(e @ Error::NotLeader { .. }) => Err(e),
            Err(e) => Ok(membership_failure(e, "failed to transfer leadership")),
        }
    })
    .await
}
