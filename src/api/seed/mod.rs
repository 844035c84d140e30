//! The Go project's routes, byte-compatible in status codes and bodies
//! where the seed has them: `/store`, `/store/{key}`, `/join`, `/leave`,
//! `/stepdown` (`/health` lives in `admin`). Bodies are encoded as Go's
//! `json.Encoder` writes them ([`render`]); tests/golden/seed holds the
//! exact exchanges.
//!
//! Errors are [`ApiError`]s like everywhere else: the body follows the
//! seed, the true code travels in `X-Dcache-Error`, so a seed client can
//! tell "not applied" from "outcome unknown" too.
//!
//! Differences from the seed, on purpose: reads are linearizable by default
//! (`?consistency=stale` opts out); keys may contain `/`; key and value sizes
//! are capped (413); membership requests are checked (409/404/502).

pub mod render;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

pub use self::render::go_json;
pub use self::render::render;
pub use self::render::respond;
use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use super::keys;
use super::leader;
use super::leader::Routed;
use super::leader::on_leader;
use crate::id::NodeId;
use crate::kv::Command;
use crate::kv::Response as KvResponse;
use crate::kv::Ttl;
use crate::wire::Code;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/store", post(set))
        .route("/store/{*key}", get(get_key).delete(delete))
        .route("/join", post(join))
        .route("/leave", post(leave))
        .route("/stepdown", post(stepdown))
}

/// A seed handler's error: rendered with the route's 500 message.
pub struct SeedError {
    err: ApiError,
    failure: &'static str,
}

impl axum::response::IntoResponse for SeedError {
    fn into_response(self) -> Response {
        render(self.err, self.failure)
    }
}

type SeedResult = Result<Response, SeedError>;

/// Attach a route's 500 message to errors.
fn on_failure(failure: &'static str) -> impl Fn(ApiError) -> SeedError {
    move |err| SeedError { err, failure }
}

const FAILED_SET: &str = "failed to set value";
const FAILED_DELETE: &str = "failed to delete key";
const FAILED_GET: &str = "failed to get value";
const FAILED_JOIN: &str = "failed to join cluster";
const FAILED_LEAVE: &str = "failed to remove node";
const FAILED_STEPDOWN: &str = "failed to transfer leadership";

/// The leader's answer as it came, or ours.
fn done<T>(r: Routed<T>, ours: impl FnOnce(T) -> Response) -> Response {
    match r {
        Routed::Here(v) => ours(v),
        Routed::Forwarded(resp) => resp,
    }
}

#[derive(Deserialize)]
struct SetBody {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    /// dcache's addition: seconds (a number) or a duration string.
    #[serde(default)]
    ttl: Option<serde_json::Value>,
}

/// The optional `"ttl"` of a `/store` body: seconds, or a duration string.
fn body_ttl(v: Option<serde_json::Value>) -> Result<Ttl, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(Ttl::Clear),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(secs) => Ok(Ttl::In(keys::parse_ttl("ttl", &secs.to_string())?)),
            None => Err(ApiError::invalid(format!(
                "invalid ttl {n}: expected whole seconds or a duration such as \"30s\""
            ))),
        },
        Some(serde_json::Value::String(s)) => Ok(Ttl::In(keys::parse_ttl("ttl", &s)?)),
        Some(other) => Err(ApiError::invalid(format!(
            "invalid ttl {other}: expected whole seconds or a duration such as \"30s\""
        ))),
    }
}

#[utoipa::path(post, path = "/store", tag = "seed",
    request_body = super::schema::SeedSet,
    responses((status = 201, description = "Set", body = super::schema::SeedMessage), super::schema::Errors))]
pub(super) async fn set(State(state): State<AppState>, raw: Raw) -> SeedResult {
    let fail = on_failure(FAILED_SET);
    let body: SetBody = serde_json::from_slice(&raw.body)
        .map_err(|_| fail(ApiError::invalid("invalid request body")))?;
    let (key, value) = match (body.key, body.value) {
        (Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => (k, v),
        _ => return Err(fail(ApiError::invalid("key and value are required"))),
    };
    let ttl = body_ttl(body.ttl).map_err(&fail)?;
    let limits = state.limits();
    keys::validate(&key, limits.max_key_bytes).map_err(&fail)?;
    if value.len() > limits.max_value_bytes {
        return Err(fail(keys::too_large(
            "value",
            value.len(),
            limits.max_value_bytes,
        )));
    }
    let cmd = Command::Set {
        key: key.clone(),
        value: value.into_bytes(),
        cas: None,
        ttl,
    };
    let out = match leader::write(&state, &raw, cmd).await.map_err(&fail)? {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    if let KvResponse::OutOfMemory { needed, max } = out.response {
        return Err(fail(ApiError::out_of_memory(needed, max)));
    }
    let body = json!({ "key": key, "message": "value set successfully" });
    Ok(respond(StatusCode::CREATED, body))
}

#[utoipa::path(get, path = "/store/{key}", tag = "seed",
    params(("key" = String, Path, description = "The key"),
        ("consistency" = Option<super::schema::Consistency>, Query, description = "`linearizable` (default) or `stale`")),
    responses((status = 200, description = "The value (UTF-8)", body = super::schema::SeedValue), super::schema::Errors))]
