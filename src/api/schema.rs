//! The body types of the OpenAPI document (`openapi`): they describe JSON
//! the handlers build with `json!`, for the document only. Handlers name
//! them in their `#[utoipa::path]` attributes, and `openapi` lists the
//! handlers: the types stand apart from both so that neither imports the
//! other (`scripts/openapi-check.sh` holds every route's answers against
//! them).
//!
//! Uses: `wire` (error codes).

use serde::Serialize;
use utoipa::ToSchema;

use crate::wire::Code;

/// Every error answer of the native API: `code` says what happened and
/// whether the request was applied (README "Errors"); the same code is in
/// the `X-Dcache-Error` header. Seed routes answer `{"error"}` only.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// The error code (absent on seed routes, which keep the seed's body).
    #[schema(value_type = Option<ErrorCode>)]
    pub code: Option<String>,
    /// The leader, on `not_leader`.
    pub leader: Option<LeaderRef>,
    /// The key's modify index, on `cas_mismatch` (0: the key is absent).
    pub current_index: Option<u64>,
}

/// The error answer every route may give (status by code: README
/// "Errors"), with `X-Dcache-Error`.
#[derive(utoipa::IntoResponses)]
#[response(
    status = "default",
    description = "An error: the status and `X-Dcache-Error` name one code (README \"Errors\")",
    headers(("x-dcache-error" = String, description = "The error code"))
)]
pub struct Errors(#[to_schema] pub ErrorBody);

/// The `wire::Code` strings, as an OpenAPI enum generated from the enum.
pub struct ErrorCode;

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::ObjectBuilder;
        use utoipa::openapi::schema::Type;
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("One of the codes in README \"Errors\""))
            .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for ErrorCode {}

#[derive(Serialize, ToSchema)]
pub struct LeaderRef {
    pub id: String,
    pub addr: Option<String>,
}

/// `PUT /v1/kv/{key}`.
#[derive(Serialize, ToSchema)]
pub struct PutAnswer {
    pub key: String,
    pub modify_index: u64,
    pub create_index: u64,
    pub version: u64,
    /// The key's deadline (RFC 3339, ms), null without a TTL.
    pub expires_at: Option<String>,
}

/// `POST /v1/kv/{key}` (expire / persist).
#[derive(Serialize, ToSchema)]
pub struct ExpireAnswer {
    pub key: String,
    pub expires_at: Option<String>,
}

/// `DELETE /v1/kv/{key}`.
#[derive(Serialize, ToSchema)]
pub struct DeleteAnswer {
    pub key: String,
    /// False when the key was absent (nothing deleted).
    pub deleted: bool,
}

/// A read's consistency level (query parameter `consistency`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// The default: sees every write acknowledged before the read began.
    Linearizable,
    /// This node's state, no round trip; may lag.
    Stale,
}

/// `POST /v1/cluster/members` body, and the seed's `POST /join`.
#[derive(Serialize, ToSchema)]
pub struct MemberBody {
    /// The node's id.
    #[schema(min_length = 1)]
    pub id: String,
    /// Its Raft address, host:port.
    #[schema(pattern = "^[^:]+:[1-9][0-9]{0,4}$")]
    pub addr: String,
}

#[derive(Serialize, ToSchema)]
pub struct MemberAdded {
    pub id: String,
    pub added: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MemberRemoved {
    pub id: String,
    pub removed: bool,
}

/// `POST /v1/cluster/transfer-leader` body (empty body: the best voter).
#[derive(Serialize, ToSchema)]
pub struct TransferBody {
    pub to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Transferred {
    /// The new leader.
    pub leader: Option<String>,
}

/// One key in a scan page, a txn `get`/`range` result or a watch event.
#[derive(Serialize, ToSchema)]
pub struct KeyValue {
    pub key: String,
    /// The value as UTF-8 text (absent with `keys_only`, or when not UTF-8).
    pub value: Option<String>,
    /// The value as base64, when it is not UTF-8 (or with `encoding=base64`).
    pub value_base64: Option<String>,
    pub create_index: Option<u64>,
    pub modify_index: Option<u64>,
    pub version: Option<u64>,
    pub expires_at: Option<String>,
    pub ttl_ms: Option<u64>,
}

/// `GET /v1/kv?prefix=`: a page, or with `count=true` only `count` and `index`.
#[derive(Serialize, ToSchema)]
pub struct ScanPage {
    pub kvs: Option<Vec<KeyValue>>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub cursor: Option<String>,
    pub more: Option<bool>,
    pub count: Option<u64>,
    /// The Raft index the page was read at.
    pub index: u64,
}

/// `DELETE /v1/kv?prefix=`.
#[derive(Serialize, ToSchema)]
pub struct PrefixDeleted {
    pub prefix: String,
    pub deleted: u64,
    /// Keys are left (10,000 per request): repeat.
    pub more: bool,
    pub index: u64,
}

/// `POST /v1/txn` answer.
#[derive(Serialize, ToSchema)]
pub struct TxnAnswer {
    pub succeeded: bool,
    pub index: u64,
    /// One per op of the branch that ran, with `op` and its fields.
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<serde_json::Value>,
}

/// The seed's `POST /store` body.
#[derive(Serialize, ToSchema)]
pub struct SeedSet {
    #[schema(min_length = 1)]
    pub key: String,
    #[schema(min_length = 1)]
    pub value: String,
    /// Optional time to live: seconds, or a humantime string (`30s`).
    #[schema(value_type = Option<Object>)]
    pub ttl: Option<serde_json::Value>,
}

/// A seed answer: `key` and/or `id`, and a message.
#[derive(Serialize, ToSchema)]
pub struct SeedMessage {
    pub key: Option<String>,
    pub id: Option<String>,
    pub message: String,
}

/// The seed's `GET /store/{key}`.
#[derive(Serialize, ToSchema)]
pub struct SeedValue {
    pub key: String,
    pub value: String,
}

/// The seed's `LeaveBody`.
#[derive(Serialize, ToSchema)]
pub struct SeedLeave {
    #[schema(min_length = 1)]
    pub id: String,
}

/// `GET /health`: the seed's document plus Raft detail.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub is_leader: bool,
    /// "healthy" when the node is ready, else "unhealthy".
    pub status: String,
    pub time: String,
    pub node_id: String,
    pub leader_id: Option<String>,
    pub leader_addr: Option<String>,
    pub raft_state: crate::cluster::Role,
    pub term: u64,
    pub applied_index: u64,
    /// Configuration weaknesses the operator should fix (e.g. no cluster
    /// secret on a non-loopback Raft listener); empty when none.
    pub warnings: Vec<String>,
    /// This node's Redis protocol address; null when the Redis listener is
    /// disabled.
    pub redis_addr: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Live {
    pub status: String,
}
