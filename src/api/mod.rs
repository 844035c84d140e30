//! The client HTTP API: the seed's routes, the native `/v1` routes, health,
//! metrics, membership and the OpenAPI document (`openapi`). Handlers parse input into `kv::Command`s and call
//! [`Cluster`]; they never touch Raft or the state machine.
//!
//! Invariants:
//! - Every error a handler or the router produces is an [`ApiError`] with
//!   one `wire::Code`: JSON on the native routes, the seed's `{"error"}`
//!   bodies on the seed routes, the code in `X-Dcache-Error` on both.
//!   (Requests the HTTP parser itself rejects, before routing, get hyper's
//!   empty-bodied 400/414/431: see README.)
//! - Request bodies are bounded in size and in the time a client may take to
//!   send them ([`body`]); header reads are bounded too (`net::serve`).
//! - A request that must run on the leader runs here, is forwarded once to
//!   the leader (or redirected with `?redirect=true`), or fails with 503
//!   when no leader is known ([`leader`]); all within its deadline.
//! - Metric labels come from bounded sets (matched route, known methods).
//!
//! Not here: the accept loop (`net::serve`), Raft and its errors
//! (`cluster`).
//!
//! Uses: `cluster`, `kv`, `id`, `error`, `net`, `wire`, `auth`. Used by: `node`.

pub mod admin;
pub mod body;
pub mod error;
pub mod forward;
pub mod guard;
pub mod internal;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod openapi;
pub mod scan;
pub mod schema;
pub mod seed;
pub mod txn;
pub mod v1;
pub mod values;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub use self::error::ApiError;
use self::metrics::Metrics;
use self::metrics::RequestLabels;
use crate::cluster::Cluster;
use crate::wire::header;

/// Size and time limits applied by the API.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// The deadline of every request, from arrival to answer, forwarding
    /// included.
    pub request_timeout: Duration,
}

impl Limits {
    /// Largest body accepted: a JSON `/store` body whose key and value are
    /// at their limits and fully `\uXXXX`-escaped, plus slack. (`config`
    /// bounds both caps so this cannot overflow.)
    pub fn max_body_bytes(&self) -> usize {
        6 * (self.max_key_bytes + self.max_value_bytes) + 4096
    }
}

/// Who may do what, and what the operator should be told about it.
#[derive(Debug, Clone, Default)]
pub struct Protection {
    /// The cluster secret membership requests must carry (see [`guard`]).
    pub cluster_secret: Option<crate::net::ClusterSecret>,
    /// Configuration weaknesses, shown in `/health` `warnings` (e.g. no
    /// cluster secret on a non-loopback Raft listener).
    pub warnings: Vec<String>,
    /// Per-client-IP request rate (None: unlimited).
    pub rate_limit: Option<Arc<guard::RateLimit>>,
    /// The accepted bearer tokens (None: `auth.enabled` is false).
    pub tokens: Option<Arc<crate::auth::Tokens>>,
    /// Whether the probes need a token too.
    pub protect_probes: bool,
}

struct Inner {
    cluster: Arc<Cluster>,
    limits: Limits,
    protection: Protection,
    metrics: Arc<Metrics>,
    forwarder: reqwest::Client,
    node_id: String,
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(cluster: Arc<Cluster>, limits: Limits, protection: Protection) -> Self {
        // No whole-request timeout: each forwarded request carries its own.
        let forwarder = crate::net::http_client(cluster.node_http_options());
        let node_id = cluster.id().0.clone();
        Self(Arc::new(Inner {
            cluster,
            limits,
            protection,
            metrics: Arc::new(Metrics::new()),
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

    pub fn cluster_secret(&self) -> Option<&crate::net::ClusterSecret> {
        self.0.protection.cluster_secret.as_ref()
    }

    pub fn rate_limit(&self) -> Option<&guard::RateLimit> {
        self.0.protection.rate_limit.as_deref()
    }

    pub fn tokens(&self) -> Option<&crate::auth::Tokens> {
        self.0.protection.tokens.as_deref()
    }

    pub fn protect_probes(&self) -> bool {
        self.0.protection.protect_probes
    }

    pub fn warnings(&self) -> &[String] {
        &self.0.protection.warnings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn node_id(&self) -> &str {
        &self.0.node_id
    }

    fn forwarder(&self) -> &reqwest::Client {
        &self.0.forwarder
    }
}

/// The full client router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(seed::routes())
        .merge(v1::routes())
        .merge(admin::routes())
        .route("/internal/kv", axum::routing::post(internal::kv))
        .route(
            "/v1/openapi.json",
            axum::routing::get(openapi::openapi_json),
        )
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        // Before routing and body extraction (see `guard`).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_secret,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::rate_limit,
        ))
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
            method: method_label(&method).to_string(),
            status,
        },
        elapsed.as_secs_f64(),
    );
    if !resp.headers().contains_key(header::SERVED_BY)
        && let Ok(v) = HeaderValue::from_str(state.node_id())
    {
        resp.headers_mut().insert(header::SERVED_BY, v);
    }
    resp
}

/// The `method` metric label: a known method, else "other" (methods are
/// client input; arbitrary ones must not create unbounded series).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::PUT), "PUT");
        let odd = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
