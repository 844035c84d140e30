//! The native API: `/v1/kv/{key}` (raw bytes in and out, CAS, consistency
//! levels, index headers) and `/v1/cluster` (membership and leadership).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::delete;
use axum::routing::get;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use super::error::ApiResult;
use super::keys;
use super::leader;
use super::leader::Routed;
use super::leader::on_leader;
use super::values::expires_json;
use super::values::rfc3339_ms;
use crate::cluster::Consistency;
use crate::cluster::ReadOutcome;
use crate::id::NodeId;
use crate::kv::Command;
use crate::kv::Response as KvResponse;
use crate::kv::Ttl;
use crate::wire::Code;
use crate::wire::header as h;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/kv/{*key}",
            get(get_key)
                .put(put_key)
                .post(expire_key)
                .delete(delete_key),
        )
        .route("/v1/kv", get(super::scan::get).delete(super::scan::delete))
        .route("/v1/txn", post(super::txn::post))
        .route("/v1/watch", get(super::watch::stream))
        .route("/v1/status", get(status))
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
    /// `ttl` (PUT) or `expire` (POST), in ms.
    ttl: Option<u64>,
    expire: Option<u64>,
    /// `expire_at`: an absolute deadline, ms since the epoch.
    expire_at: Option<u64>,
    keepttl: bool,
    persist: bool,
    /// Blocking query: return once the key changed after this index.
    index: Option<u64>,
    /// How long a blocking query may wait, in ms.
    wait_ms: Option<u64>,
}

fn kv_query(raw: &Raw) -> Result<KvQuery, ApiError> {
    let mut q = KvQuery::default();
    for (k, v) in raw.query()? {
        match k.as_str() {
            "cas" => {
                q.cas = Some(v.parse().map_err(|_| {
                    ApiError::invalid(format!(
                        "invalid cas {v:?}: expected a modify index (unsigned integer)"
                    ))
                })?)
            }
            "consistency" => q.consistency = Some(keys::parse_consistency(&v)?),
            "ttl" => q.ttl = Some(keys::parse_ttl("ttl", &v)?),
            "expire" => q.expire = Some(keys::parse_ttl("expire", &v)?),
            "expire_at" => q.expire_at = Some(keys::parse_deadline("expire_at", &v)?),
            "keepttl" => q.keepttl = keys::parse_flag("keepttl", &v)?,
            "persist" => q.persist = keys::parse_flag("persist", &v)?,
            "index" => q.index = Some(super::watch::parse_index(&v)?),
            "wait" => q.wait_ms = Some(super::watch::parse_wait(&v)?),
            // `redirect` is handled by the forwarder; others are ignored,
            // as etcd and Consul do.
            _ => {}
        }
    }
    Ok(q)
}

/// The key and query of a `/v1/kv/{key}` request.
fn kv_request(state: &AppState, raw: &Raw) -> Result<(String, KvQuery), ApiError> {
    let key = keys::path_key(raw.uri.path(), "/v1/kv/", state.limits().max_key_bytes)?;
    Ok((key, kv_query(raw)?))
}

fn header_u64(h: &mut HeaderMap, name: &'static str, v: u64) {
    h.insert(name, HeaderValue::from(v));
}

/// `X-Dcache-Expires-At` and `X-Dcache-TTL-Ms` for a key with a deadline.
fn ttl_headers(h: &mut HeaderMap, expires_at: u64, now_ms: u64) {
    if expires_at == 0 {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&rfc3339_ms(expires_at)) {
        h.insert(h::EXPIRES_AT, v);
    }
    header_u64(h, h::TTL_MS, expires_at.saturating_sub(now_ms));
}

fn cas_failed(current: u64, raft_index: u64) -> ApiError {
    let msg = if current == 0 {
        "compare-and-set failed: the key does not exist".to_string()
    } else {
        format!("compare-and-set failed: the key's modify index is {current}")
    };
    let mut e = ApiError::new(Code::CasMismatch, msg)
        .with_header(h::INDEX, current)
        .with_header(h::RAFT_INDEX, raft_index);
    e.current_index = Some(current);
    e
}

