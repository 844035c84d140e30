//! The client HTTP API: the seed's routes, the native `/v1` routes, health,
//! metrics and membership. Handlers parse input into `kv::Command`s and call
//! [`Cluster`]; they never touch Raft or the state machine directly.
//!
//! Invariants:
//! - Every error body is JSON (see [`error`]); no input crashes a handler.
//! - Request bodies are bounded in size and in the time a client may take to
//!   send them; header reads are bounded too ([`serve`]).
//! - A request that must run on the leader either runs here (this node is
//!   the leader), is forwarded once to the leader (or redirected with
//!   `?redirect=true`), or fails with 503 when no leader is known.

pub mod admin;
pub mod error;
pub mod forward;
pub mod keys;
pub mod seed;
pub mod serve;
pub mod v1;

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::MatchedPath;
use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub use self::error::Flavor;
pub use self::serve::ServeOptions;
pub use self::serve::serve;
use crate::cluster::Cluster;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::metrics::RequestLabels;

/// Header set on a request forwarded by a follower; a node receiving it
/// never forwards again (no loops).
pub const FORWARDED_BY: &str = "x-dcache-forwarded-by";
/// The node that produced the response.
pub const SERVED_BY: &str = "x-dcache-served-by";
/// The key's modify index.
pub const INDEX: &str = "x-dcache-index";
/// The Raft log index that served the request (applied index for reads,
/// the write's index for writes).
pub const RAFT_INDEX: &str = "x-dcache-raft-index";

/// How many times a leader-only request is tried (locally or forwarded)
/// while leadership moves.
const FORWARD_ATTEMPTS: usize = 3;

/// Size and time limits applied by the API.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// How long a client may take to send its body; also the forwarder's
    /// budget on top of the leader's own timeout.
    pub request_timeout: Duration,
}

impl Limits {
    /// Largest body accepted: a JSON `/store` body whose key and value are
    /// at their limits and fully `\uXXXX`-escaped, plus slack.
    pub fn max_body_bytes(&self) -> usize {
        6 * (self.max_key_bytes + self.max_value_bytes) + 4096
    }
}

struct Inner {
    cluster: Arc<Cluster>,
    limits: Limits,
    metrics: Arc<Metrics>,
    forwarder: reqwest::Client,
    node_id: String,
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(cluster: Arc<Cluster>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        let forwarder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build HTTP client");
        let node_id = cluster.id().0.clone();
        Self(Arc::new(Inner {
            cluster,
            limits,
            metrics,
            forwarder,
            node_id,
        }))
    }

    pub fn cluster(&self) -> &Cluster {
        &self.0.cluster
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn node_id(&self) -> &str {
        &self.0.node_id
    }
}

/// A whole request, body read: what handlers that may forward need.
pub struct Raw {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Raw {
    pub fn query(&self) -> Result<Vec<(String, String)>, Error> {
        keys::parse_query(self.uri.query())
    }

    /// Value of a query flag such as `redirect`: present with no value, or
    /// true/1/yes, means true.
    pub fn flag(&self, name: &str) -> Result<bool, Error> {
        for (k, v) in self.query()? {
            if k == name {
                return match v.to_ascii_lowercase().as_str() {
                    "" | "true" | "1" | "yes" => Ok(true),
                    "false" | "0" | "no" => Ok(false),
                    _ => Err(Error::InvalidInput(format!(
                        "invalid value {v:?} for query parameter {name}: expected true or false"
                    ))),
                };
            }
        }
        Ok(false)
    }

