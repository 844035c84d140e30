//! dcache: a distributed, strongly consistent key-value cache replicated
//! with Raft (openraft).
//!
//! Module map (dependencies point one way): `kv` ← `raft` ← `cluster` ←
//! `api` ← `node` ← `main`; `config`, `error` and `telemetry` are leaves.
//! docs/ARCHITECTURE.md has the request path and the design notes.

pub mod api;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod error;
pub mod kv;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod telemetry;
