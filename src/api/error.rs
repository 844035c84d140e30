//! [`ApiError`]: an error on its way to a client. Handlers return
//! `Result<_, ApiError>`; the one `From<Error>` below picks the [`Code`]
//! for every internal error, and the one `IntoResponse` renders the native
//! body. The seed routes render the seed's bodies from the same value (see
//! `api::seed::render`).
//!
//! Native body: `{"code": "...", "error": "...", "leader"?: {"id","addr"},
//! "current_index"?: n}`. Every error response carries the code in the
//! `X-Dcache-Error` header and, for 503s, `Retry-After`.

use axum::Json;
use axum::http::HeaderName;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::json;

use crate::error::Error;
use crate::error::Leader;
use crate::wire::Code;
use crate::wire::RETRY_AFTER_SECS;
use crate::wire::header as h;

/// An error ready to be rendered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Where the leader is (`not_leader`).
    pub leader: Option<Leader>,
    /// The key's modify index (`cas_mismatch`; 0 = absent).
    pub current_index: Option<u64>,
    /// dcache headers with numeric values (index headers).
    pub headers: Vec<(&'static str, u64)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leader: None,
            current_index: None,
            headers: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidInput, message)
    }

    /// Add a numeric dcache header (e.g. `X-Dcache-Raft-Index`).
    pub fn with_header(mut self, name: &'static str, v: u64) -> Self {
        self.headers.push((name, v));
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).expect("codes have valid statuses")
    }

    /// Status, code header, `Retry-After` and the extra headers around
    /// `body`: shared by the native and the seed renderings.
    pub fn respond_with(&self, status: StatusCode, body: impl IntoResponse) -> Response {
        let mut resp = (status, body).into_response();
        let hs = resp.headers_mut();
        hs.insert(h::ERROR, HeaderValue::from_static(self.code.as_str()));
        if self.code.retry_after() {
            hs.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        for (name, v) in &self.headers {
            hs.insert(HeaderName::from_static(name), HeaderValue::from(*v));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut m = serde_json::Map::new();
        m.insert("error".into(), self.message.clone().into());
        m.insert("code".into(), self.code.as_str().into());
        if let Some(l) = &self.leader {
            m.insert(
                "leader".into(),
                json!({ "id": l.id.as_str(), "addr": l.http_addr }),
            );
        }
        if let Some(i) = self.current_index {
            m.insert("current_index".into(), i.into());
        }
        self.respond_with(self.status(), Json(serde_json::Value::Object(m)))
    }
}

/// What a handler returns: an answer, or the one error rendering.
pub type ApiResult = Result<Response, ApiError>;

impl ApiError {
    /// A write the cache has no room for (`cache.max_memory`).
    pub fn out_of_memory(needed: u64, max: u64) -> ApiError {
        ApiError::new(
            Code::OutOfMemory,
            format!(
                "the cache is full: the write needs {needed} bytes and cache.max_memory is {max} bytes"
            ),
        )
    }

    /// A state-machine response the operation cannot give (a bug: logged).
    pub fn unexpected(r: crate::kv::Response) -> ApiError {
        tracing::error!(response = ?r, "state machine returned an unexpected response");
        ApiError::new(Code::Internal, "unexpected state machine response")
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        let code = e.code();
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error while serving a request");
        }
        let mut out = ApiError::new(code, msg);
        if let Error::NotLeader(l) = e {
            out.leader = Some(l);
        }
        out
    }
}
