//! `POST /v1/txn`: a multi-key transaction as JSON, parsed into one
//! `kv::Command::Txn` and proposed through the write path (any node: a
//! follower forwards it), answered with the branch taken, each op's result
//! and the Raft index it was applied at.
//!
//! Body (README "Transactions"):
//! `{"compare": [{"key", "target", "op", "value"}], "success": [op],
//! "failure": [op]}`, op = `{"op": "put"|"delete"|"delete_prefix"|"get"|
//! "range", ...}`. Values follow `api::values` (`?encoding=`).
//!
//! Invariants:
//! - A malformed transaction is refused with 400 `invalid_input` before it
//!   is proposed, and the message names the part at fault (`compare[0]`,
//!   `success[2]`, `txn`); bounds are `kv::txn`'s plus the byte limit
//!   below.
//! - One transaction is one log entry: all of it or nothing is applied.
//!
//! Not here: the semantics (`kv::txn`), forwarding (`api::leader`).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;

use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use super::error::ApiResult;
use super::keys;
use super::leader;
use super::leader::Routed;
use super::values::Encoding;
use super::values::expires_json;
use super::values::parse_encoding;
use crate::kv::CmpOp;
use crate::kv::Command;
use crate::kv::Compare;
use crate::kv::KeyRange;
use crate::kv::Response as KvResponse;
use crate::kv::Target;
use crate::kv::Ttl;
use crate::kv::txn;
use crate::wire::header as h;

/// Page size of a `range` op without a `limit`.
pub const DEFAULT_RANGE_LIMIT: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    compare: Vec<Value>,
    #[serde(default)]
    success: Vec<Value>,
    #[serde(default)]
    failure: Vec<Value>,
}

// For the OpenAPI document: `Body` with the compares and ops as they
// parse (the doc comment below is the schema's description).
/// `POST /v1/txn` body (README "Transactions").
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TxnBody {
    /// All must hold for `success` to run, else `failure` runs.
    #[schema(value_type = Option<Vec<CompareJson>>)]
    pub compare: Option<Vec<serde_json::Value>>,
    #[schema(value_type = Option<Vec<OpJson>>)]
    pub success: Option<Vec<serde_json::Value>>,
    #[schema(value_type = Option<Vec<OpJson>>)]
    pub failure: Option<Vec<serde_json::Value>>,
}

/// One compare of a transaction: `target` is `value`, `version`,
/// `create_index`, `modify_index`, `exists` or `absent`; `op` is `=`
/// (default), `!=`, `<` or `>`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CompareJson {
    key: String,
    target: String,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    value: Option<Value>,
}

/// One operation of a transaction branch.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum OpJson {
    Put {
        key: String,
        value: String,
        #[serde(default)]
        ttl: Option<Value>,
        #[serde(default)]
        expire_at: Option<Value>,
        #[serde(default)]
        keepttl: bool,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
    Get {
        key: String,
    },
    Range {
        #[serde(default)]
        prefix: Option<String>,
        #[serde(default)]
        start: Option<String>,
        #[serde(default)]
        end: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default)]
        keys_only: bool,
    },
}

/// A JSON scalar as the text the query-string parsers take (`30`, `"30s"`).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_compare(v: Value, enc: Encoding, max_key: usize) -> Result<Compare, String> {
    let c: CompareJson = serde_json::from_value(v).map_err(|e| e.to_string())?;
    keys::validate(&c.key, max_key).map_err(|e| e.message)?;
    let op = match c.op.as_deref().unwrap_or("=") {
        "=" | "==" => CmpOp::Eq,
        "!=" => CmpOp::Ne,
        "<" => CmpOp::Lt,
        ">" => CmpOp::Gt,
        other => return Err(format!("unknown op {other:?}: expected =, !=, < or >")),
    };
    let number = || -> Result<u64, String> {
        c.value
            .as_ref()
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("target {} needs an unsigned integer value", c.target))
    };
    let target = match c.target.as_str() {
        "value" => {
            let Some(Value::String(s)) = &c.value else {
                return Err("target value needs a string value".into());
            };
            Target::Value {
                value: enc.decode(s, "value").map_err(|e| e.message)?,
            }
        }
        "version" => Target::Version { n: number()? },
        "create_index" => Target::CreateIndex { n: number()? },
        "modify_index" => Target::ModifyIndex { n: number()? },
        "exists" | "absent" if c.value.is_some() => {
            return Err(format!("target {} takes no value", c.target));
        }
        "exists" => Target::Exists,
        "absent" => Target::Absent,
        other => {
            return Err(format!(
                "unknown target {other:?}: expected value, version, create_index, modify_index, exists or absent"
            ));
        }
    };
    Ok(Compare {
        key: c.key,
        op,
        target,
    })
}

