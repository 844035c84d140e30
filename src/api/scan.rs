//! `GET /v1/kv?prefix=P` (or `start`/`end`): paged, ordered range scans,
//! and `DELETE /v1/kv?prefix=P`: a prefix delete.
//!
//! A scan page is one read at the request's consistency level (linearizable
//! by default: forwarded to the leader like a key read). Its `cursor` is
//! opaque to clients (base64url of the last key returned); the next page
//! starts strictly after that key.
//!
//! Invariants (README "Scans", tested in tests/scan.rs):
//! - Keys come in byte order; within a scan driven by cursors, no key is
//!   returned twice and keys come in increasing order across pages.
//! - Each page is its own read (no MVCC): a key inserted behind the cursor
//!   is not returned, a key deleted before its page is read is not
//!   returned, and one changed between pages shows its value at the time of
//!   its page.
//! - A page holds at most `limit` keys (default 100, at most 10,000) and
//!   about 4 MiB of keys and values (at least one key).
//! - A prefix delete is one log entry removing at most 10,000 keys; `more`
//!   says keys are left.
//!
//! Not here: the walk (`kv::txn`), linearization (`cluster::scan`).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use serde_json::json;

use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use super::error::ApiResult;
use super::keys;
use super::leader;
use super::leader::Routed;
use super::leader::on_leader;
use super::txn::DEFAULT_RANGE_LIMIT;
use super::values::Encoding;
use super::values::parse_encoding;
use crate::cluster::Consistency;
use crate::cluster::Scan;
use crate::cluster::ScanOutcome;
use crate::kv::Command;
use crate::kv::KeyRange;
use crate::kv::Response as KvResponse;
use crate::kv::txn;
use crate::wire::header as h;

/// The parameters of a scan request.
pub struct ScanQuery {
    pub scan: Scan,
    pub consistency: Consistency,
    pub encoding: Encoding,
    /// Blocking query: `index` and `wait` (ms), see `api::watch`.
    pub index: Option<u64>,
    pub wait_ms: Option<u64>,
}

fn cursor_key(c: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "invalid cursor {c:?}: pass back the cursor of the previous page"
            ))
        })
}

fn cursor_of(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

pub fn parse_scan(state: &AppState, raw: &Raw) -> Result<ScanQuery, ApiError> {
    let max_key = state.limits().max_key_bytes;
    let bounded = |what: &str, v: String| {
        if v.len() > max_key {
            Err(keys::too_large(what, v.len(), max_key))
        } else {
            Ok(v)
        }
    };
    let (mut prefix, mut start, mut end, mut cursor) = (None, None, None, None);
    let mut limit = DEFAULT_RANGE_LIMIT;
    let (mut keys_only, mut count) = (false, false);
    let mut consistency = Consistency::Linearizable;
    let mut encoding = Encoding::default();
    let (mut index, mut wait_ms) = (None, None);
    for (k, v) in raw.query()? {
        match k.as_str() {
            "prefix" => prefix = Some(bounded("prefix", v)?),
            "start" => start = Some(bounded("start", v)?),
            "end" => end = Some(bounded("end", v)?),
            "cursor" => cursor = Some(cursor_key(&v)?),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| txn::check_limit(*l).is_ok())
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "invalid limit {v:?}: from 1 to {}",
                            txn::MAX_RANGE_LIMIT
                        ))
                    })?
            }
            "keys_only" => keys_only = keys::parse_flag("keys_only", &v)?,
            "count" => count = keys::parse_flag("count", &v)?,
            "consistency" => consistency = keys::parse_consistency(&v)?,
            "encoding" => encoding = parse_encoding(&v)?,
            "index" => index = Some(super::watch::parse_index(&v)?),
            "wait" => wait_ms = Some(super::watch::parse_wait(&v)?),
            _ => {}
        }
    }
    let range = match (prefix, start) {
        (Some(prefix), None) if end.is_none() => KeyRange::Prefix { prefix },
        (None, Some(start)) => KeyRange::Between { start, end },
        _ => {
            return Err(ApiError::invalid(
                "a scan takes prefix=P, or start=S (and end=E); not both",
            ));
        }
    };
    Ok(ScanQuery {
        scan: Scan {
            range,
            after: cursor,
            limit,
            keys_only,
            count,
        },
        consistency,
        encoding,
        index,
        wait_ms,
    })
}

