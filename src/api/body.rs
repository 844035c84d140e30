//! [`Raw`]: a whole request with its body read, bounded in size and time,
//! plus the deadline the request must be answered by. Handlers that may
//! forward take it, because forwarding replays the request as it came.
//!
//! Invariants:
//! - A body over [`Limits::max_body_bytes`] is answered 413 after reading
//!   (and discarding) at most `MAX_DRAIN_BYTES` more, so a client still
//!   sending gets the answer instead of a connection reset.
//! - A body must arrive within `http.request_timeout_ms` (408 otherwise).
//! - The deadline is `http.request_timeout_ms` after the request arrived,
//!   or sooner when a forwarding node passed a smaller budget.

use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::Method;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::response::Response;
use tokio::time::Instant;

use super::AppState;
use super::Limits;
use super::error::ApiError;
use super::keys;
use super::seed::render as seed;
use crate::wire::Code;
use crate::wire::header;

/// A whole request, body read.
pub struct Raw {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the answer is due (see the module doc).
    pub deadline: Instant,
}

impl Raw {
    pub fn query(&self) -> Result<Vec<(String, String)>, ApiError> {
        keys::parse_query(self.uri.query())
    }

    /// Value of a query flag such as `redirect`: present with no value, or
    /// true/1/yes, means true.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.query()?.into_iter().find(|(k, _)| k == name) {
            None => Ok(false),
            Some((_, v)) => keys::parse_flag(name, &v),
        }
    }

    /// Whether a follower forwarded this request to us.
    pub fn is_forwarded(&self) -> bool {
        self.headers.contains_key(header::FORWARDED_BY)
    }
}

/// A body rejection, rendered in the family of the route it was for.
pub struct Rejection {
    err: ApiError,
    seed: bool,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        if self.seed {
            // Body problems have no seed-specific failure message.
            seed::render(self.err, "invalid request body")
        } else {
            self.err.into_response()
        }
    }
}

/// Bytes of an over-limit body read (and discarded) before answering 413.
const MAX_DRAIN_BYTES: usize = 32 * 1024 * 1024;

/// The budget a forwarding node passed, if any.
fn forwarded_budget(headers: &HeaderMap) -> Option<Duration> {
    let ms = headers
        .get(header::BUDGET_MS)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms))
}

impl FromRequest<AppState> for Raw {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Rejection> {
        let arrived = Instant::now();
        let seed = !req.uri().path().starts_with("/v1/");
        let reject = |err| Rejection { err, seed };
        let (parts, body) = req.into_parts();
        let limits: &Limits = state.limits();
        let budget = forwarded_budget(&parts.headers)
            .map_or(limits.request_timeout, |b| b.min(limits.request_timeout));
        let limit = limits.max_body_bytes();
        let declared = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = |size: u64| {
            reject(ApiError::new(
                Code::TooLarge,
                format!(
                    "request body is {size} bytes, over the accepted size; values are limited to {} bytes (http.max_value_bytes)",
                    limits.max_value_bytes
                ),
            ))
        };
        // Far too large to be worth draining: refuse without reading.
        if let Some(n) = declared.filter(|n| *n > (limit + MAX_DRAIN_BYTES) as u64) {
            return Err(too_large(n));
        }
        let body = match tokio::time::timeout(budget, read_body(body, limit)).await {
            Err(_) => {
                return Err(reject(ApiError::new(
                    Code::BodyTimeout,
                    format!("request body not received within {budget:?}"),
                )));
            }
            Ok(Err(e)) => {
                return Err(reject(ApiError::invalid(format!(
                    "cannot read request body: {e}"
                ))));
            }
            Ok(Ok(BodyRead::TooLarge(counted))) => {
                return Err(too_large(declared.unwrap_or(counted)));
            }
            Ok(Ok(BodyRead::Complete(b))) => b,
        };
        Ok(Raw {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            deadline: arrived + budget,
        })
    }
}

enum BodyRead {
    Complete(Bytes),
    /// Over the limit; how many bytes were seen (read or drained).
    TooLarge(u64),
}

/// Read a body up to `limit` bytes; past it, keep reading and discarding up
/// to [`MAX_DRAIN_BYTES`] more, then report it as too large.
async fn read_body(body: Body, limit: usize) -> Result<BodyRead, axum::Error> {
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
        Ok(BodyRead::TooLarge(seen))
    } else {
        Ok(BodyRead::Complete(buf.freeze()))
    }
}
