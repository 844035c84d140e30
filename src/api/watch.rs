//! Watching for changes: blocking queries (`?index=N&wait=30s` on a key or
//! a scan) and the event stream `GET /v1/watch?prefix=P&since=N`
//! (Server-Sent Events), both served by the node they reach, from its
//! applied state and its watch history (`cluster::watch`), never
//! forwarded.
//!
//! Invariants (README "Watch", tests/watch.rs):
//! - A stream sends one SSE event per Raft index that changed a key under
//!   the prefix, with `id:` = that index, in log order: no gaps, no
//!   duplicates, and `Last-Event-ID` (or `since`) resumes after an index on
//!   any node, because every replica applies the same log and reports the
//!   same changes.
//! - `since` older than the node's history is 410 `compacted`, with the
//!   oldest index it can serve in `X-Dcache-Oldest-Index`; never a stream
//!   with a hole.
//! - Bounded: `watch.max_watchers` streams per node (503
//!   `too_many_watchers` past it); each stream buffers at most
//!   [`STREAM_BUFFER`] events; a client that takes none for
//!   `watch.slow_consumer_ms`, or falls behind the history, is cut with a
//!   final `cut` event saying why and where to resume.
//! - A blocking query answers as soon as the node has applied a change of
//!   what it reads after `index`, else when `wait` (at most 10 minutes,
//!   plus up to 1/16 jitter) ends; the answer is this node's state then.
//!
//! Not here: the history (`cluster::watch`), scans (`api::scan`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::IntoResponse;
use rand::Rng;
use serde_json::Map;
use serde_json::Value;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use super::keys;

use super::error::ApiResult;
use super::values::Encoding;
use super::values::expires_json;
use super::values::parse_encoding;
use crate::cluster::Consistency;
use crate::cluster::ReadOutcome;
use crate::cluster::Scan;
use crate::cluster::ScanOutcome;
use crate::cluster::watch::Group;
use crate::cluster::watch::WatchHub;
use crate::kv::ChangeKind;
use crate::wire::Code;
use crate::wire::header as h;

/// Longest `wait` of a blocking query (Consul's).
pub const MAX_WAIT_MS: u64 = 10 * 60 * 1000;
/// `wait` when a blocking query gives none (Consul's).
pub const DEFAULT_WAIT_MS: u64 = 5 * 60 * 1000;
/// Events a stream holds for a client that has not read them yet.
pub const STREAM_BUFFER: usize = 64;
/// A comment line sent on an idle stream this often, so proxies keep it
/// open and a dead client is noticed.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The `index` of a blocking query.
pub fn parse_index(v: &str) -> Result<u64, ApiError> {
    v.parse().map_err(|_| {
        ApiError::invalid(format!(
            "invalid index {v:?}: expected a Raft index (unsigned integer)"
        ))
    })
}

/// The `wait` of a blocking query: a duration (`30s`, `5m`) or seconds, at
/// most 10 minutes. Returns ms.
pub fn parse_wait(v: &str) -> Result<u64, ApiError> {
    let ms = keys::parse_ttl("wait", v)?;
    if ms > MAX_WAIT_MS {
        return Err(ApiError::invalid(format!(
            "invalid wait {v:?}: at most 10m"
        )));
    }
    Ok(ms)
}

/// When a blocking query gives up: `wait` plus up to 1/16 of it, random,
/// so that many clients do not come back at once.
fn wait_until(wait_ms: Option<u64>) -> Instant {
    let ms = wait_ms.unwrap_or(DEFAULT_WAIT_MS);
    let jitter = rand::thread_rng().gen_range(0..=ms / 16);
    Instant::now() + Duration::from_millis(ms + jitter)
}

/// `GET /v1/kv/{key}?index=N`: wait for a change of `key` after `index`,
/// then read it here.
pub async fn blocking_key(
    state: &AppState,
    key: &str,
    index: u64,
    wait_ms: Option<u64>,
) -> Result<ReadOutcome, ApiError> {
    let until = wait_until(wait_ms);
    let cluster = state.cluster();
    cluster
        .watch()
        .wait_change(index, |k| k == key, until)
        .await;
    Ok(cluster.read(key, Consistency::Stale, until).await?)
}

/// `GET /v1/kv?prefix=P&index=N`: wait (up to `wait_ms`) for a change in
/// the range after `index`, then scan it here.
pub async fn blocking_scan(
    state: &AppState,
    scan: &Scan,
    wait_ms: Option<u64>,
    index: u64,
) -> Result<ScanOutcome, ApiError> {
    let until = wait_until(wait_ms);
    let cluster = state.cluster();
    let range = &scan.range;
    cluster
        .watch()
        .wait_change(index, |k| range.holds(k.as_bytes()), until)
        .await;
    Ok(cluster.scan(scan, Consistency::Stale, until).await?)
}

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Put => "put",
        ChangeKind::Delete => "delete",
        ChangeKind::Expire => "expire",
        ChangeKind::Evict => "evict",
    }
}

