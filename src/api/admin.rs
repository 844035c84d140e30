//! Health, readiness, metrics, and the JSON fallbacks for unknown routes and
//! wrong methods.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::wire::Code;
use crate::wire::RETRY_AFTER_SECS;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The seed's health document plus Raft detail, encoded as the seed does.
/// Always 200 like the seed (use `/readyz` for a status-code check);
/// `status` is "healthy" only when the node is ready.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "Always 200 (as the seed); `status` says healthy or not", body = super::schema::Health), super::schema::Errors))]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let c = state.cluster();
    let st = c.status();
    let ready = c.readiness().await.ready;
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    super::seed::render::respond(
        StatusCode::OK,
        json!({
            "is_leader": st.is_leader,
            "status": if ready { "healthy" } else { "unhealthy" },
            "time": time,
            "node_id": st.node_id,
            "leader_id": st.leader_id,
            "leader_addr": st.leader_addr,
            "raft_state": st.raft_state,
            "term": st.term,
            "applied_index": st.applied_index,
            "warnings": state.warnings(),
            "redis_addr": st.redis_addr,
        }),
    )
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/livez", tag = "ops",
    responses((status = 200, description = "Alive", body = super::schema::Live), super::schema::Errors))]
pub(super) async fn livez() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// Ready to serve: 200, or 503 naming the failing checks.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready", body = crate::cluster::Readiness),
        (status = 503, description = "Not ready", body = crate::cluster::Readiness,
            headers(("retry-after" = u64, description = "Seconds"))), super::schema::Errors))]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.cluster().readiness().await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (status, Json(r)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

/// Prometheus / OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String), super::schema::Errors))]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics().render(state.cluster()).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Code::NoRoute,
        format!("no route for {method} {}", uri.path()),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
