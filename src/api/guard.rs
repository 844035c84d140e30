//! Who may make a request, decided before the request's body is read: the
//! cluster secret on membership routes, and per-client-IP rate limits.
//!
//! Invariants:
//! - With `cluster.secret` set, a membership request (`POST /join`,
//!   `POST /leave`, `POST /v1/cluster/members`,
//!   `DELETE /v1/cluster/members/{id}`) without the secret in
//!   `x-dcache-cluster-secret` is answered 401 `unauthorized` by a layer
//!   that runs before routing, so no body byte is read; the comparison is
//!   constant-time.
//! - The secret itself is never logged or echoed.
//! - With `http.rate_limit_per_ip` set, each client IP has a token bucket
//!   (that rate, `http.rate_limit_burst` deep); a request finding it empty
//!   is answered 429 `rate_limited` with `Retry-After` (whole seconds until
//!   a token is back, at least 1), unread. The buckets of IPs that have
//!   been quiet long enough to be full again are dropped now and then, so
//!   their memory is bounded by the clients of the last few seconds.
//!   Requests carrying the cluster secret (a member forwarding a client's
//!   request, which the follower already counted, or joining) are not
//!   limited. With no cluster secret, forwarded requests count against the
//!   follower's IP.
//!
//! - With `auth.enabled`, every request needs `Authorization: Bearer
//!   <token>` whose role and key prefix allow what the route does
//!   ([`need`]): 401 `unauthorized` without a valid token, 403 `forbidden`
//!   otherwise, before the body is read. `/livez`, `/readyz` and `/metrics`
//!   stay open unless `auth.protect_probes`. A membership request carrying
//!   the right cluster secret needs no token (joining nodes hold the
//!   secret, not a token).
//!
//! Not here: the Raft listener's own check (`raft::rpc`), where the secret
//! comes from (`node`).

use std::net::IpAddr;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::Method;
use axum::http::header;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use super::seed::render as seed;
use crate::auth::Denied;
use crate::auth::Need;
use crate::auth::Role;
use crate::wire::Code;
use crate::wire::header as h;

/// Per-client-IP request rate limit.
pub struct RateLimit {
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

/// Checks between two sweeps of full buckets.
const SWEEP_EVERY: u64 = 4096;

impl RateLimit {
    /// `per_second` requests a second with bursts of `burst`; None when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = governor::Quota::per_second(rate).allow_burst(burst);
        Some(RateLimit {
            limiter: governor::RateLimiter::dashmap(quota),
            checks: AtomicU64::new(0),
        })
    }

    /// Ok, or how long until `ip` may try again.
    pub fn check(&self, ip: IpAddr) -> Result<(), std::time::Duration> {
        use governor::clock::Clock;
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit")
    }
}