fn parse_op(v: Value, enc: Encoding, state: &AppState) -> Result<Command, String> {
    let limits = state.limits();
    let key_ok = |k: &str| keys::validate(k, limits.max_key_bytes).map_err(|e| e.message);
    let op: OpJson = serde_json::from_value(v).map_err(|e| e.to_string())?;
    Ok(match op {
        OpJson::Put {
            key,
            value,
            ttl,
            expire_at,
            keepttl,
        } => {
            key_ok(&key)?;
            let value = enc.decode(&value, "value").map_err(|e| e.message)?;
            if value.len() > limits.max_value_bytes {
                return Err(keys::too_large("value", value.len(), limits.max_value_bytes).message);
            }
            let ttl = match (ttl, expire_at, keepttl) {
                (Some(t), None, false) => {
                    Ttl::In(keys::parse_ttl("ttl", &scalar(&t)).map_err(|e| e.message)?)
                }
                (None, Some(t), false) => {
                    Ttl::At(keys::parse_deadline("expire_at", &scalar(&t)).map_err(|e| e.message)?)
                }
                (None, None, true) => Ttl::Keep,
                (None, None, false) => Ttl::Clear,
                _ => return Err("ttl, expire_at and keepttl exclude each other".into()),
            };
            Command::Set {
                key,
                value,
                cas: None,
                ttl,
            }
        }
        OpJson::Delete { key } => {
            key_ok(&key)?;
            Command::Delete { key, cas: None }
        }
        OpJson::DeletePrefix { prefix } => Command::DeletePrefix { prefix },
        OpJson::Get { key } => {
            key_ok(&key)?;
            Command::Get { key }
        }
        OpJson::Range {
            prefix,
            start,
            end,
            limit,
            keys_only,
        } => {
            let range = match (prefix, start) {
                (Some(prefix), None) if end.is_none() => KeyRange::Prefix { prefix },
                (None, Some(start)) => KeyRange::Between { start, end },
                _ => return Err("a range takes either prefix, or start (and end)".into()),
            };
            let limit = limit.unwrap_or(DEFAULT_RANGE_LIMIT);
            txn::check_limit(limit)?;
            Command::Range {
                range,
                limit,
                keys_only,
            }
        }
    })
}

