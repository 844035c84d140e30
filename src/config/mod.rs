//! Node configuration: the one place that declares every setting, its type,
//! its default and its documentation.
//!
//! # What this module owns
//! The [`Config`] tree. A setting is a field of one of the section structs
//! below, with a doc comment and a default in the section's [`Default`] impl;
//! that declaration is the only one. Everything else is derived from it:
//!
//! * the YAML key is the field path (`raft.heartbeat_interval_ms`), because
//!   serde deserializes the file straight into these structs;
//! * the list of keys, and so the set of known environment variables, is the
//!   list of leaves of `Config::default()` serialized ([`keys`]);
//! * the environment variable is `DCACHE_` + the key upper-cased with `.` as
//!   `_` ([`env_var_for`]), and its text is interpreted by the field's own
//!   `Deserialize` impl, the same one that reads the YAML value, so the two
//!   layers accept the same names, cases and ranges.
//!
//! Adding a setting is therefore: add the field, its doc comment and its
//! default (and a bound in [`validate`](Config::validate) if it is a size,
//! count or duration, and a line in `configs/config.example.yaml`, which a
//! test checks). No loading code changes. Sections must be plain structs with
//! `#[serde(default, deny_unknown_fields)]` and a `Default` impl (not
//! `Option<Section>`), and fields must not use `skip_serializing_if`, or
//! their keys would vanish from the key list (a test checks that every
//! variable the example file documents is a known one).
//!
//! The layout is a compatibility contract with the Go project dcache
//! re-implements, so key names, env names and defaults must not drift.
//!
//! # Layout
//! * this file: the model (sections, enums, defaults, accessors);
//! * `load`: layering of defaults, YAML file and environment, the legacy
//!   Go keys, and origins for error messages;
//! * `layer`: the serde `Deserializer` that reads the merged tree and lets
//!   each field's type parse environment text;
//! * `validate`: cross-key checks and the bounds of every numeric setting
//!   (the constants are in [`bounds`]);
//! * `addr`: `host:port` syntax and bind / advertise / dial rules;
//! * `error`: [`ConfigError`].
//!
//! # Invariants
//! * A `Config` returned by [`Config::load`] or [`Config::from_yaml_str`]
//!   has passed [`Config::validate`]: addresses are `host:port`, timeouts are
//!   ordered, every numeric setting is within its [`bounds`]. Callers need
//!   not re-check, and arithmetic such as `6 * (max_key_bytes +
//!   max_value_bytes) + 4096` cannot overflow even in 32 bits.
//! * Nothing is silently ignored: unknown YAML keys and unknown `DCACHE_*`
//!   variables are errors, because a typo that falls back to a default is a
//!   cluster misconfiguration that shows up much later and far away.
//! * Every error names the key, the offending value and where it came from
//!   (file name and line, or env variable) so an operator can fix it without
//!   reading code.
//!
//! # What it does not do
//! No command-line parsing (the binary maps `-config FILE` to `path`), no
//! reading of the process environment (the caller passes `std::env::vars()`,
//! which keeps tests hermetic), no logging setup and no side effects such as
//! creating `data_dir`.
//!
//! Uses: nothing in the crate (a leaf).

mod addr;
mod cache;
mod error;
mod layer;
mod load;
mod secret;
mod validate;
mod watch;

#[cfg(test)]
mod tests;

pub use cache::{ByteSize, CacheConfig, EvictionPolicy};
pub use error::ConfigError;
pub use load::{CLIENT_ENV_VARS, ENV_PREFIX, env_var_for, keys};
pub use secret::{MIN_SECRET_BYTES, Secret};
pub use validate::bounds;
pub use watch::WatchConfig;

use error::invalid;
use serde::de::Unexpected;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::str::FromStr;

const EXPECT_BOOL: &str = "a boolean (true/false, yes/no, 1/0)";
const EXPECT_LEVEL: &str = "one of trace, debug, info, warn, error";
const EXPECT_READ_POLICY: &str = "one of read_index, lease";
const EXPECT_CLIENT_AUTH: &str = "one of none, optional, required";

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