    pub fn is_forwarded(&self) -> bool {
        self.headers.contains_key(FORWARDED_BY)
    }
}

impl FromRequest<AppState> for Raw {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let flavor = if req.uri().path().starts_with("/v1/") {
            Flavor::V1
        } else {
            Flavor::Seed
        };
        let (parts, body) = req.into_parts();
        let limits = state.limits();
        let limit = limits.max_body_bytes();
        let declared = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = |size: u64| {
            error::render(
                Error::BodyTooLarge {
                    size,
                    max_value: limits.max_value_bytes,
                },
                flavor,
            )
        };
        // Far too large to be worth draining: refuse without reading.
        if declared.is_some_and(|n| n > (limit + MAX_DRAIN_BYTES) as u64) {
            return Err(too_large(declared.unwrap_or_default()));
        }
        let read = read_body(body, limit);
        let body = match tokio::time::timeout(limits.request_timeout, read).await {
            Err(_) => {
                return Err(error::ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "request body not received within {:?}",
                        limits.request_timeout
                    ),
                )
                .render(flavor));
            }
            Ok(Err(e)) => {
                return Err(error::render(
                    Error::InvalidInput(format!("cannot read request body: {e}")),
                    flavor,
                ));
            }
            Ok(Ok(Body_::TooLarge(counted))) => return Err(too_large(declared.unwrap_or(counted))),
            Ok(Ok(Body_::Complete(b))) => b,
        };
        Ok(Raw {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

/// Bytes of an over-limit body read (and discarded) before answering 413,
/// so that a client still sending gets the answer instead of a connection
/// reset (closing a socket with unread data makes the kernel send RST).
const MAX_DRAIN_BYTES: usize = 32 * 1024 * 1024;

enum Body_ {
    Complete(Bytes),
    /// Over the limit; how many bytes were seen (read or drained).
    TooLarge(u64),
}

/// Read a body up to `limit` bytes; past it, keep reading and discarding up
/// to [`MAX_DRAIN_BYTES`] more, then report it as too large.
async fn read_body(body: Body, limit: usize) -> Result<Body_, axum::Error> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            // Already over the limit: that is the answer, whatever broke.
            Err(_) if seen > limit as u64 => break,
            Err(e) => return Err(e),
        };
        seen += chunk.len() as u64;
        if seen > limit as u64 {
            buf.clear();
            if seen > (limit + MAX_DRAIN_BYTES) as u64 {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if seen > limit as u64 {
        Ok(Body_::TooLarge(seen))
    } else {
        Ok(Body_::Complete(buf.freeze()))
    }
}

/// The full client router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(seed::routes())
        .merge(v1::routes())
        .merge(admin::routes())
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Per-request span, access log event at debug level, metrics, and the
/// `X-Dcache-Served-By` header.
async fn observe(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "http",
        %method,
        %route,
        %path,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::debug!("request"));
    state.metrics().observe_request(
        RequestLabels {
            route,
            method: method.to_string(),
            status,
        },
        elapsed.as_secs_f64(),
    );
    if !resp.headers().contains_key(SERVED_BY)
        && let Ok(v) = state.node_id().parse()
    {
        resp.headers_mut().insert(SERVED_BY, v);
    }
    resp
}

/// Run `op` if this node is the leader; otherwise forward the request to the
/// leader (or redirect, or fail with 503). If `op` itself finds that
/// leadership moved before it proposed anything, forward too. If forwarding
/// did not apply the request (leader unreachable, or no longer leader), wait
/// for the leader to change and try again, a bounded number of times, so a
/// failover or handover costs clients latency rather than errors.
pub async fn on_leader<F, Fut>(state: &AppState, raw: &Raw, flavor: Flavor, op: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Response, Error>>,
{
    let mut op = Some(op);
    let mut last = None;
    for _attempt in 0..FORWARD_ATTEMPTS {
        let res = match state.cluster().ensure_leader().await {
            Ok(()) => match op.take() {
                Some(op) => op().await,
                None => break,
            },
            Err(e) => Err(e),
        };
        match res {
            Ok(r) => return r,
            Err(Error::NotLeader {
                leader_id: Some(id),
                leader_http: Some(addr),
            }) => match forward::to_leader(state, raw, &id.0, &addr, flavor).await {
                forward::Forwarded::Done(r) => return r,
                forward::Forwarded::Retryable(r) => {
                    last = Some(r);
                    state.cluster().wait_leader_change(&id).await;
                }
            },
            Err(Error::NoLeader) => {
                // An election or a lease being established: wait for a
                // leader, then try again (nothing was applied).
                last = Some(error::render(Error::NoLeader, flavor));
                state.cluster().wait_for_leader().await;
            }
            Err(e) => return error::render(e, flavor),
        }
    }
    last.unwrap_or_else(|| error::render(Error::NoLeader, flavor))
}