/// Parse and check a transaction body into its command.
fn parse(state: &AppState, raw: &Raw, enc: Encoding) -> Result<Command, ApiError> {
    let body: Body = serde_json::from_slice(&raw.body)
        .map_err(|e| ApiError::invalid(format!("txn: invalid request body: {e}")))?;
    let max_key = state.limits().max_key_bytes;
    let named = |what: String| move |reason: String| ApiError::invalid(format!("{what}: {reason}"));
    let compare = body
        .compare
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_compare(v, enc, max_key).map_err(named(format!("compare[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let branch = |name: &str, ops: Vec<Value>| {
        ops.into_iter()
            .enumerate()
            .map(|(i, v)| parse_op(v, enc, state).map_err(named(format!("{name}[{i}]"))))
            .collect::<Result<Vec<_>, _>>()
    };
    let success = branch("success", body.success)?;
    let failure = branch("failure", body.failure)?;
    let max_bytes = state.limits().max_value_bytes as u64;
    txn::validate(&compare, &success, &failure, Some(max_bytes))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Command::Txn {
        compare,
        success,
        failure,
    })
}

/// One op's result as JSON.
fn result_json(op: &Command, r: &KvResponse, enc: Encoding, now_ms: u64) -> Value {
    let mut o = Map::new();
    let name = match op {
        Command::Set { .. } => "put",
        Command::Delete { .. } => "delete",
        Command::DeletePrefix { .. } => "delete_prefix",
        Command::Get { .. } => "get",
        Command::Range { .. } => "range",
        _ => "other",
    };
    o.insert("op".into(), name.into());
    if let Some(k) = op.key() {
        o.insert("key".into(), k.into());
    }
    match r {
        KvResponse::Set { meta, expires_at } => {
            o.insert("create_index".into(), meta.create_index.into());
            o.insert("modify_index".into(), meta.modify_index.into());
            o.insert("version".into(), meta.version.into());
            o.insert("expires_at".into(), expires_json(*expires_at));
        }
        KvResponse::Deleted { existed } => {
            o.insert("deleted".into(), (*existed).into());
        }
        KvResponse::DeletedPrefix { deleted, more } => {
            o.insert("deleted".into(), (*deleted).into());
            o.insert("more".into(), (*more).into());
        }
        KvResponse::Value { kv } => {
            o.insert("found".into(), kv.is_some().into());
            if let Some(kv) = kv
                && let Value::Object(m) = enc.kv(kv, false, now_ms)
            {
                o.extend(m);
            }
        }
        KvResponse::Range { kvs, more } => {
            let keys_only = matches!(
                op,
                Command::Range {
                    keys_only: true,
                    ..
                }
            );
            let kvs: Vec<Value> = kvs.iter().map(|kv| enc.kv(kv, keys_only, now_ms)).collect();
            o.insert("kvs".into(), kvs.into());
            o.insert("more".into(), (*more).into());
        }
        other => {
            o.insert("response".into(), format!("{other:?}").into());
        }
    }
    Value::Object(o)
}

/// `POST /v1/txn`.
#[utoipa::path(post, path = "/v1/txn", tag = "kv",
    params(("encoding" = Option<String>, Query, description = "`base64`: every value in the request and answer is base64 (default: UTF-8 text, `value_base64` for other bytes)")),
    request_body = TxnBody,
    responses(
        (status = 200, description = "Applied at one index: `succeeded` says which branch ran", body = super::schema::TxnAnswer,
            headers(("x-dcache-raft-index" = u64, description = "The Raft index of the transaction"))),
        super::schema::Errors))]
pub async fn post(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let mut enc = Encoding::default();
    for (k, v) in raw.query()? {
        if k == "encoding" {
            enc = parse_encoding(&v)?;
        }
    }
    let cmd = parse(&state, &raw, enc)?;
    let out = match leader::write(&state, &raw, cmd.clone()).await? {
        Routed::Forwarded(resp) => return Ok(resp),
        Routed::Here(out) => out,
    };
    let Command::Txn {
        success, failure, ..
    } = &cmd
    else {
        unreachable!("parse returns a txn")
    };
    match out.response {
        KvResponse::Txn { succeeded, results } => {
            let ops = if succeeded { success } else { failure };
            let now = state.cluster().stamp();
            let results: Vec<Value> = ops
                .iter()
                .zip(&results)
                .map(|(op, r)| result_json(op, r, enc, now))
                .collect();
            let body = json!({
                "succeeded": succeeded,
                "index": out.raft_index,
                "results": results,
            });
            let mut resp = Json(body).into_response();
            resp.headers_mut()
                .insert(h::RAFT_INDEX, HeaderValue::from(out.raft_index));
            Ok(resp)
        }
        KvResponse::OutOfMemory { needed, max } => Err(ApiError::out_of_memory(needed, max)),
        KvResponse::Invalid { op, reason } => Err(ApiError::invalid(format!("{op}: {reason}"))),
        other => Err(ApiError::unexpected(other)),
    }
}
