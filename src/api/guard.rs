//! Who may make a request, decided before the request's body is read: the
//! cluster secret on membership routes, and (later layers) per-client rate
//! limits.
//!
//! Invariants:
//! - With `cluster.secret` set, a membership request (`POST /join`,
//!   `POST /leave`, `POST /v1/cluster/members`,
//!   `DELETE /v1/cluster/members/{id}`) without the secret in
//!   `x-dcache-cluster-secret` is answered 401 `unauthorized` by a layer
//!   that runs before routing, so no body byte is read; the comparison is
//!   constant-time.
//! - The secret itself is never logged or echoed.
//!
//! Not here: the Raft listener's own check (`raft::rpc`), where the secret
//! comes from (`node`).

use axum::body::Body;
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
use super::seed;
use crate::wire::Code;
use crate::wire::header as h;

/// Whether a request changes membership (and so needs the cluster secret).
pub fn is_membership(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => matches!(path, "/join" | "/leave" | "/v1/cluster/members"),
        Method::DELETE => path.starts_with("/v1/cluster/members/"),
        _ => false,
    }
}

/// The layer: 401 for a membership request without the cluster secret.
pub async fn require_secret(
    State(state): State<AppState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let Some(secret) = state.cluster_secret() else {
        return next.run(req).await;
    };
    if !is_membership(req.method(), req.uri().path())
        || secret.matches(req.headers().get(h::CLUSTER_SECRET).map(|v| v.as_bytes()))
    {
        return next.run(req).await;
    }
    let err = ApiError::new(
        Code::Unauthorized,
        "membership changes require the cluster secret (x-dcache-cluster-secret)",
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
    fn membership_routes() {
        assert!(is_membership(&Method::POST, "/join"));
        assert!(is_membership(&Method::POST, "/leave"));
        assert!(is_membership(&Method::POST, "/v1/cluster/members"));
        assert!(is_membership(&Method::DELETE, "/v1/cluster/members/n1"));
        assert!(!is_membership(&Method::GET, "/v1/cluster/members"));
        assert!(!is_membership(&Method::POST, "/store"));
        assert!(!is_membership(&Method::GET, "/join"));
    }
}