pub(super) async fn get_key(State(state): State<AppState>, raw: Raw) -> SeedResult {
    let fail = on_failure(FAILED_GET);
    let key =
        keys::path_key(raw.uri.path(), "/store/", state.limits().max_key_bytes).map_err(&fail)?;
    let level = keys::consistency(&raw.query().map_err(&fail)?).map_err(&fail)?;
    let out = match leader::read(&state, &raw, &key, level)
        .await
        .map_err(&fail)?
    {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    let Some(entry) = out.entry else {
        return Err(fail(ApiError::new(Code::KeyNotFound, "key not found")));
    };
    match String::from_utf8(entry.value) {
        Ok(value) => Ok(respond(
            StatusCode::OK,
            json!({ "key": key, "value": value }),
        )),
        Err(_) => Err(fail(ApiError::new(
            Code::NotUtf8,
            "value is not valid UTF-8; read it with GET /v1/kv/{key}",
        ))),
    }
}

#[utoipa::path(delete, path = "/store/{key}", tag = "seed",
    params(("key" = String, Path, description = "The key")),
    responses((status = 200, description = "Deleted (also when absent, as the seed)", body = super::schema::SeedMessage), super::schema::Errors))]
pub(super) async fn delete(State(state): State<AppState>, raw: Raw) -> SeedResult {
    let fail = on_failure(FAILED_DELETE);
    let key =
        keys::path_key(raw.uri.path(), "/store/", state.limits().max_key_bytes).map_err(&fail)?;
    let cmd = Command::Delete {
        key: key.clone(),
        cas: None,
    };
    let r = leader::write(&state, &raw, cmd).await.map_err(&fail)?;
    let body = json!({ "key": key, "message": "value deleted successfully" });
    Ok(done(r, |_| respond(StatusCode::OK, body)))
}

#[derive(Deserialize)]
struct JoinBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    addr: Option<String>,
}

/// Check that `addr` looks like host:port before anyone dials it.
pub fn check_addr(addr: &str) -> Result<(), ApiError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid addr {addr:?}: expected host:port"
        )))
    }
}

#[utoipa::path(post, path = "/join", tag = "seed",
    request_body = super::schema::MemberBody,
    responses((status = 200, description = "Joined", body = super::schema::SeedMessage), super::schema::Errors))]
pub(super) async fn join(State(state): State<AppState>, raw: Raw) -> SeedResult {
    let fail = on_failure(FAILED_JOIN);
    let body: JoinBody = serde_json::from_slice(&raw.body)
        .map_err(|_| fail(ApiError::invalid("invalid request body")))?;
    let (id, addr) = match (body.id, body.addr) {
        (Some(i), Some(a)) if !i.is_empty() && !a.is_empty() => (i, a),
        _ => return Err(fail(ApiError::invalid("id and addr are required"))),
    };
    check_addr(&addr).map_err(&fail)?;
    let r = on_leader(&state, &raw, |d| {
        state.cluster().join(NodeId(id.clone()), addr.clone(), d)
    })
    .await
    .map_err(&fail)?;
    Ok(done(r, |()| {
        tracing::info!(id = %id, addr = %addr, "node joined");
        respond(
            StatusCode::OK,
            json!({ "id": id, "message": "node joined successfully" }),
        )
    }))
}

#[derive(Deserialize)]
struct LeaveBody {
    #[serde(default)]
    id: Option<String>,
}

#[utoipa::path(post, path = "/leave", tag = "seed",
    request_body = super::schema::SeedLeave,
    responses((status = 200, description = "Removed", body = super::schema::SeedMessage), super::schema::Errors))]
pub(super) async fn leave(State(state): State<AppState>, raw: Raw) -> SeedResult {
    let fail = on_failure(FAILED_LEAVE);
    let body: LeaveBody = serde_json::from_slice(&raw.body)
        .map_err(|_| fail(ApiError::invalid("invalid request body")))?;
    let Some(id) = body.id.filter(|i| !i.is_empty()) else {
        return Err(fail(ApiError::invalid("id is required")));
    };
    let r = on_leader(&state, &raw, |d| {
        state.cluster().remove(NodeId(id.clone()), d)
    })
    .await
    .map_err(&fail)?;
    Ok(done(r, |()| {
        respond(
            StatusCode::OK,
            json!({ "id": id, "message": "node left configuration successfully" }),
        )
    }))
}

#[utoipa::path(post, path = "/stepdown", tag = "seed",
    responses((status = 200, description = "Leadership handed over", body = super::schema::SeedMessage), super::schema::Errors))]
pub(super) async fn stepdown(State(state): State<AppState>, raw: Raw) -> SeedResult {
    let fail = on_failure(FAILED_STEPDOWN);
    let r = on_leader(&state, &raw, |d| state.cluster().transfer_leader(None, d))
        .await
        .map_err(&fail)?;
    Ok(done(r, |_| {
        respond(
            StatusCode::OK,
            json!({ "message": "leadership transfer initiated successfully" }),
        )
    }))
}
