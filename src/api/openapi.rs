//! The OpenAPI 3.1 document of every HTTP route, generated from the
//! handlers' `#[utoipa::path]` attributes and the types they answer with,
//! served at `GET /v1/openapi.json` and checked into `docs/openapi.json`
//! (a test fails when the two differ; `DCACHE_BLESS=1 cargo test --lib
//! openapi` rewrites the file).
//!
//! The body types it names are in `schema` (documentation only); the
//! handlers it lists name them too.
//!
//! Uses: the `api` handlers and `schema`, `cluster` report types.

use utoipa::OpenApi;

use super::schema::Consistency;
use super::schema::ErrorBody;
use super::schema::ErrorCode;
use super::schema::LeaderRef;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dcache",
        description = "A distributed, strongly consistent key-value cache replicated with Raft. \
            Every error answer carries `X-Dcache-Error` with one code; README \"Errors\" lists \
            them with their status and whether the request was applied.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        super::v1::get_key,
        super::v1::put_key,
        super::v1::expire_key,
        super::v1::delete_key,
        super::v1::status,
        super::v1::cluster_status,
        super::v1::add_member,
        super::v1::remove_member,
        super::v1::transfer_leader,
        super::v1::digest,
        super::scan::get,
        super::scan::delete,
        super::txn::post,
        super::watch::stream,
        super::seed::set,
        super::seed::get_key,
        super::seed::delete,
        super::seed::join,
        super::seed::leave,
        super::seed::stepdown,
        super::admin::health,
        super::admin::livez,
        super::admin::readyz,
        super::admin::metrics,
        openapi_json,
    ),
    components(schemas(ErrorCode, ErrorBody, LeaderRef, Consistency)),
    tags(
        (name = "kv", description = "Keys: raw bytes, CAS, TTL, consistency levels"),
        (name = "cluster", description = "Membership, leadership, status"),
        (name = "seed", description = "The Go project's routes, byte-compatible"),
        (name = "ops", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document as served and checked in.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes");
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub(super) async fn openapi_json() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Code;

    #[test]
    fn the_checked_in_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let now = document();
        if std::env::var_os("DCACHE_BLESS").is_some() {
            std::fs::write(&path, &now).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == now,
            "docs/openapi.json is not the document the code generates; \
             run `DCACHE_BLESS=1 cargo test --lib openapi` and commit it"
        );
    }

    #[test]
    fn every_error_code_is_in_the_document() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let codes = &doc["components"]["schemas"]["ErrorCode"];
        let text = codes.to_string();
        for c in Code::ALL {
            assert!(
                text.contains(&format!("\"{}\"", c.as_str())),
                "{c:?}: {codes}"
            );
        }
    }
}