/// A scan's JSON answer.
pub fn render(q: &ScanQuery, out: &ScanOutcome) -> axum::response::Response {
    let body = match out.count {
        Some(n) => json!({ "count": n, "index": out.raft_index }),
        None => {
            let kvs: Vec<Value> = out
                .page
                .kvs
                .iter()
                .map(|kv| q.encoding.kv(kv, q.scan.keys_only, out.now_ms))
                .collect();
            let cursor = match (out.page.more, out.page.kvs.last()) {
                (true, Some(last)) => Value::from(cursor_of(&last.key)),
                _ => Value::Null,
            };
            json!({
                "kvs": kvs,
                "more": out.page.more,
                "cursor": cursor,
                "index": out.raft_index,
            })
        }
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(h::RAFT_INDEX, HeaderValue::from(out.raft_index));
    resp
}

/// `GET /v1/kv?prefix=...`.
#[utoipa::path(get, path = "/v1/kv", tag = "kv",
    params(
        ("prefix" = Option<String>, Query, description = "Keys starting with this"),
        ("start" = Option<String>, Query, description = "Range start, inclusive (instead of prefix)"),
        ("end" = Option<String>, Query, description = "Range end, exclusive"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Keys per page (default 100)"),
        ("cursor" = Option<String>, Query, description = "From the previous page: continue after its last key"),
        ("keys_only" = Option<bool>, Query, description = "No values"),
        ("count" = Option<bool>, Query, description = "Only count the keys"),
        ("consistency" = Option<super::schema::Consistency>, Query, description = "`linearizable` (default) or `stale`"),
        ("encoding" = Option<String>, Query, description = "`base64`: every value in the request and answer is base64 (default: UTF-8 text, `value_base64` for other bytes)"),
        ("index" = Option<u64>, Query, description = "Blocking query: answer once this node has applied a change after this Raft index (or when `wait` ends)"),
        ("wait" = Option<String>, Query, description = "Longest wait of a blocking query (default 5m, at most 10m, plus up to 1/16 jitter)")),
    responses(
        (status = 200, description = "A page (or a count)", body = super::schema::ScanPage,
            headers(("x-dcache-raft-index" = u64, description = "The Raft index the page was read at"))),
        super::schema::Errors))]
pub async fn get(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let q = parse_scan(&state, &raw)?;
    if let Some(index) = q.index {
        let out = super::watch::blocking_scan(&state, &q.scan, q.wait_ms, index).await?;
        return Ok(render(&q, &out));
    }
    let scan = |d| state.cluster().scan(&q.scan, q.consistency, d);
    let out = match q.consistency {
        Consistency::Stale => scan(raw.deadline).await?,
        Consistency::Linearizable => match on_leader(&state, &raw, scan).await? {
            Routed::Forwarded(resp) => return Ok(resp),
            Routed::Here(out) => out,
        },
    };
    Ok(render(&q, &out))
}

/// `DELETE /v1/kv?prefix=P`.
#[utoipa::path(delete, path = "/v1/kv", tag = "kv",
    params(("prefix" = String, Query, description = "Delete the keys starting with this (non-empty); at most 10,000 per request")),
    responses(
        (status = 200, description = "Deleted (one log entry)", body = super::schema::PrefixDeleted,
            headers(("x-dcache-raft-index" = u64, description = "The Raft index of the delete"))),
        super::schema::Errors))]
pub async fn delete(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let mut prefix = None;
    for (k, v) in raw.query()? {
        if k == "prefix" {
            prefix = Some(v);
        }
    }
    let prefix = match prefix {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(ApiError::invalid(
                "DELETE /v1/kv takes a non-empty prefix=P (delete single keys with DELETE /v1/kv/{key})",
            ));
        }
    };
    keys::validate(&prefix, state.limits().max_key_bytes)?;
    let cmd = Command::DeletePrefix {
        prefix: prefix.clone(),
    };
    let out = match leader::write(&state, &raw, cmd).await? {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    match out.response {
        KvResponse::DeletedPrefix { deleted, more } => {
            let mut r = Json(json!({
                "prefix": prefix,
                "deleted": deleted,
                "more": more,
                "index": out.raft_index,
            }))
            .into_response();
            r.headers_mut()
                .insert(h::RAFT_INDEX, HeaderValue::from(out.raft_index));
            Ok(r)
        }
        other => Err(ApiError::unexpected(other)),
    }
}