/// Read a key: its value as raw bytes, metadata in headers.
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "The key (UTF-8; may contain `/`; percent-encode other reserved characters)"),
        ("consistency" = Option<super::schema::Consistency>, Query, description = "`linearizable` (default) or `stale` (this node's state, may lag)"),
        ("redirect" = Option<bool>, Query, description = "On a follower, answer 307 to the leader instead of forwarding"),
        ("index" = Option<u64>, Query, description = "Blocking query: answer once this node has applied a change after this Raft index (or when `wait` ends)"),
        ("wait" = Option<String>, Query, description = "Longest wait of a blocking query (default 5m, at most 10m, plus up to 1/16 jitter)")),
    responses(
        (status = 200, description = "The value", content_type = "application/octet-stream", body = String,
            headers(("x-dcache-index" = u64, description = "The key's modify index"), ("x-dcache-raft-index" = u64, description = "The Raft index the answer was served at"),
                ("x-dcache-create-index" = u64, description = "The index that created the key"),
                ("x-dcache-version" = u64, description = "Writes since creation"),
                ("x-dcache-expires-at" = String, description = "The deadline (RFC 3339, ms), keys with a TTL only"),
                ("x-dcache-ttl-ms" = u64, description = "Milliseconds left, keys with a TTL only"))),
        super::schema::Errors))]
pub(super) async fn get_key(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let (key, q) = kv_request(&state, &raw)?;
    if let Some(index) = q.index {
        let out = super::watch::blocking_key(&state, &key, index, q.wait_ms).await?;
        return key_response(out);
    }
    let level = q.consistency.unwrap_or(Consistency::Linearizable);
    let out = match leader::read(&state, &raw, &key, level).await? {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    key_response(out)
}

/// A key read's answer: the raw value with the index and TTL headers, or
/// 404.
fn key_response(out: ReadOutcome) -> ApiResult {
    let Some(e) = out.entry else {
        return Err(ApiError::new(Code::KeyNotFound, "key not found")
            .with_header(h::RAFT_INDEX, out.raft_index));
    };
    let mut resp = e.value.into_response();
    let hs = resp.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    header_u64(hs, h::INDEX, e.meta.modify_index);
    header_u64(hs, h::RAFT_INDEX, out.raft_index);
    header_u64(hs, h::CREATE_INDEX, e.meta.create_index);
    header_u64(hs, h::VERSION, e.meta.version);
    ttl_headers(hs, e.expires_at, out.now_ms);
    Ok(resp)
}

/// Write a key (the body is the value, raw bytes).
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "The key (UTF-8; may contain `/`; percent-encode other reserved characters)"),
        ("cas" = Option<u64>, Query, description = "Only if the key's modify index is this (0: only if absent)"),
        ("ttl" = Option<String>, Query, description = "Time to live: `500ms`, `30s`, `10m`, `1h`, or an integer of seconds (1 ms to 10 years)"),
        ("expire_at" = Option<String>, Query, description = "Absolute deadline: ms since the epoch or RFC 3339"),
        ("keepttl" = Option<bool>, Query, description = "Keep the key's current TTL (a write without ttl clears it)")),
    request_body(content = String, content_type = "application/octet-stream", description = "The value"),
    responses(
        (status = 200, description = "Written", body = super::schema::PutAnswer, headers(("x-dcache-index" = u64, description = "The key's modify index"), ("x-dcache-raft-index" = u64, description = "The Raft index the answer was served at"))),
        super::schema::Errors))]