/// How linearizable reads are served. Parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicy {
    /// Leader confirms leadership with a heartbeat round before reading (safe
    /// under clock skew; one extra round trip).
    #[default]
    ReadIndex,
    /// Leader reads locally while its lease is valid (faster; relies on
    /// bounded clock drift).
    Lease,
}

impl ReadPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReadPolicy::ReadIndex => "read_index",
            ReadPolicy::Lease => "lease",
        }
    }
}

impl fmt::Display for ReadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReadPolicy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read_index" => Ok(ReadPolicy::ReadIndex),
            "lease" => Ok(ReadPolicy::Lease),
            _ => Err(invalid(
                "raft.read_policy",
                s,
                format!("expected {EXPECT_READ_POLICY}"),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ReadPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor(PhantomData, EXPECT_READ_POLICY))
    }
}

/// Whether the client listeners (HTTP API, Redis) ask TLS clients for a
/// certificate. Parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificate asked for.
    #[default]
    None,
    /// Asked for; one that is sent must chain to `tls.ca_file`.
    Optional,
    /// Required, chaining to `tls.ca_file`.
    Required,
}

impl FromStr for ClientAuth {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "optional" => Ok(ClientAuth::Optional),
            "required" => Ok(ClientAuth::Required),
            _ => Err(invalid(
                "tls.client_auth",
                s,
                format!("expected {EXPECT_CLIENT_AUTH}"),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for ClientAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor(PhantomData, EXPECT_CLIENT_AUTH))
    }
}

/// Log verbosity. Parsed case-insensitively; `warning` is accepted for `warn`
/// because Go loggers (logrus, zap) spell it that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Lowercase name, usable directly as a `tracing` filter directive.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(invalid(
                "logging.level",
                s,
                format!("expected {EXPECT_LEVEL}"),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor(PhantomData, EXPECT_LEVEL))
    }
}

/// Deserializes a name through `FromStr`. A visitor (rather than String then
/// parse) so the error is raised while the parser is on the scalar and gets
/// its key path and line; `invalid_value` lets the env layer report the
/// `expecting` text as what was expected.
pub(crate) struct FromStrVisitor<T>(PhantomData<T>, &'static str);

impl<T: FromStr> serde::de::Visitor<'_> for FromStrVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}

// ---------------------------------------------------------------------------
// Config structs: one field per setting, defaults in the Default impls only
// ---------------------------------------------------------------------------

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub http: HttpConfig,
    pub raft: RaftConfig,
    pub cluster: ClusterConfig,
    pub logging: LoggingConfig,
    pub shutdown: ShutdownConfig,
    pub cache: CacheConfig,
    pub watch: WatchConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
}

/// `node.*`: identity and storage of this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id. Empty means "use the raft advertise address" (see [`Config::node_id`]).
    #[serde(deserialize_with = "de_string_or_null")]
    pub id: String,
    /// Directory for the Raft log, snapshots and node state. Must not be empty.
    pub data_dir: PathBuf,
    /// Legacy (Go) host used with `http.port` / `raft.port`; empty if unset.
    #[serde(deserialize_with = "de_string_or_null")]
    pub bind_addr: String,
    /// Threads of the async runtime that runs this node (its listeners,
    /// Raft and the state machine; the WAL's flush thread is apart). 0 = one
    /// per CPU core. Nodes that share a machine's cores do better with fewer
    /// (docs/BENCHMARKS.md, "Performance work", item 15).
    pub worker_threads: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: String::new(),
            data_dir: PathBuf::from("./data"),
            bind_addr: String::new(),
            worker_threads: 0,
        }
    }
}

