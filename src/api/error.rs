//! The one mapping from [`Error`] to an HTTP response.
//!
//! Two body flavours:
//! - [`Flavor::Seed`] keeps the Go project's bodies byte for byte:
//!   `{"error":"<msg>"}` with its messages where it had one;
//! - [`Flavor::V1`] adds a machine-readable `code` (and `leader` where
//!   relevant): `{"code":"...","error":"..."}`.
//!
//! Codes are grouped by what a client may do (see README, "Errors"):
//! *not applied* (`not_leader`, `no_leader`, `unavailable`, `invalid_*`,
//! `too_large`, `conflict`, `not_found`, `key_not_found`, `cas_mismatch`,
//! `leader_unreachable`) vs *outcome unknown* (`timeout`, `outcome_unknown`,
//! `forward_outcome_unknown`).

use axum::Json;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::json;

use crate::error::Error;

/// Which API family the request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Seed,
    V1,
}

/// Every error response carries its code in this header too (also on seed
/// routes, whose bodies cannot change), so clients and forwarding nodes can
/// tell "not applied" from "outcome unknown" without parsing the body.
pub const ERROR_CODE_HEADER: &str = "x-dcache-error";

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: &str = "1";

/// An error ready to be rendered: status, code and message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub leader: Option<(String, String)>,
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            leader: None,
            extra: None,
        }
    }

    pub fn with_extra(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.extra = Some((key, value));
        self
    }

    pub fn render(self, flavor: Flavor) -> Response {
        let body = match flavor {
            Flavor::Seed => json!({ "error": self.message }),
            Flavor::V1 => {
                let mut m = serde_json::Map::new();
                m.insert("error".into(), self.message.into());
                m.insert("code".into(), self.code.into());
                if let Some((id, addr)) = &self.leader {
                    m.insert("leader".into(), json!({ "id": id, "addr": addr }));
                }
                if let Some((k, v)) = self.extra {
                    m.insert(k.into(), v);
                }
                serde_json::Value::Object(m)
            }
        };
        let mut resp = (self.status, Json(body)).into_response();
        resp.headers_mut()
            .insert(ERROR_CODE_HEADER, HeaderValue::from_static(self.code));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            Error::NotLeader {
                leader_id,
                leader_http,
            } => {
                let mut a = ApiError::new(S::SERVICE_UNAVAILABLE, "not_leader", msg);
                if let (Some(id), Some(addr)) = (leader_id, leader_http) {
                    a.leader = Some((id.0, addr));
                }
                a
            }
            Error::NoLeader => ApiError::new(S::SERVICE_UNAVAILABLE, "no_leader", msg),
            Error::Timeout(_) => ApiError::new(S::GATEWAY_TIMEOUT, "timeout", msg),
            Error::OutcomeUnknown => ApiError::new(S::SERVICE_UNAVAILABLE, "outcome_unknown", msg),
            Error::InvalidInput(_) => ApiError::new(S::BAD_REQUEST, "invalid_input", msg),
            Error::TooLarge { .. } | Error::BodyTooLarge { .. } => {
                ApiError::new(S::PAYLOAD_TOO_LARGE, "too_large", msg)
            }
            Error::Conflict(_) => ApiError::new(S::CONFLICT, "conflict", msg),
            Error::NotFound(_) => ApiError::new(S::NOT_FOUND, "not_found", msg),
            Error::Unreachable(_) => ApiError::new(S::BAD_GATEWAY, "unreachable", msg),
            Error::Unavailable(_) => ApiError::new(S::SERVICE_UNAVAILABLE, "unavailable", msg),
            Error::Storage(_) => ApiError::new(S::INTERNAL_SERVER_ERROR, "storage", msg),
        }
    }
}

/// Render an [`Error`] in the given flavour.
pub fn render(e: Error, flavor: Flavor) -> Response {
    ApiError::from(e).render(flavor)
}
