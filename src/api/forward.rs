//! Forwarding leader-only requests from a follower to the leader.
//!
//! The request goes out as it came in: same method, the raw path and query
//! (never re-encoded), the end-to-end headers and the body. The leader's
//! status, headers and body come back unchanged. With `?redirect=true` the
//! follower answers 307 with `Location` instead.
//!
//! Invariants:
//! - A request is forwarded at most once: the forwarded copy carries
//!   `X-Dcache-Forwarded-By`, and a node that receives such a request while
//!   not being the leader answers 503 `not_leader` instead of forwarding.
//! - A failure to connect means the leader never saw the request (not
//!   applied, 502 `leader_unreachable`); a failure after sending means the
//!   outcome is unknown (502 `forward_outcome_unknown`).

use axum::body::Body;
use axum::http::HeaderName;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;

use super::AppState;
use super::FORWARDED_BY;
use super::Flavor;
use super::Raw;
use super::error::ApiError;
use super::error::ERROR_CODE_HEADER;
use crate::error::Error;
use crate::raft::NodeId;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the client library sets.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// What forwarding produced.
pub enum Forwarded {
    /// The leader's (or our own) final answer.
    Done(Response),
    /// The request was not applied: the leader could not be reached, or the
    /// node we took for the leader is no longer it. The response is what to
    /// return if the caller does not retry.
    Retryable(Response),
}

pub async fn to_leader(
    state: &AppState,
    raw: &Raw,
    leader_id: &str,
    leader_http: &str,
    flavor: Flavor,
) -> Forwarded {
    match try_forward(state, raw, leader_id, leader_http, flavor).await {
        Ok(r) => {
            let code = r
                .headers()
                .get(ERROR_CODE_HEADER)
                .and_then(|v| v.to_str().ok());
            if matches!(code, Some("not_leader" | "no_leader")) {
                Forwarded::Retryable(r)
            } else {
                Forwarded::Done(r)
            }
        }
        Err(e) if e.is_connect() => Forwarded::Retryable(forward_error(e, flavor, leader_id)),
        Err(e) => Forwarded::Done(forward_error(e, flavor, leader_id)),
    }
}

async fn try_forward(
    state: &AppState,
    raw: &Raw,
    leader_id: &str,
    leader_http: &str,
    flavor: Flavor,
) -> Result<Response, reqwest::Error> {
    let path_and_query = raw.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match raw.flag("redirect") {
        Ok(true) => {
            let location = format!("http://{leader_http}{path_and_query}");
            return Ok(match HeaderValue::from_str(&location) {
                Ok(v) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response(),
                Err(_) => super::error::render(
                    Error::InvalidInput("cannot build redirect".into()),
                    flavor,
                ),
            });
        }
        Ok(false) => {}
        Err(e) => return Ok(super::error::render(e, flavor)),
    }
    if raw.is_forwarded() {
        // Leadership moved while the request was in flight: do not chain.
        return Ok(super::error::render(
            Error::NotLeader {
                leader_id: Some(NodeId(leader_id.to_string())),
                leader_http: Some(leader_http.to_string()),
            },
            flavor,
        ));
    }
    state.metrics().inc_forwarded();
    let url = format!("http://{leader_http}{path_and_query}");
    let mut req = state
        .0
        .forwarder
        .request(raw.method.clone(), &url)
        .timeout(state.limits().request_timeout + std::time::Duration::from_secs(2))
        .body(raw.body.clone());
    for (name, value) in &raw.headers {
        if !is_hop_by_hop(name) {
            req = req.header(name, value);
        }
    }
    req = req.header(FORWARDED_BY, state.node_id());
    let resp = req.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?;
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    for (name, value) in &headers {
        if !is_hop_by_hop(name) {
            out.headers_mut().append(name, value.clone());
        }
    }
    Ok(out)
}

fn forward_error(e: reqwest::Error, flavor: Flavor, leader_id: &str) -> Response {
    tracing::warn!(leader = leader_id, error = %e, "forwarding to leader failed");
    let (code, detail) = if e.is_connect() {
        (
            "leader_unreachable",
            "the leader could not be reached; the request was not applied",
        )
    } else {
        (
            "forward_outcome_unknown",
            "the connection to the leader failed after the request was sent; the outcome is unknown",
        )
    };
    let msg = match flavor {
        Flavor::Seed => "failed to contact leader".to_string(),
        Flavor::V1 => format!("failed to contact leader {leader_id}: {detail}"),
    };
    ApiError::new(StatusCode::BAD_GATEWAY, code, msg).render(flavor)
}
