//! Forwarding a leader-only request from a follower to the leader.
//!
//! The request goes out as it came in: same method, the raw path and query
//! (never re-encoded), the end-to-end headers and the body, plus
//! `X-Dcache-Forwarded-By` and `X-Dcache-Budget-Ms` (what is left of the
//! client's request timeout). The leader's status, headers and body come
//! back unchanged. With `?redirect=true` the follower answers 307 with
//! `Location` instead.
//!
//! Invariants:
//! - A failure to connect means the leader never saw the request (not
//!   applied: [`Forwarded::Retry`]); a leader that answers `not_leader` or
//!   `no_leader` did not apply it either (`Retry`). A failure after sending
//!   means the outcome is unknown (`forward_outcome_unknown`, or `timeout`
//!   when the budget ran out).
//! - The forwarded request's budget ends before ours, so the leader's own
//!   `timeout` answer reaches us in time.

use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderName;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use tokio::time::Instant;

use super::AppState;
use super::body::Raw;
use super::error::ApiError;
use crate::error::Leader;
use crate::wire::Code;
use crate::wire::header as h;

/// Time kept back from the budget passed to the leader, for the network
/// and the leader's own answer to travel back.
const FORWARD_SLACK: Duration = Duration::from_millis(200);

/// Hop-by-hop headers (RFC 9110 §7.6.1), those the client library sets,
/// and the internal budget header (we set our own).
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
            | h::BUDGET_MS
            | h::CLUSTER_SECRET
    )
}

/// What forwarding produced.
pub enum Forwarded<T = Response> {
    /// The leader's answer (or a redirect, or an outcome-unknown failure).
    Done(Result<T, ApiError>),
    /// The request was not applied: the leader could not be reached, or the
    /// node taken for the leader is no longer it. The error is the answer if
    /// the caller does not retry.
    Retry(ApiError),
}

impl<T> Forwarded<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Forwarded<U> {
        match self {
            Forwarded::Done(r) => Forwarded::Done(r.map(f)),
            Forwarded::Retry(e) => Forwarded::Retry(e),
        }
    }
}

/// Send `raw` to `leader` (or redirect the client to it).
pub async fn to_leader(state: &AppState, raw: &Raw, leader: &Leader) -> Forwarded {
    let path_and_query = raw.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match raw.flag("redirect") {
        Ok(true) => {
            let location = format!(
                "{}://{}{path_and_query}",
                state.cluster().scheme(),
                leader.http_addr
            );
            return Forwarded::Done(match HeaderValue::from_str(&location) {
                Ok(v) => {
                    Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response())
                }
                Err(_) => Err(ApiError::invalid("cannot build a redirect for this path")),
            });
        }
        Ok(false) => {}
        Err(e) => return Forwarded::Done(Err(e)),
    }
    let left = raw.deadline.saturating_duration_since(Instant::now());
    let Some(budget) = left.checked_sub(FORWARD_SLACK).filter(|b| !b.is_zero()) else {
        return Forwarded::Done(Err(ApiError::new(
            Code::Unavailable,
            "the request timeout ran out before the request could be forwarded; it was not applied",
        )));
    };
    state.metrics().inc_forwarded();
    let url = format!(
        "{}://{}{path_and_query}",
        state.cluster().scheme(),
        leader.http_addr
    );
    let mut req = state
        .forwarder()
        .request(raw.method.clone(), &url)
        .timeout(left)
        .body(raw.body.clone());
    for (name, value) in &raw.headers {
        if !is_hop_by_hop(name) {
            req = req.header(name, value);
        }
    }
    // Members trust each other's forwarded requests (rate limits were
    // applied by the follower): the cluster secret says it is a member.
    if let Some(secret) = state.cluster_secret() {
        req = req.header(h::CLUSTER_SECRET, secret.header_value());
    }
    req = req
        .header(h::FORWARDED_BY, state.node_id())
        .header(h::BUDGET_MS, budget.as_millis().to_string());
    match send(req).await {
        Ok(resp) => {
            let code = resp
                .headers()
                .get(h::ERROR)
                .and_then(|v| Code::from_header(v.to_str().ok()));
            match code {
                Some(Code::NotLeader | Code::NoLeader) => {
                    Forwarded::Retry(ApiError::new(Code::NoLeader, "leader not available"))
                }
                _ => Forwarded::Done(Ok(resp)),
            }
        }
        Err(e) if e.is_connect() => {
            tracing::warn!(leader = %leader.id, error = %e, "cannot connect to the leader");
            Forwarded::Retry(ApiError::new(
                Code::LeaderUnreachable,
                format!(
                    "failed to contact leader {}: it could not be reached; the request was not applied",
                    leader.id
                ),
            ))
        }
        Err(e) if e.is_timeout() => {
            tracing::warn!(leader = %leader.id, error = %e, "forwarded request timed out");
            Forwarded::Done(Err(ApiError::new(
                Code::Timeout,
                format!(
                    "no answer from leader {} within the request timeout; the outcome is unknown",
                    leader.id
                ),
            )))
        }
        Err(e) => {
            tracing::warn!(leader = %leader.id, error = %e, "forwarding to the leader failed");
            Forwarded::Done(Err(ApiError::new(
                Code::ForwardOutcomeUnknown,
                format!(
                    "failed to contact leader {}: the connection failed after the request was sent; the outcome is unknown",
                    leader.id
                ),
            )))
        }
    }
}

/// Send and read the whole answer.
async fn send(req: reqwest::RequestBuilder) -> Result<Response, reqwest::Error> {
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