/// `http.*`: the client and cluster-management API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP API listens on.
    pub bind_addr: String,
    /// Address other nodes and clients should use; empty = `bind_addr`.
    #[serde(deserialize_with = "de_string_or_null")]
    pub advertise_addr: String,
    /// Legacy (Go) port, combined with `node.bind_addr`.
    pub port: Option<u16>,
    /// Largest accepted key, in bytes (1 ..= [`bounds::MAX_KEY_BYTES`]).
    pub max_key_bytes: usize,
    /// Largest accepted value, in bytes (1 ..= [`bounds::MAX_VALUE_BYTES`]).
    pub max_value_bytes: usize,
    /// How long a request may wait for Raft before it fails.
    pub request_timeout_ms: u64,
    /// Maximum concurrent connections (1 ..= [`bounds::MAX_CONNECTIONS`]).
    /// Past it, the oldest idle keep-alive connection is closed to make room.
    pub max_connections: usize,
    /// Maximum concurrent connections from one client IP
    /// (1 ..= [`bounds::MAX_CONNECTIONS`]).
    pub max_connections_per_ip: usize,
    /// Requests per second one client IP may make (token bucket refill);
    /// 0 = no rate limit. Over it: 429 `rate_limited` with `Retry-After`.
    pub rate_limit_per_ip: u32,
    /// Requests one client IP may make in a burst above the rate
    /// (the bucket's size; 1 ..= [`bounds::MAX_RATE`]).
    pub rate_limit_burst: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind_addr: "localhost:11000".to_string(),
            advertise_addr: String::new(),
            port: None,
            max_key_bytes: 4096,
            max_value_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            max_connections: 1024,
            max_connections_per_ip: 512,
            rate_limit_per_ip: 0,
            rate_limit_burst: 100,
        }
    }
}

/// `raft.*`: consensus timing, snapshots, reads and the Raft RPC listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Address the Raft RPC server listens on; must differ from `http.bind_addr`.
    pub bind_addr: String,
    /// Address peers should dial; empty = `bind_addr`. Also the default node id.
    #[serde(deserialize_with = "de_string_or_null")]
    pub advertise_addr: String,
    /// Legacy (Go) port, combined with `node.bind_addr`.
    pub port: Option<u16>,
    /// Interval between leader heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Lower end of the random election timeout; > `heartbeat_interval_ms`.
    pub election_timeout_min_ms: u64,
    /// Upper end of the random election timeout; >= `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Log entries since the last snapshot that trigger a new one
    /// (1 ..= [`bounds::MAX_SNAPSHOT_THRESHOLD`]).
    pub snapshot_threshold: u64,
    /// How linearizable reads are served.
    pub read_policy: ReadPolicy,
    /// Timeout of one Raft RPC.
    pub rpc_timeout_ms: u64,
    /// How long the log's flush thread waits for more writes before an
    /// fsync (group-commit window), in microseconds, when more than one is
    /// queued; a lone write is fsynced at once. 0 = never wait.
    pub log_flush_wait_us: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            bind_addr: "localhost:12000".to_string(),
            advertise_addr: String::new(),
            port: None,
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_threshold: 10_000,
            read_policy: ReadPolicy::ReadIndex,
            rpc_timeout_ms: 1000,
            log_flush_wait_us: 200,
        }
    }
}

/// `cluster.*`: how this node finds its cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// HTTP address of any existing member to join through; empty = bootstrap
    /// a new single-node cluster (or restart from existing state).
    #[serde(deserialize_with = "de_string_or_null")]
    pub join_addr: String,
    /// Cap of the exponential backoff between join attempts.
    pub join_retry_max_ms: u64,
    /// Shared secret every Raft RPC and join/leave request must carry
    /// (header `x-dcache-cluster-secret`); empty = none (peers are not
    /// authenticated). At least [`MIN_SECRET_BYTES`] visible ASCII bytes.
    pub secret: Secret,
    /// File holding the cluster secret (read at start; one trailing newline
    /// dropped); empty = none. At most one of `secret` and `secret_file`.
    pub secret_file: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            join_addr: String::new(),
            join_retry_max_ms: 5000,
            secret: Secret::default(),
            secret_file: PathBuf::new(),
        }
    }
}

/// `redis.*`: the Redis protocol (RESP2/RESP3) listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Address the Redis protocol listener binds; empty = no Redis
    /// listener. The default port is 6380 so that a local Redis on 6379
    /// does not clash.
    #[serde(deserialize_with = "de_string_or_null")]
    pub bind_addr: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            bind_addr: "localhost:6380".to_string(),
        }
    }
}