/// The layer: 429 for a client IP over its rate.
pub async fn rate_limit(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let (Some(limit), Some(ConnectInfo(peer))) = (
        state.rate_limit(),
        req.extensions().get::<ConnectInfo<SocketAddr>>(),
    ) else {
        return next.run(req).await;
    };
    // A member (forwarding a client's request, which was counted there, or
    // joining): it holds the cluster secret.
    if state
        .cluster_secret()
        .is_some_and(|s| s.matches(req.headers().get(h::CLUSTER_SECRET).map(|v| v.as_bytes())))
    {
        return next.run(req).await;
    }
    match limit.check(peer.ip()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let err = ApiError::new(
                Code::RateLimited,
                format!(
                    "too many requests from {}: over http.rate_limit_per_ip; retry in {secs} s",
                    peer.ip()
                ),
            )
            .with_header("retry-after", secs.max(1));
            let mut resp = if req.uri().path().starts_with("/v1/") {
                err.into_response()
            } else {
                seed::render(err, "rate limited")
            };
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

/// What the request `method uri` needs from its token.
pub fn need(method: &Method, uri: &axum::http::Uri, protect_probes: bool) -> Need {
    let path = uri.path();
    let reads = matches!(*method, Method::GET | Method::HEAD);
    let role = if reads { Role::Read } else { Role::Write };
    let query = || super::keys::parse_query(uri.query()).unwrap_or_default();
    match path {
        "/livez" | "/readyz" | "/metrics" if !protect_probes => Need::Open,
        "/join" | "/leave" | "/stepdown" => Need::Role(Role::Admin),
        // Members' forwarded Redis ops (with the cluster secret, which
        // skips the token check); an admin token for every key may send
        // them too (the body names keys the guard does not see, so a
        // prefix-limited token may not).
        "/internal/kv" => Need::AnyKey(Role::Admin),
        "/v1/cluster/transfer-leader" => Need::Role(Role::Admin),
        p if p.starts_with("/v1/cluster/members") && !reads => Need::Role(Role::Admin),
        "/store" | "/v1/txn" => Need::AnyKey(role),
        "/v1/kv" | "/v1/watch" => {
            let q = query();
            let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            match (get("prefix"), get("start")) {
                (Some(p), None) => Need::Prefix(role, p.into_bytes()),
                _ => Need::AnyKey(role),
            }
        }
        p => match p
            .strip_prefix("/v1/kv/")
            .or_else(|| p.strip_prefix("/store/"))
        {
            Some(k) => match super::keys::decode(k, "key") {
                Ok(k) => Need::Key(role, k.into_bytes()),
                Err(_) => Need::AnyKey(role),
            },
            // Status, health, the document, unknown routes: any token.
            None => Need::Role(Role::Read),
        },
    }
}

/// The bearer token of a request, if it has one.
fn bearer(req: &Request<Body>) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn refuse(req: &Request<Body>, err: ApiError) -> Response {
    let code = err.code;
    let mut resp = if req.uri().path().starts_with("/v1/") {
        err.into_response()
    } else {
        seed::render(err, "")
    };
    let hs = resp.headers_mut();
    if code == Code::Unauthorized {
        hs.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"dcache\""),
        );
    }
    hs.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The layer: with `auth.enabled`, 401/403 unless the token allows the
/// request.
pub async fn authorize(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let Some(tokens) = state.tokens() else {
        return next.run(req).await;
    };
    let need = need(req.method(), req.uri(), state.protect_probes());
    if need == Need::Open {
        return next.run(req).await;
    }
    // A peer joining or leaving, or forwarding a Redis op, proves itself
    // with the cluster secret.
    if let Some(secret) = state.cluster_secret()
        && members_only(req.method(), req.uri().path())
        && secret.matches(req.headers().get(h::CLUSTER_SECRET).map(|v| v.as_bytes()))
    {
        return next.run(req).await;
    }
    let principal = match bearer(&req) {
        Some(t) => tokens.authenticate(t).await,
        None => None,
    };
    let Some(principal) = principal else {
        let msg = if bearer(&req).is_some() {
            "invalid bearer token"
        } else {
            "this node requires a bearer token (Authorization: Bearer ...)"
        };
        return refuse(&req, ApiError::new(Code::Unauthorized, msg));
    };
    match principal.allows(&need) {
        Ok(()) => next.run(req).await,
        Err(Denied(why)) => refuse(&req, ApiError::new(Code::Forbidden, why)),
    }
}

/// Whether a request changes membership (and so needs the cluster secret).
pub fn is_membership(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => matches!(path, "/join" | "/leave" | "/v1/cluster/members"),
        Method::DELETE => path.starts_with("/v1/cluster/members/"),
        _ => false,
    }
}

/// Whether only members may send the request: membership changes and
/// forwarded Redis ops (`/internal/kv`).
pub fn members_only(method: &Method, path: &str) -> bool {
    is_membership(method, path) || (*method == Method::POST && path == "/internal/kv")
}

/// The layer: 401 for a members-only request without the cluster secret.
pub async fn require_secret(
    State(state): State<AppState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let Some(secret) = state.cluster_secret() else {
        return next.run(req).await;
    };
    if !members_only(req.method(), req.uri().path())
        || secret.matches(req.headers().get(h::CLUSTER_SECRET).map(|v| v.as_bytes()))
    {
        return next.run(req).await;
    }
    let err = ApiError::new(
        Code::Unauthorized,
        "membership changes and forwarded Redis commands require the cluster secret (x-dcache-cluster-secret)",
    );
    let mut resp = if req.uri().path().starts_with("/v1/") {
        err.into_response()
    } else {
        seed::render(err, "unauthorized")
    };
    // The body is left unread: do not keep the connection.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_refuses_past_the_burst_and_says_when() {
        assert!(RateLimit::new(0, 10).is_none());
        let l = RateLimit::new(1, 3).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            l.check(a).unwrap();
        }
        let wait = l.check(a).unwrap_err();
        assert!(wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(1));
        // Another IP has its own bucket.
        l.check(b).unwrap();
    }

    #[test]
    fn membership_routes() {
        assert!(is_membership(&Method::POST, "/join"));
        assert!(is_membership(&Method::POST, "/leave"));
        assert!(is_membership(&Method::POST, "/v1/cluster/members"));
        assert!(is_membership(&Method::DELETE, "/v1/cluster/members/n1"));
        assert!(!is_membership(&Method::GET, "/v1/cluster/members"));
        assert!(!is_membership(&Method::POST, "/store"));
        assert!(!is_membership(&Method::GET, "/join"));
        assert!(members_only(&Method::POST, "/internal/kv"));
        assert!(!members_only(&Method::GET, "/v1/kv/a"));
    }
}
