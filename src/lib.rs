//! dcache: a distributed, strongly consistent key-value cache replicated
//! with Raft (openraft).
//!
//! Module map. Dependencies point one way, top to bottom; a module uses only
//! modules below it (checked by `tests/layering.rs`):
//!
//! ```text
//! node      composition root: storage, Raft, listeners, join, shutdown
//! api       client HTTP API: seed + /v1 routes, forwarding, errors, metrics
//! resp      Redis protocol (RESP2/RESP3) listener: parse, commands, replies
//! cluster   the one door to Raft: write, read at a consistency, membership
//! raft      openraft types, log store, state machine, snapshots, peer RPC
//! kv        the replicated vocabulary and the deterministic cache
//! client    typed HTTP client for dcache (CLI, bench, tests, fault harness)
//! ---- leaves (use no module above, only each other as listed) ----
//! telemetry (uses config)   config   net   wire   auth   error (uses id, wire)   id
//! ```
//!
//! docs/ARCHITECTURE.md has the request path and the design notes.

pub mod api;
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod error;
pub mod id;
pub mod kv;
pub mod net;
pub mod node;
pub mod raft;
pub mod resp;
pub mod telemetry;
pub mod wire;