/// `auth.*`: bearer tokens on the client API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require `Authorization: Bearer <token>` on the client API (401
    /// without a valid token, 403 for the wrong role or key prefix).
    #[serde(deserialize_with = "de_lenient_bool")]
    pub enabled: bool,
    /// The tokens file (`name role prefix argon2-hash` lines; made with
    /// `dcache token new`), read at start. Required when `enabled`.
    pub tokens_file: PathBuf,
    /// Require a token (any role) on `/livez`, `/readyz` and `/metrics`
    /// too; by default they stay open for probes and scrapers.
    #[serde(deserialize_with = "de_lenient_bool")]
    pub protect_probes: bool,
}

/// `tls.*`: TLS on all three listeners (HTTP API, Raft, Redis) and on the
/// calls between nodes. One section for all of them: a node has one
/// certificate, which it serves on every listener and presents as client
/// certificate to its peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The node's certificate chain (PEM, leaf first); empty = no TLS.
    /// When set, every listener speaks TLS only, and the certificate must
    /// name the node id (as a DNS or IP subject alternative name; for the
    /// default id `host:port`, that host): peers check it.
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM). Required with `cert_file`.
    pub key_file: PathBuf,
    /// The CA certificate(s) (PEM) that peers' certificates, and clients'
    /// certificates when asked for, must chain to; also the only root this
    /// node trusts when it calls another node. Required with `cert_file`.
    pub ca_file: PathBuf,
    /// Client certificates on the HTTP API and Redis listeners: none,
    /// optional (checked when sent) or required. The Raft listener always
    /// requires one naming the calling node.
    pub client_auth: ClientAuth,
    /// How often the three files are checked for changes, which reloads
    /// them (new connections use the new certificate; open ones go on);
    /// 0 = only on SIGHUP.
    pub reload_check_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            client_auth: ClientAuth::None,
            reload_check_ms: 10_000,
        }
    }
}

impl TlsConfig {
    /// Whether TLS is on (`cert_file` set).
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

/// `logging.*`: verbosity and format of the node's log.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Verbosity.
    pub level: LogLevel,
    /// JSON log lines instead of text. Accepts YAML booleans and, for parity
    /// with env and Go's yaml.v3, the strings yes/no/1/0 (any case).
    #[serde(deserialize_with = "de_lenient_bool")]
    pub json: bool,
}

/// `shutdown.*`: behaviour on SIGINT/SIGTERM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_ms: 10_000,
        }
    }
}

// ---------------------------------------------------------------------------
// Lenient field parsers (shared by the file and the environment)
// ---------------------------------------------------------------------------

/// `key:` with nothing after it is YAML null; for optional strings an
/// operator means "empty", as Go's yaml.v3 treats it. From the environment,
/// an empty value is null too, so `DCACHE_X=` clears the setting.
fn de_string_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn de_lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECT_BOOL)
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<bool, E> {
            Err(E::invalid_value(Unexpected::Signed(v), &self))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            parse_bool(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

// ---------------------------------------------------------------------------
// Derived addresses
// ---------------------------------------------------------------------------

impl Config {
    /// The Raft node id: `node.id` if non-empty, else the raft advertise
    /// address (which is what the Go project used).
    pub fn node_id(&self) -> String {
        if self.node.id.is_empty() {
            self.raft_advertise_addr()
        } else {
            self.node.id.clone()
        }
    }

    /// Address peers dial for Raft RPCs: `raft.advertise_addr` if non-empty,
    /// else `raft.bind_addr`.
    pub fn raft_advertise_addr(&self) -> String {
        if self.raft.advertise_addr.is_empty() {
            self.raft.bind_addr.clone()
        } else {
            self.raft.advertise_addr.clone()
        }
    }

    /// Address clients and joining nodes use for HTTP: `http.advertise_addr`
    /// if non-empty, else `http.bind_addr`.
    pub fn http_advertise_addr(&self) -> String {
        if self.http.advertise_addr.is_empty() {
            self.http.bind_addr.clone()
        } else {
            self.http.advertise_addr.clone()
        }
    }
}