pub(super) async fn put_key(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let (key, q) = kv_request(&state, &raw)?;
    let max = state.limits().max_value_bytes;
    if raw.body.len() > max {
        return Err(keys::too_large("value", raw.body.len(), max));
    }
    if q.expire.is_some() || q.persist {
        return Err(ApiError::invalid(
            "expire and persist go with POST /v1/kv/{key}; PUT takes ttl, expire_at or keepttl",
        ));
    }
    let ttl = match (q.ttl, q.expire_at, q.keepttl) {
        (Some(ms), None, false) => Ttl::In(ms),
        (None, Some(at), false) => Ttl::At(at),
        (None, None, true) => Ttl::Keep,
        (None, None, false) => Ttl::Clear,
        _ => {
            return Err(ApiError::invalid(
                "ttl, expire_at and keepttl=true exclude each other",
            ));
        }
    };
    let cmd = Command::Set {
        key: key.clone(),
        value: raw.body.to_vec(),
        cas: q.cas,
        ttl,
    };
    let out = match leader::write(&state, &raw, cmd).await? {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    match out.response {
        KvResponse::Set { meta, expires_at } => {
            let mut r = Json(json!({
                "key": key,
                "modify_index": meta.modify_index,
                "create_index": meta.create_index,
                "version": meta.version,
                "expires_at": expires_json(expires_at),
            }))
            .into_response();
            header_u64(r.headers_mut(), h::INDEX, meta.modify_index);
            header_u64(r.headers_mut(), h::RAFT_INDEX, out.raft_index);
            Ok(r)
        }
        KvResponse::CasFailed { current } => Err(cas_failed(current, out.raft_index)),
        KvResponse::OutOfMemory { needed, max } => Err(ApiError::out_of_memory(needed, max)),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Set, refresh or remove the TTL of an existing key.
#[utoipa::path(post, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "The key (UTF-8; may contain `/`; percent-encode other reserved characters)"),
        ("expire" = Option<String>, Query, description = "New time to live (as `ttl`)"),
        ("expire_at" = Option<String>, Query, description = "New absolute deadline"),
        ("persist" = Option<bool>, Query, description = "Remove the TTL")),
    responses(
        (status = 200, description = "The key's deadline now", body = super::schema::ExpireAnswer,
            headers(("x-dcache-raft-index" = u64, description = "The Raft index the answer was served at"))),
        super::schema::Errors))]
pub(super) async fn expire_key(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let (key, q) = kv_request(&state, &raw)?;
    let ttl = match (q.expire, q.expire_at, q.persist) {
        (Some(ms), None, false) => Ttl::In(ms),
        (None, Some(at), false) => Ttl::At(at),
        (None, None, true) => Ttl::Clear,
        _ => {
            return Err(ApiError::invalid(
                "POST /v1/kv/{key} takes exactly one of expire=<duration>, expire_at=<time> or persist=true",
            ));
        }
    };
    let cmd = Command::Expire {
        key: key.clone(),
        ttl,
    };
    let out = match leader::write(&state, &raw, cmd).await? {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    match out.response {
        KvResponse::Expired {
            found: true,
            expires_at,
        } => {
            let mut r =
                Json(json!({ "key": key, "expires_at": expires_json(expires_at) })).into_response();
            header_u64(r.headers_mut(), h::RAFT_INDEX, out.raft_index);
            Ok(r)
        }
        KvResponse::Expired { found: false, .. } => {
            Err(ApiError::new(Code::KeyNotFound, "key not found")
                .with_header(h::RAFT_INDEX, out.raft_index))
        }
        KvResponse::OutOfMemory { needed, max } => Err(ApiError::out_of_memory(needed, max)),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Delete a key.
#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "The key (UTF-8; may contain `/`; percent-encode other reserved characters)"),
        ("cas" = Option<u64>, Query, description = "Only if the key's modify index is this")),
    responses(
        (status = 200, description = "Deleted, or absent (`deleted: false`)", body = super::schema::DeleteAnswer, headers(("x-dcache-index" = u64, description = "The key's modify index"), ("x-dcache-raft-index" = u64, description = "The Raft index the answer was served at"))),
        super::schema::Errors))]
pub(super) async fn delete_key(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let (key, q) = kv_request(&state, &raw)?;
    let cmd = Command::Delete {
        key: key.clone(),
        cas: q.cas,
    };
    let out = match leader::write(&state, &raw, cmd).await? {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    match out.response {
        KvResponse::Deleted { existed } => {
            let mut r = Json(json!({ "key": key, "deleted": existed })).into_response();
            header_u64(r.headers_mut(), h::INDEX, out.raft_index);
            header_u64(r.headers_mut(), h::RAFT_INDEX, out.raft_index);
            Ok(r)
        }
        KvResponse::CasFailed { current } => Err(cas_failed(current, out.raft_index)),
        other => Err(ApiError::unexpected(other)),
    }
}

/// Members, roles, leader, term and indexes as this node sees them.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    responses((status = 200, description = "This node's view", body = crate::cluster::Status), super::schema::Errors))]
pub(super) async fn cluster_status(State(state): State<AppState>) -> Response {
    Json(state.cluster().status()).into_response()
}

/// The applied index and a digest of the state: replicas at the same index have the same digest.
#[utoipa::path(get, path = "/v1/status/digest", tag = "cluster",
    responses((status = 200, description = "Applied index and digest", body = crate::cluster::StateSummary), super::schema::Errors))]