/// One SSE event for the changes of `g` under `prefix`, if any.
fn event(g: &Group, prefix: &str, enc: Encoding) -> Option<Bytes> {
    let events: Vec<Value> = g
        .changes
        .iter()
        .filter(|c| c.key.starts_with(prefix))
        .map(|c| {
            let mut o = Map::new();
            o.insert("type".into(), kind_name(c.kind).into());
            o.insert("key".into(), c.key.clone().into());
            if c.kind == ChangeKind::Put {
                enc.insert(&mut o, &c.value);
                o.insert("create_index".into(), c.meta.create_index.into());
                o.insert("modify_index".into(), c.meta.modify_index.into());
                o.insert("version".into(), c.meta.version.into());
                o.insert("expires_at".into(), expires_json(c.expires_at));
            }
            Value::Object(o)
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    let data = json!({ "index": g.index, "events": events });
    Some(Bytes::from(format!(
        "id: {}\nevent: kv\ndata: {data}\n\n",
        g.index
    )))
}

fn cut_event(reason: &str, last_index: u64) -> Bytes {
    let data = json!({ "reason": reason, "last_index": last_index });
    Bytes::from(format!("event: cut\ndata: {data}\n\n"))
}

/// Feed one stream: the history's groups after `pos`, filtered, into `tx`;
/// on a cut, leave the final event in `last` and close.
async fn produce(
    hub: Arc<WatchHub>,
    prefix: String,
    enc: Encoding,
    mut pos: u64,
    tx: mpsc::Sender<Bytes>,
    last: Arc<Mutex<Option<Bytes>>>,
) {
    let slow = Duration::from_millis(hub.config().slow_consumer_ms);
    let mut rx = hub.subscribe();
    let reason = 'feed: loop {
        rx.borrow_and_update();
        let groups = match hub.after(pos, 256) {
            Ok(g) => g,
            Err(c) => {
                break format!(
                    "fell behind: the changes after index {pos} are no longer in this node's history (oldest {})",
                    c.oldest
                );
            }
        };
        if groups.is_empty() {
            tokio::select! {
                r = rx.changed() => if r.is_err() { break "node shutting down".into() },
                _ = tokio::time::sleep(KEEPALIVE) => {
                    // Best effort: a full buffer already keeps it busy.
                    let _ = tx.try_send(Bytes::from_static(b": keepalive\n\n"));
                }
                _ = hub.closing().cancelled() => break "node shutting down".into(),
                _ = tx.closed() => return,
            }
            continue;
        }
        for g in groups {
            if let Some(ev) = event(&g, &prefix, enc) {
                match tokio::time::timeout(slow, tx.send(ev)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        break 'feed format!(
                            "slow consumer: no event taken for {} ms",
                            slow.as_millis()
                        );
                    }
                }
            }
            pos = g.index;
        }
    };
    tracing::debug!(%reason, pos, "watch stream cut");
    *last.lock().expect("watch final event lock") = Some(cut_event(&reason, pos));
}

/// `GET /v1/watch?prefix=P&since=N`.
#[utoipa::path(get, path = "/v1/watch", tag = "kv",
    params(
        ("prefix" = Option<String>, Query, description = "Changes to keys starting with this (all keys without it)"),
        ("since" = Option<u64>, Query, description = "Changes after this Raft index (default: from now)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this index (as `since`)"),
        ("encoding" = Option<String>, Query, description = "`base64`: every value in the request and answer is base64 (default: UTF-8 text, `value_base64` for other bytes)")),
    responses(
        (status = 200, description = "Server-Sent Events: `event: kv` with `id:` = Raft index and `data:` = `{index, events: [{type, key, ...}]}`; a final `event: cut` says why a stream ended", content_type = "text/event-stream", body = String),
        super::schema::Errors))]
pub async fn stream(State(state): State<AppState>, raw: Raw) -> ApiResult {
    let (mut prefix, mut since, mut enc) = (String::new(), None, Encoding::default());
    for (k, v) in raw.query()? {
        match k.as_str() {
            "prefix" => prefix = v,
            "since" => {
                since = Some(parse_index(&v).map_err(|_| {
                    ApiError::invalid(format!("invalid since {v:?}: expected a Raft index"))
                })?)
            }
            "encoding" => enc = parse_encoding(&v)?,
            _ => {}
        }
    }
    if prefix.len() > state.limits().max_key_bytes {
        return Err(keys::too_large(
            "prefix",
            prefix.len(),
            state.limits().max_key_bytes,
        ));
    }
    if let Some(v) = raw.headers.get("last-event-id") {
        let v = v.to_str().unwrap_or_default().trim();
        since = Some(v.parse().map_err(|_| {
            ApiError::invalid(format!(
                "invalid Last-Event-ID {v:?}: expected a Raft index"
            ))
        })?);
    }
    let hub = state.cluster().watch().clone();
    let since = since.unwrap_or_else(|| hub.applied_index());
    if let Err(c) = hub.after(since, 0) {
        return Err(ApiError::new(
            Code::Compacted,
            format!(
                "the changes after index {since} are no longer in this node's history; the oldest since it can serve is {} (read the current state, then watch from its index)",
                c.oldest
            ),
        )
        .with_header(h::OLDEST_INDEX, c.oldest));
    }
    let Some(slot) = hub.register() else {
        return Err(ApiError::new(
            Code::TooManyWatchers,
            format!(
                "this node serves watch.max_watchers = {} streams already",
                hub.config().max_watchers
            ),
        ));
    };
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let last = Arc::new(Mutex::new(None));
    tokio::spawn(produce(hub, prefix, enc, since, tx, last.clone()));
    // The buffered events, then the final one if the stream was cut; the
    // slot is held until the client goes away.
    let events = futures_util::stream::unfold((rx, Some(slot)), |(mut rx, slot)| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(b), (rx, slot)))
    });
    let end =
        futures_util::stream::once(
            async move { last.lock().expect("watch final event lock").take() },
        );
    use futures_util::StreamExt as _;
    let body = events.chain(end.filter_map(|b| async move { b.map(Ok) }));
    let mut resp = Body::from_stream(body).into_response();
    let hs = resp.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    hs.insert(h::RAFT_INDEX, HeaderValue::from(since));
    Ok(resp)
}