pub(super) async fn digest(State(state): State<AppState>) -> Response {
    Json(state.cluster().digest()).into_response()
}

/// Cache statistics (README "Cache statistics").
#[utoipa::path(get, path = "/v1/status", tag = "cluster",
    responses((status = 200, description = "This node's cache figures", body = crate::cluster::CacheStatus), super::schema::Errors))]
pub(super) async fn status(State(state): State<AppState>) -> Response {
    Json(state.cluster().cache_status()).into_response()
}

fn json_body<T: serde::de::DeserializeOwned>(raw: &Raw) -> Result<T, ApiError> {
    serde_json::from_slice(&raw.body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

/// Our JSON answer, or the leader's.
fn done<T>(r: Routed<T>, ours: impl FnOnce(T) -> serde_json::Value) -> Response {
    match r {
        Routed::Here(v) => Json(ours(v)).into_response(),
        Routed::Forwarded(resp) => resp,
    }
}

#[derive(Deserialize)]
struct MemberBody {
    id: String,
    addr: String,
}

/// Add a running node: probed, added as a learner, caught up, promoted.
#[utoipa::path(post, path = "/v1/cluster/members", tag = "cluster",
    request_body = super::schema::MemberBody,
    responses((status = 200, description = "A voter now", body = super::schema::MemberAdded), super::schema::Errors))]
pub(super) async fn add_member(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let body: MemberBody = json_body(&raw)?;
    if body.id.is_empty() {
        return Err(ApiError::invalid("id must not be empty"));
    }
    super::seed::check_addr(&body.addr)?;
    let id = NodeId(body.id.clone());
    let r = on_leader(&state, &raw, |d| {
        state.cluster().join(id.clone(), body.addr.clone(), d)
    })
    .await?;
    Ok(done(r, |()| json!({ "id": body.id, "added": true })))
}

/// Remove a member.
#[utoipa::path(delete, path = "/v1/cluster/members/{id}", tag = "cluster",
    params(("id" = String, Path, description = "The member's id")),
    responses((status = 200, description = "Removed", body = super::schema::MemberRemoved), super::schema::Errors))]
pub(super) async fn remove_member(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let rest = raw
        .uri
        .path()
        .strip_prefix("/v1/cluster/members/")
        .unwrap_or_default();
    let id = keys::decode(rest, "member id")?;
    let r = on_leader(&state, &raw, |d| {
        state.cluster().remove(NodeId(id.clone()), d)
    })
    .await?;
    Ok(done(r, |()| json!({ "id": id, "removed": true })))
}

#[derive(Deserialize, Default)]
struct TransferBody {
    #[serde(default)]
    to: Option<String>,
}

/// Hand leadership to `to`, or to the most up-to-date voter.
#[utoipa::path(post, path = "/v1/cluster/transfer-leader", tag = "cluster",
    request_body(content = Option<super::schema::TransferBody>, description = "Empty, or `{\"to\": id}`"),
    responses((status = 200, description = "The new leader", body = super::schema::Transferred), super::schema::Errors))]
pub(super) async fn transfer_leader(State(state): State<AppState>, raw: Raw) -> ApiResult {
    // An empty body or JSON `null`: the best voter.
    let body: TransferBody = if raw.body.is_empty() {
        TransferBody::default()
    } else {
        json_body::<Option<TransferBody>>(&raw)?.unwrap_or_default()
    };
    let to = body.to.map(NodeId);
    let r = on_leader(&state, &raw, |d| {
        state.cluster().transfer_leader(to.clone(), d)
    })
    .await?;
    Ok(done(r, |new| json!({ "leader": new.map(|n| n.0) })))
}
