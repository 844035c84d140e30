//! Node configuration: the one place that knows every setting, its default,
//! its YAML key and its environment variable.
//!
//! # What this module owns
//! The [`Config`] tree and how it is assembled from three layers. The layout
//! is a compatibility contract with the Go project dcache re-implements, so
//! key names, env names and defaults must not drift:
//!
//! * **defaults**: [`Default`] impls in this file and nowhere else (serde
//!   fills missing keys from them, so a default written twice cannot disagree);
//! * **YAML file** (optional, `-config FILE`): overrides defaults;
//! * **environment** (`DCACHE_<SECTION>_<KEY>`): overrides the file.
//!
//! Precedence is therefore `env > file > defaults`. On top of that the Go
//! code's legacy keys (`node.bind_addr` host + `http.port` / `raft.port`) are
//! folded into `http.bind_addr` / `raft.bind_addr` when those were not given
//! explicitly in the file or env; an explicit `*.bind_addr` always wins.
//!
//! # Invariants
//! * A `Config` returned by [`Config::load`] or [`Config::from_yaml_str`]
//!   has passed [`Config::validate`]: addresses are `host:port`, timeouts are
//!   ordered, limits are non-zero. Callers need not re-check.
//! * Nothing is silently ignored: unknown YAML keys and unknown `DCACHE_*`
//!   variables are errors, because a typo that falls back to a default is a
//!   cluster misconfiguration that shows up much later and far away.
//! * Every error names the key, the offending value and where it came from
//!   (file name, or env variable) so an operator can fix it without reading code.
//!
//! # What it does not do
//! No command-line parsing (the binary maps `-config FILE` to `path`), no
//! reading of the process environment (the caller passes `std::env::vars()`,
//! which keeps tests hermetic), no logging setup and no side effects such as
//! creating `data_dir`.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Prefix of every environment variable this module reads.
pub const ENV_PREFIX: &str = "DCACHE_";

/// Every settable key, in file order. The env variable of a key is derived
/// from it (see [`env_var_for`]) so the two can never disagree.
const KEYS: &[&str] = &[
    "node.id",
    "node.data_dir",
    "node.bind_addr",
    "http.bind_addr",
    "http.advertise_addr",
    "http.port",
    "http.max_key_bytes",
    "http.max_value_bytes",
    "http.request_timeout_ms",
    "http.max_connections",
    "raft.bind_addr",
    "raft.advertise_addr",
    "raft.port",
    "raft.heartbeat_interval_ms",
    "raft.election_timeout_min_ms",
    "raft.election_timeout_max_ms",
    "raft.snapshot_threshold",
    "raft.read_policy",
    "raft.rpc_timeout_ms",
    "raft.log_flush_wait_us",
    "cluster.join_addr",
    "cluster.join_retry_max_ms",
    "logging.level",
    "logging.json",
    "shutdown.drain_timeout_ms",
];

/// The environment variable for a dotted key: `raft.heartbeat_interval_ms`
/// → `DCACHE_RAFT_HEARTBEAT_INTERVAL_MS`.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

const EXPECT_UINT: &str = "an unsigned integer";
const EXPECT_PORT: &str = "a port number 0-65535";
const EXPECT_BOOL: &str = "a boolean (true/false, yes/no, 1/0)";
const EXPECT_LEVEL: &str = "one of trace, debug, info, warn, error";
const EXPECT_READ_POLICY: &str = "one of read_index, lease";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a configuration could not be loaded. Display texts are meant to be
/// printed as-is to an operator before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `-config FILE` names a file that does not exist.
    #[error("config file \"{}\" not found", path.display())]
    NotFound { path: PathBuf },

    /// Any other failure to read the file (permissions, is a directory, not UTF-8...).
    #[error("cannot read config file \"{}\": {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid YAML, has an unknown key, or a value of the wrong
    /// type. `message` is the parser's, which names the key path and ends
    /// with `at line L column C`.
    #[error("config file \"{origin}\": {message}")]
    Yaml {
        origin: String,
        message: String,
        /// 1-based line and column, when the parser knows them.
        location: Option<(usize, usize)>,
    },

    /// A `DCACHE_*` variable whose value does not parse for its key.
    #[error("invalid value {value:?} for {key} (from {var}): expected {expected}")]
    EnvValue {
        var: String,
        key: String,
        value: String,
        expected: String,
    },

    /// A `DCACHE_*` variable that is not a setting (almost always a typo).
    #[error("unknown environment variable {var}{}", suggestion_suffix(.suggestion))]
    UnknownEnv {
        var: String,
        /// The closest known variable, if one is close enough to be a likely typo.
        suggestion: Option<String>,
    },

    /// A value that parsed but is not acceptable (bad address, bad ordering
    /// of timeouts, zero limit...). `origin` says where the value came from
    /// (`from DCACHE_X`, `in config file "f.yaml"`) when known.
    #[error("invalid {key} {value:?}{}: {reason}", origin_suffix(.origin))]
    Invalid {
        key: String,
        value: String,
        reason: String,
        origin: Option<String>,
    },
}

fn suggestion_suffix(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s}?)"),
        None => " (not a dcache setting)".to_string(),
    }
}

fn origin_suffix(o: &Option<String>) -> String {
    match o {
        Some(o) => format!(" ({o})"),
        None => String::new(),
    }
}

fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
        origin: None,
    }
}

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

/// How linearizable reads are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
    /// Case-insensitive, for env values; YAML uses serde's exact snake_case names.
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
        // A visitor (rather than String then parse) so the error is raised
        // while the parser is on the scalar and gets its key path and line.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LogLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECT_LEVEL)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LogLevel, E> {
                // The YAML parser prefixes the key path ("logging.level: ").
                v.parse()
                    .map_err(|_| E::custom(format!("invalid value {v:?}: expected {EXPECT_LEVEL}")))
            }
        }
        d.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------
// Config structs
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id. Empty means "use the raft advertise address" (see [`Config::node_id`]).
    #[serde(deserialize_with = "de_string_or_null")]
    pub id: String,
    pub data_dir: PathBuf,
    /// Legacy (Go) host used with `http.port` / `raft.port`; empty if unset.
    #[serde(deserialize_with = "de_string_or_null")]
    pub bind_addr: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: String::new(),
            data_dir: PathBuf::from("./data"),
            bind_addr: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub bind_addr: String,
    /// Address other nodes and clients should use; empty = `bind_addr`.
    #[serde(deserialize_with = "de_string_or_null")]
    pub advertise_addr: String,
    /// Legacy (Go) port, combined with `node.bind_addr`.
    pub port: Option<u16>,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub request_timeout_ms: u64,
    pub max_connections: usize,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    pub bind_addr: String,
    /// Address peers should dial; empty = `bind_addr`. Also the default node id.
    #[serde(deserialize_with = "de_string_or_null")]
    pub advertise_addr: String,
    /// Legacy (Go) port, combined with `node.bind_addr`.
    pub port: Option<u16>,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Log entries since the last snapshot that trigger a new one (>= 1).
    pub snapshot_threshold: u64,
    pub read_policy: ReadPolicy,
    pub rpc_timeout_ms: u64,
    /// How long the log's flush thread waits for more writes before an
    /// fsync (group-commit window), in microseconds. 0 = fsync at once.
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// HTTP address of any existing member to join through; empty = bootstrap
    /// a new single-node cluster (or restart from existing state).
    #[serde(deserialize_with = "de_string_or_null")]
    pub join_addr: String,
    /// Cap of the exponential backoff between join attempts.
    pub join_retry_max_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            join_addr: String::new(),
            join_retry_max_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    pub level: LogLevel,
    /// Accepts YAML booleans and, for parity with env and Go's yaml.v3,
    /// the strings yes/no/1/0 (any case).
    #[serde(deserialize_with = "de_lenient_bool")]
    pub json: bool,
}

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

/// `key:` with nothing after it is YAML null; for optional strings an
/// operator means "empty", as Go's yaml.v3 treats it.
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
                _ => Err(E::custom(format!(
                    "invalid value \"{v}\": expected {EXPECT_BOOL}"
                ))),
            }
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<bool, E> {
            Err(E::custom(format!(
                "invalid value \"{v}\": expected {EXPECT_BOOL}"
            )))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            parse_bool(v)
                .ok_or_else(|| E::custom(format!("invalid value {v:?}: expected {EXPECT_BOOL}")))
        }
    }
    d.deserialize_any(V)
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Where each non-default value came from, so validation errors can point at
/// the file or variable to fix. Keyed by dotted key.
#[derive(Default)]
struct Origins(HashMap<&'static str, String>);

impl Origins {
    fn set(&mut self, key: &'static str, origin: String) {
        self.0.insert(key, origin);
    }
    fn get(&self, key: &str) -> Option<&String> {
        self.0.get(key)
    }
    /// Attach the origin of the offending key to a validation error.
    fn annotate(&self, err: ConfigError) -> ConfigError {
        match err {
            ConfigError::Invalid {
                key,
                value,
                reason,
                origin: None,
            } => {
                // A cross-key check may fail on a key left at its default
                // because the *other* key was changed: point at that one.
                let related = match key.as_str() {
                    "raft.election_timeout_min_ms" => Some("raft.heartbeat_interval_ms"),
                    "raft.election_timeout_max_ms" => Some("raft.election_timeout_min_ms"),
                    "raft.bind_addr" => Some("http.bind_addr"),
                    _ => None,
                };
                let origin = self.get(&key).cloned().or_else(|| {
                    let other = related?;
                    self.get(other).map(|o| format!("{other} {o}"))
                });
                ConfigError::Invalid {
                    key,
                    value,
                    reason,
                    origin,
                }
            }
            other => other,
        }
    }
}

/// Keys a YAML document mentions, each with whether its value is non-empty:
/// an explicit null/empty value does not count as "set" for the legacy rule,
/// but still has an origin for error messages.
type PresentKeys = Vec<(&'static str, bool)>;

/// Parse a YAML document into a config plus the keys it mentions (needed for
/// the legacy-key rule and for error origins).
fn parse_yaml(yaml: &str, origin: &str) -> Result<(Config, PresentKeys), ConfigError> {
    let yaml_err = |e: serde_yaml_ng::Error| {
        let location = e.location().map(|l| (l.line(), l.column()));
        let mut message = e.to_string();
        // Some errors (e.g. an unknown top-level key) omit the position from
        // their text even though the parser knows it.
        if let Some((line, column)) = location
            && !message.contains(" line ")
        {
            message.push_str(&format!(" at line {line} column {column}"));
        }
        ConfigError::Yaml {
            origin: origin.to_string(),
            message,
            location,
        }
    };
    // Parse to a generic value first: syntax errors then get the parser's own
    // message rather than a confusing type error from a half-read document.
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).map_err(yaml_err)?;
    if value.is_null() {
        // Empty or comments-only file: all defaults.
        return Ok((Config::default(), Vec::new()));
    }
    // Deserialize from the text (not the Value) so type errors keep line/column.
    let config: Config = serde_yaml_ng::from_str(yaml).map_err(yaml_err)?;

    let mut present = Vec::new();
    if let Some(top) = value.as_mapping() {
        for (section, body) in top {
            let (Some(section), Some(body)) = (section.as_str(), body.as_mapping()) else {
                continue;
            };
            for (k, v) in body {
                let Some(k) = k.as_str() else { continue };
                let dotted = format!("{section}.{k}");
                if let Some(key) = KEYS.iter().find(|key| **key == dotted) {
                    let empty = v.is_null() || v.as_str().is_some_and(str::is_empty);
                    present.push((*key, !empty));
                }
            }
        }
    }
    Ok((config, present))
}

/// Record where the file's keys came from and which count as explicitly set.
fn note_file_keys(
    present: &PresentKeys,
    file: &str,
    origins: &mut Origins,
    explicit: &mut BTreeSet<&'static str>,
) {
    for &(key, non_empty) in present {
        origins.set(key, format!("in config file {file:?}"));
        if non_empty {
            explicit.insert(key);
        }
    }
}

impl Config {
    /// Load: defaults, then the YAML file if `path` is Some, then env
    /// overrides from `env` (only keys starting with `DCACHE_` matter), then
    /// resolve legacy keys, then [`validate`](Self::validate).
    ///
    /// Pass `std::env::vars()` for the real environment. Any `DCACHE_*`
    /// variable that is not a setting is an error.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut origins = Origins::default();
        let mut explicit = BTreeSet::new();

        let mut config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        ConfigError::NotFound {
                            path: path.to_path_buf(),
                        }
                    } else {
                        ConfigError::Io {
                            path: path.to_path_buf(),
                            source,
                        }
                    }
                })?;
                let name = path.display().to_string();
                let (config, present) = parse_yaml(&text, &name)?;
                note_file_keys(&present, &name, &mut origins, &mut explicit);
                config
            }
        };

        // Sorted so that, with several bad variables, the reported one is
        // deterministic regardless of the OS's environment order.
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (var, value) in vars {
            let Some(key) = KEYS.iter().copied().find(|k| env_var_for(k) == var) else {
                return Err(ConfigError::UnknownEnv {
                    suggestion: suggest_env(&var),
                    var,
                });
            };
            config
                .set_from_env(key, &value)
                .map_err(|expected| ConfigError::EnvValue {
                    var: var.clone(),
                    key: key.to_string(),
                    value: value.clone(),
                    expected: expected.to_string(),
                })?;
            if value.is_empty() {
                explicit.remove(key);
            } else {
                explicit.insert(key);
            }
            origins.set(key, format!("from {var}"));
        }

        config.resolve_legacy(&explicit, &mut origins);
        config.validate().map_err(|e| origins.annotate(e))?;
        Ok(config)
    }

    /// Parse a YAML document (no env), resolve legacy keys and validate.
    /// `origin` names the document in error messages (usually the file name).
    pub fn from_yaml_str(yaml: &str, origin: &str) -> Result<Config, ConfigError> {
        let (mut config, present) = parse_yaml(yaml, origin)?;
        let mut origins = Origins::default();
        let mut explicit = BTreeSet::new();
        note_file_keys(&present, origin, &mut origins, &mut explicit);
        config.resolve_legacy(&explicit, &mut origins);
        config.validate().map_err(|e| origins.annotate(e))?;
        Ok(config)
    }

    /// Set one key from an env value. `Err` carries what was expected.
    fn set_from_env(&mut self, key: &str, v: &str) -> Result<(), &'static str> {
        fn uint<T: FromStr>(v: &str) -> Result<T, &'static str> {
            // Digits only: `u64::from_str` would also take "+5".
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EXPECT_UINT);
            }
            v.parse().map_err(|_| EXPECT_UINT)
        }
        fn port(v: &str) -> Result<Option<u16>, &'static str> {
            if v.is_empty() {
                return Ok(None); // empty clears the legacy port
            }
            if !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EXPECT_PORT);
            }
            v.parse().map(Some).map_err(|_| EXPECT_PORT)
        }
        let s = || v.to_string();
        match key {
            "node.id" => self.node.id = s(),
            "node.data_dir" => self.node.data_dir = PathBuf::from(v),
            "node.bind_addr" => self.node.bind_addr = s(),
            "http.bind_addr" => self.http.bind_addr = s(),
            "http.advertise_addr" => self.http.advertise_addr = s(),
            "http.port" => self.http.port = port(v)?,
            "http.max_key_bytes" => self.http.max_key_bytes = uint(v)?,
            "http.max_value_bytes" => self.http.max_value_bytes = uint(v)?,
            "http.request_timeout_ms" => self.http.request_timeout_ms = uint(v)?,
            "http.max_connections" => self.http.max_connections = uint(v)?,
            "raft.bind_addr" => self.raft.bind_addr = s(),
            "raft.advertise_addr" => self.raft.advertise_addr = s(),
            "raft.port" => self.raft.port = port(v)?,
            "raft.heartbeat_interval_ms" => self.raft.heartbeat_interval_ms = uint(v)?,
            "raft.election_timeout_min_ms" => self.raft.election_timeout_min_ms = uint(v)?,
            "raft.election_timeout_max_ms" => self.raft.election_timeout_max_ms = uint(v)?,
            "raft.snapshot_threshold" => self.raft.snapshot_threshold = uint(v)?,
            "raft.read_policy" => {
                self.raft.read_policy = v.parse().map_err(|_| EXPECT_READ_POLICY)?
            }
            "raft.rpc_timeout_ms" => self.raft.rpc_timeout_ms = uint(v)?,
            "raft.log_flush_wait_us" => self.raft.log_flush_wait_us = uint(v)?,
            "cluster.join_addr" => self.cluster.join_addr = s(),
            "cluster.join_retry_max_ms" => self.cluster.join_retry_max_ms = uint(v)?,
            "logging.level" => self.logging.level = v.parse().map_err(|_| EXPECT_LEVEL)?,
            "logging.json" => self.logging.json = parse_bool(v).ok_or(EXPECT_BOOL)?,
            "shutdown.drain_timeout_ms" => self.shutdown.drain_timeout_ms = uint(v)?,
            other => unreachable!("key {other} is in KEYS but has no env setter"),
        }
        Ok(())
    }

    /// The Go project configured `node.bind_addr` (host) + `http.port` /
    /// `raft.port`. Honour that when the modern `*.bind_addr` was not set
    /// explicitly; an explicit `*.bind_addr` always wins.
    fn resolve_legacy(&mut self, explicit: &BTreeSet<&'static str>, origins: &mut Origins) {
        let host = match self.node.bind_addr.as_str() {
            "" => "localhost".to_string(),
            // Bare IPv6 host: bracket it so the result is a valid host:port.
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        };
        let host_set = !self.node.bind_addr.is_empty();
        for (key, port_key, bind, port, default_port) in [
            (
                "http.bind_addr",
                "http.port",
                &mut self.http.bind_addr,
                self.http.port,
                11000,
            ),
            (
                "raft.bind_addr",
                "raft.port",
                &mut self.raft.bind_addr,
                self.raft.port,
                12000,
            ),
        ] {
            if explicit.contains(key) || (port.is_none() && !host_set) {
                continue;
            }
            // As in Go, a legacy host alone keeps the default port.
            *bind = format!("{host}:{}", port.unwrap_or(default_port));
            let from = match (host_set, port.is_some()) {
                (true, true) => format!("node.bind_addr and {port_key}"),
                (true, false) => "node.bind_addr".to_string(),
                _ => port_key.to_string(),
            };
            origins.set(key, format!("derived from {from}"));
        }
    }

    /// Check every invariant a loaded config promises. Returns the first
    /// problem found. Called by `load` and `from_yaml_str`; call it again
    /// only if you mutate a config by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_addr("http.bind_addr", &self.http.bind_addr, AddrUse::Bind)?;
        check_addr("raft.bind_addr", &self.raft.bind_addr, AddrUse::Bind)?;
        if !self.http.advertise_addr.is_empty() {
            check_addr(
                "http.advertise_addr",
                &self.http.advertise_addr,
                AddrUse::Advertise,
            )?;
        }
        if !self.raft.advertise_addr.is_empty() {
            check_addr(
                "raft.advertise_addr",
                &self.raft.advertise_addr,
                AddrUse::Advertise,
            )?;
        }
        if !self.cluster.join_addr.is_empty() {
            check_addr("cluster.join_addr", &self.cluster.join_addr, AddrUse::Dial)?;
        }
        // Port 0 on both sides is two distinct ephemeral ports, not a clash.
        if self
            .http
            .bind_addr
            .eq_ignore_ascii_case(&self.raft.bind_addr)
            && !self.raft.bind_addr.ends_with(":0")
        {
            return Err(invalid(
                "raft.bind_addr",
                &self.raft.bind_addr,
                "must differ from http.bind_addr",
            ));
        }

        if self.node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "", "must not be empty"));
        }

        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 {
            return Err(invalid("raft.heartbeat_interval_ms", 0, "must be >= 1"));
        }
        if r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                r.election_timeout_min_ms,
                format!(
                    "must be greater than raft.heartbeat_interval_ms ({})",
                    r.heartbeat_interval_ms
                ),
            ));
        }
        if r.election_timeout_max_ms < r.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                r.election_timeout_max_ms,
                format!(
                    "must be >= raft.election_timeout_min_ms ({})",
                    r.election_timeout_min_ms
                ),
            ));
        }
        for (key, value) in [
            ("raft.snapshot_threshold", r.snapshot_threshold),
            ("raft.rpc_timeout_ms", r.rpc_timeout_ms),
            ("http.max_key_bytes", self.http.max_key_bytes as u64),
            ("http.max_value_bytes", self.http.max_value_bytes as u64),
            ("http.request_timeout_ms", self.http.request_timeout_ms),
            ("http.max_connections", self.http.max_connections as u64),
            ("cluster.join_retry_max_ms", self.cluster.join_retry_max_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "must be >= 1"));
            }
        }
        Ok(())
    }

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

// ---------------------------------------------------------------------------
// Address checks
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum AddrUse {
    /// We listen on it: port 0 (ephemeral) and wildcard hosts are fine.
    Bind,
    /// Others dial it: needs a real port and a routable host.
    Advertise,
    /// We dial it: needs a real port.
    Dial,
}

fn check_addr(key: &str, addr: &str, usage: AddrUse) -> Result<(), ConfigError> {
    let (host, port) = split_host_port(addr).map_err(|reason| invalid(key, addr, reason))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, addr, "port must be a number 0-65535"))?;
    if port == 0 && usage != AddrUse::Bind {
        return Err(invalid(key, addr, "port 0 cannot be dialled"));
    }
    if usage == AddrUse::Advertise && host.is_some_and(|ip| ip.is_unspecified()) {
        return Err(invalid(
            key,
            addr,
            "a wildcard host cannot be advertised; use a name peers can reach",
        ));
    }
    Ok(())
}

/// Split and syntax-check `host:port`. Returns the host's IP if it is a
/// literal, and the port text (all digits, not yet range-checked).
fn split_host_port(addr: &str) -> Result<(Option<IpAddr>, &str), &'static str> {
    const EXPECTED: &str = "expected host:port";
    let (ip, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, rest) = rest.split_once(']').ok_or(EXPECTED)?;
        let port = rest.strip_prefix(':').ok_or(EXPECTED)?;
        let ip: Ipv6Addr = h.parse().map_err(|_| "invalid IPv6 address in brackets")?;
        (Some(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or(EXPECTED)?;
        if host.is_empty() {
            return Err("host must not be empty");
        }
        if host.contains(':') {
            return Err("IPv6 hosts must be written in brackets, e.g. [::1]:12000");
        }
        (check_host(host)?, port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port must be a number 0-65535");
    }
    Ok((ip, port))
}

fn check_host(host: &str) -> Result<Option<IpAddr>, &'static str> {
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Looks like a dotted quad: it must be one, "300.1.2.3" is a typo.
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| Some(IpAddr::V4(ip)))
            .map_err(|_| "invalid IPv4 address");
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(None)
    } else {
        Err("invalid host name")
    }
}

/// Closest known variable to a misspelt one, if plausibly a typo.
fn suggest_env(var: &str) -> Option<String> {
    KEYS.iter()
        .map(|k| env_var_for(k))
        .map(|known| (edit_distance(var, &known), known))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A named temp file holding `yaml`; kept alive by the returned handle.
    fn yaml_file(yaml: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        f
    }

    fn load_yaml_env(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let f = yaml_file(yaml);
        Config::load(Some(f.path()), env(vars))
    }

    fn err_yaml(yaml: &str) -> String {
        Config::from_yaml_str(yaml, "test.yaml")
            .expect_err("expected an error")
            .to_string()
    }

    fn err_env(vars: &[(&str, &str)]) -> String {
        Config::load(None, env(vars))
            .expect_err("expected an error")
            .to_string()
    }

    #[track_caller]
    fn assert_contains(msg: &str, parts: &[&str]) {
        for p in parts {
            assert!(msg.contains(p), "message {msg:?} should contain {p:?}");
        }
    }

    // --- defaults -----------------------------------------------------------

    #[test]
    fn defaults_match_seed() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.http.bind_addr, "localhost:11000");
        assert_eq!(c.raft.bind_addr, "localhost:12000");
        assert_eq!(c.node.data_dir, PathBuf::from("./data"));
        assert_eq!(c.node.id, "");
        assert_eq!(c.cluster.join_addr, "");
        assert_eq!(c.logging.level, LogLevel::Info);
        assert!(!c.logging.json);
        assert_eq!(c.http.max_key_bytes, 4096);
        assert_eq!(c.http.max_value_bytes, 1_048_576);
        assert_eq!(c.http.request_timeout_ms, 10_000);
        assert_eq!(c.http.max_connections, 1024);
        assert_eq!(c.raft.heartbeat_interval_ms, 250);
        assert_eq!(c.raft.election_timeout_min_ms, 1000);
        assert_eq!(c.raft.election_timeout_max_ms, 2000);
        assert_eq!(c.raft.snapshot_threshold, 10_000);
        assert_eq!(c.raft.read_policy, ReadPolicy::ReadIndex);
        assert_eq!(c.raft.rpc_timeout_ms, 1000);
        assert_eq!(c.cluster.join_retry_max_ms, 5000);
        assert_eq!(c.shutdown.drain_timeout_ms, 10_000);
        assert_eq!(c.http.port, None);
        assert_eq!(c.raft.port, None);
        c.validate().unwrap();
    }

    #[test]
    fn node_id_and_advertise_defaults() {
        let c = Config::default();
        assert_eq!(c.node_id(), "localhost:12000");
        assert_eq!(c.raft_advertise_addr(), "localhost:12000");
        assert_eq!(c.http_advertise_addr(), "localhost:11000");

        let c = Config::load(
            None,
            env(&[
                ("DCACHE_RAFT_BIND_ADDR", "0.0.0.0:12000"),
                ("DCACHE_RAFT_ADVERTISE_ADDR", "node1:12000"),
                ("DCACHE_HTTP_BIND_ADDR", "0.0.0.0:11000"),
                ("DCACHE_HTTP_ADVERTISE_ADDR", "node1:11000"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node_id(), "node1:12000");
        assert_eq!(c.raft_advertise_addr(), "node1:12000");
        assert_eq!(c.http_advertise_addr(), "node1:11000");

        let c = Config::from_yaml_str("node:\n  id: n7\n", "t").unwrap();
        assert_eq!(c.node_id(), "n7");
    }

    #[test]
    fn empty_and_comment_only_files_are_defaults() {
        for yaml in ["", "\n", "# nothing here\n# at all\n", "---\n"] {
            assert_eq!(
                Config::from_yaml_str(yaml, "t").unwrap(),
                Config::default(),
                "{yaml:?}"
            );
            assert_eq!(load_yaml_env(yaml, &[]).unwrap(), Config::default());
        }
        // A section with only comments under it (YAML null) is also defaults.
        let c = Config::from_yaml_str("cluster:\n  # join_addr: x:1\nnode:\n  id:\n", "t").unwrap();
        assert_eq!(c, Config::default());
    }

    // --- precedence ---------------------------------------------------------

    #[test]
    fn precedence_for_every_seed_key() {
        type Get = fn(&Config) -> String;
        // (yaml section, yaml key, file value, env var, env value, getter, default)
        let cases: &[(&str, &str, &str, &str, &str, Get, &str)] = &[
            (
                "node",
                "id",
                "from-file",
                "DCACHE_NODE_ID",
                "from-env",
                |c| c.node.id.clone(),
                "",
            ),
            (
                "node",
                "data_dir",
                "/file/dir",
                "DCACHE_NODE_DATA_DIR",
                "/env/dir",
                |c| c.node.data_dir.display().to_string(),
                "./data",
            ),
            (
                "http",
                "bind_addr",
                "filehost:1",
                "DCACHE_HTTP_BIND_ADDR",
                "envhost:2",
                |c| c.http.bind_addr.clone(),
                "localhost:11000",
            ),
            (
                "raft",
                "bind_addr",
                "filehost:3",
                "DCACHE_RAFT_BIND_ADDR",
                "envhost:4",
                |c| c.raft.bind_addr.clone(),
                "localhost:12000",
            ),
            (
                "cluster",
                "join_addr",
                "filehost:5",
                "DCACHE_CLUSTER_JOIN_ADDR",
                "envhost:6",
                |c| c.cluster.join_addr.clone(),
                "",
            ),
            (
                "logging",
                "level",
                "debug",
                "DCACHE_LOGGING_LEVEL",
                "error",
                |c| c.logging.level.to_string(),
                "info",
            ),
            (
                "logging",
                "json",
                "true",
                "DCACHE_LOGGING_JSON",
                "false",
                |c| c.logging.json.to_string(),
                "false",
            ),
        ];
        for (section, key, file_val, var, env_val, get, default) in cases {
            let yaml = format!("{section}:\n  {key}: \"{file_val}\"\n");
            let yaml = yaml.replace("\"true\"", "true");
            let defaults = Config::load(None, Vec::new()).unwrap();
            assert_eq!(get(&defaults), *default, "{section}.{key} default");
            let file = load_yaml_env(&yaml, &[]).unwrap();
            assert_eq!(get(&file), *file_val, "{section}.{key}: file over default");
            let both = load_yaml_env(&yaml, &[(var, env_val)]).unwrap();
            assert_eq!(get(&both), *env_val, "{section}.{key}: env over file");
            let env_only = Config::load(None, env(&[(var, env_val)])).unwrap();
            assert_eq!(
                get(&env_only),
                *env_val,
                "{section}.{key}: env over default"
            );
        }
    }

    #[test]
    fn file_overrides_defaults_for_extended_keys() {
        let yaml = "
http:
  advertise_addr: node1:11000
  max_key_bytes: 10
  max_value_bytes: 20
  request_timeout_ms: 30
  max_connections: 40
raft:
  advertise_addr: node1:12000
  heartbeat_interval_ms: 50
  election_timeout_min_ms: 60
  election_timeout_max_ms: 70
  snapshot_threshold: 80
  read_policy: lease
  rpc_timeout_ms: 90
cluster:
  join_retry_max_ms: 100
shutdown:
  drain_timeout_ms: 110
";
        let c = Config::from_yaml_str(yaml, "t").unwrap();
        assert_eq!(c.http.advertise_addr, "node1:11000");
        assert_eq!(c.http.max_key_bytes, 10);
        assert_eq!(c.http.max_value_bytes, 20);
        assert_eq!(c.http.request_timeout_ms, 30);
        assert_eq!(c.http.max_connections, 40);
        assert_eq!(c.raft.advertise_addr, "node1:12000");
        assert_eq!(c.raft.heartbeat_interval_ms, 50);
        assert_eq!(c.raft.election_timeout_min_ms, 60);
        assert_eq!(c.raft.election_timeout_max_ms, 70);
        assert_eq!(c.raft.snapshot_threshold, 80);
        assert_eq!(c.raft.read_policy, ReadPolicy::Lease);
        assert_eq!(c.raft.rpc_timeout_ms, 90);
        assert_eq!(c.cluster.join_retry_max_ms, 100);
        assert_eq!(c.shutdown.drain_timeout_ms, 110);
        // Unset keys keep their defaults.
        assert_eq!(c.http.bind_addr, "localhost:11000");
    }

    #[test]
    fn env_overrides_file_for_extended_keys() {
        let yaml = "http:\n  max_key_bytes: 10\nraft:\n  read_policy: lease\n";
        let c = load_yaml_env(
            yaml,
            &[
                ("DCACHE_HTTP_MAX_KEY_BYTES", "11"),
                ("DCACHE_HTTP_MAX_VALUE_BYTES", "21"),
                ("DCACHE_HTTP_REQUEST_TIMEOUT_MS", "31"),
                ("DCACHE_HTTP_MAX_CONNECTIONS", "41"),
                ("DCACHE_RAFT_HEARTBEAT_INTERVAL_MS", "51"),
                ("DCACHE_RAFT_ELECTION_TIMEOUT_MIN_MS", "61"),
                ("DCACHE_RAFT_ELECTION_TIMEOUT_MAX_MS", "71"),
                ("DCACHE_RAFT_SNAPSHOT_THRESHOLD", "81"),
                ("DCACHE_RAFT_READ_POLICY", "READ_INDEX"),
                ("DCACHE_RAFT_RPC_TIMEOUT_MS", "91"),
                ("DCACHE_CLUSTER_JOIN_RETRY_MAX_MS", "101"),
                ("DCACHE_SHUTDOWN_DRAIN_TIMEOUT_MS", "111"),
                // Non-DCACHE variables are ignored.
                ("PATH", "/usr/bin"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        assert_eq!(c.http.max_key_bytes, 11);
        assert_eq!(c.http.max_value_bytes, 21);
        assert_eq!(c.http.request_timeout_ms, 31);
        assert_eq!(c.http.max_connections, 41);
        assert_eq!(c.raft.heartbeat_interval_ms, 51);
        assert_eq!(c.raft.election_timeout_min_ms, 61);
        assert_eq!(c.raft.election_timeout_max_ms, 71);
        assert_eq!(c.raft.snapshot_threshold, 81);
        assert_eq!(c.raft.read_policy, ReadPolicy::ReadIndex);
        assert_eq!(c.raft.rpc_timeout_ms, 91);
        assert_eq!(c.cluster.join_retry_max_ms, 101);
        assert_eq!(c.shutdown.drain_timeout_ms, 111);
    }

    #[test]
    fn every_key_has_a_working_env_var() {
        // Guards against a key added to KEYS without an env setter.
        for key in KEYS {
            let var = env_var_for(key);
            assert!(var.starts_with("DCACHE_") && !var.contains('.'), "{var}");
            let mut c = Config::default();
            let sample = match *key {
                "raft.read_policy" => "lease",
                "logging.level" => "debug",
                "logging.json" => "true",
                k if k.ends_with("addr") => "h:1",
                "node.id" | "node.data_dir" => "x",
                _ => "7",
            };
            c.set_from_env(key, sample).unwrap();
            assert_ne!(c, Config::default(), "{var} changed nothing");
        }
    }

    #[test]
    fn empty_env_value_clears_string_keys() {
        let yaml = "cluster:\n  join_addr: localhost:11001\nnode:\n  id: node2\n";
        let c = load_yaml_env(
            yaml,
            &[("DCACHE_CLUSTER_JOIN_ADDR", ""), ("DCACHE_NODE_ID", "")],
        )
        .unwrap();
        assert_eq!(c.cluster.join_addr, "");
        assert_eq!(c.node.id, "");
        assert_eq!(c.node_id(), "localhost:12000");
    }

    #[test]
    fn env_bool_and_level_spellings() {
        for (v, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("Yes", true),
            ("false", false),
            ("False", false),
            ("0", false),
            ("no", false),
            ("NO", false),
        ] {
            let c = Config::load(None, env(&[("DCACHE_LOGGING_JSON", v)])).unwrap();
            assert_eq!(c.logging.json, want, "{v}");
        }
        for (v, want) in [
            ("TRACE", LogLevel::Trace),
            ("Debug", LogLevel::Debug),
            ("info", LogLevel::Info),
            ("warn", LogLevel::Warn),
            ("WARNING", LogLevel::Warn),
            ("error", LogLevel::Error),
        ] {
            let c = Config::load(None, env(&[("DCACHE_LOGGING_LEVEL", v)])).unwrap();
            assert_eq!(c.logging.level, want, "{v}");
        }
        // The same spellings work in YAML.
        let c = Config::from_yaml_str("logging:\n  level: Warning\n  json: yes\n", "t").unwrap();
        assert_eq!(c.logging.level, LogLevel::Warn);
        assert!(c.logging.json);
    }

    #[test]
    fn log_level_display_and_as_str() {
        assert_eq!(LogLevel::Warn.to_string(), "warn");
        assert_eq!(LogLevel::Trace.as_str(), "trace");
        assert_eq!(LogLevel::Error.to_string(), LogLevel::Error.as_str());
        assert_eq!(ReadPolicy::ReadIndex.to_string(), "read_index");
    }

    #[test]
    fn serialize_round_trips() {
        let mut c = Config::default();
        c.raft.read_policy = ReadPolicy::Lease;
        c.logging.level = LogLevel::Debug;
        c.http.port = Some(11005);
        c.http.bind_addr = "localhost:11009".into();
        let yaml = serde_yaml_ng::to_string(&c).unwrap();
        assert!(yaml.contains("read_policy: lease"), "{yaml}");
        assert!(yaml.contains("level: debug"), "{yaml}");
        assert_eq!(Config::from_yaml_str(&yaml, "t").unwrap(), c);
    }

    // --- legacy keys --------------------------------------------------------

    #[test]
    fn legacy_host_and_ports() {
        let yaml = "node:\n  bind_addr: 10.0.0.5\nhttp:\n  port: 8080\nraft:\n  port: 8089\n";
        let c = Config::from_yaml_str(yaml, "t").unwrap();
        assert_eq!(c.http.bind_addr, "10.0.0.5:8080");
        assert_eq!(c.raft.bind_addr, "10.0.0.5:8089");
        assert_eq!(c.node_id(), "10.0.0.5:8089");

        // Ports alone bind on localhost.
        let c = Config::from_yaml_str("http:\n  port: 8080\nraft:\n  port: 8089\n", "t").unwrap();
        assert_eq!(c.http.bind_addr, "localhost:8080");
        assert_eq!(c.raft.bind_addr, "localhost:8089");

        // Via env.
        let c = Config::load(
            None,
            env(&[
                ("DCACHE_NODE_BIND_ADDR", "0.0.0.0"),
                ("DCACHE_HTTP_PORT", "9000"),
                ("DCACHE_RAFT_PORT", "9001"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.bind_addr, "0.0.0.0:9000");
        assert_eq!(c.raft.bind_addr, "0.0.0.0:9001");
        assert_eq!(c.http.port, Some(9000));

        // A host alone keeps the Go default ports; bare IPv6 gets brackets.
        let c = Config::load(None, env(&[("DCACHE_NODE_BIND_ADDR", "::1")])).unwrap();
        assert_eq!(c.http.bind_addr, "[::1]:11000");
        assert_eq!(c.raft.bind_addr, "[::1]:12000");
    }

    #[test]
    fn explicit_bind_addr_wins_over_legacy() {
        let yaml = "node:\n  bind_addr: 10.0.0.5\nhttp:\n  port: 8080\n  bind_addr: localhost:11001\nraft:\n  port: 8089\n";
        let c = Config::from_yaml_str(yaml, "t").unwrap();
        assert_eq!(c.http.bind_addr, "localhost:11001");
        assert_eq!(c.raft.bind_addr, "10.0.0.5:8089");

        // Explicit in env beats legacy in file, and vice versa.
        let c = load_yaml_env(
            "http:\n  port: 8080\n",
            &[("DCACHE_HTTP_BIND_ADDR", "localhost:11002")],
        )
        .unwrap();
        assert_eq!(c.http.bind_addr, "localhost:11002");
        let c = load_yaml_env(
            "http:\n  bind_addr: localhost:11003\n",
            &[("DCACHE_HTTP_PORT", "8080")],
        )
        .unwrap();
        assert_eq!(c.http.bind_addr, "localhost:11003");

        // Explicitly set to the default value still counts as explicit.
        let c = Config::from_yaml_str("http:\n  port: 8080\n  bind_addr: localhost:11000\n", "t")
            .unwrap();
        assert_eq!(c.http.bind_addr, "localhost:11000");
    }

    #[test]
    fn legacy_derived_error_names_its_source() {
        let msg = err_env(&[("DCACHE_HTTP_PORT", "12000")]);
        assert_contains(&msg, &["raft.bind_addr", "localhost:12000", "must differ"]);
        let msg = err_env(&[("DCACHE_NODE_BIND_ADDR", "bad host")]);
        assert_contains(
            &msg,
            &[
                "http.bind_addr",
                "\"bad host:11000\"",
                "derived from node.bind_addr",
            ],
        );
    }

    // --- file errors --------------------------------------------------------

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.yaml");
        let err = Config::load(Some(&path), Vec::new()).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
        assert_contains(&err.to_string(), &["config file", "x.yaml", "not found"]);

        // A directory is another I/O error, also naming the path.
        let err = Config::load(Some(dir.path()), Vec::new()).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
        assert_contains(&err.to_string(), &[&dir.path().display().to_string()]);
    }

    #[test]
    fn yaml_syntax_error_names_file_line_and_column() {
        let f = yaml_file("node:\n  id: [unterminated\n");
        let err = Config::load(Some(f.path()), Vec::new()).unwrap_err();
        let msg = err.to_string();
        assert_contains(&msg, &[&f.path().display().to_string(), "line", "column"]);
        match err {
            ConfigError::Yaml { location, .. } => assert!(location.is_some()),
            other => panic!("expected Yaml error, got {other:?}"),
        }
        let msg = err_yaml("http:\n  bind_addr: \"a\n  x: : :\n\t- ]");
        assert_contains(&msg, &["test.yaml", "line"]);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let msg = err_yaml("node:\n  idd: node1\n");
        assert_contains(&msg, &["test.yaml", "idd", "node", "line 2"]);
        let msg = err_yaml("foo: 1\n");
        assert_contains(&msg, &["test.yaml", "foo", "line 1"]);
        let msg = err_yaml("raft:\n  heartbeat_ms: 10\n");
        assert_contains(&msg, &["heartbeat_ms", "raft"]);
    }

    #[test]
    fn wrong_types_in_file_name_key_and_value() {
        let msg = err_yaml("logging:\n  json: maybe\n");
        assert_contains(&msg, &["test.yaml", "logging.json", "maybe", "line 2"]);
        let msg = err_yaml("logging:\n  level: loud\n");
        assert_contains(
            &msg,
            &[
                "test.yaml",
                "logging.level",
                "loud",
                "trace, debug, info, warn, error",
            ],
        );
        let msg = err_yaml("raft:\n  heartbeat_interval_ms: fast\n");
        assert_contains(&msg, &["raft.heartbeat_interval_ms", "fast"]);
        let msg = err_yaml("raft:\n  read_policy: leese\n");
        assert_contains(&msg, &["raft.read_policy", "leese", "read_index"]);
        let msg = err_yaml("http:\n  port: 70000\n");
        assert_contains(&msg, &["http.port", "70000"]);
    }

    #[test]
    fn invalid_value_in_file_names_the_file() {
        let f = yaml_file("http:\n  bind_addr: localhost\n");
        let msg = Config::load(Some(f.path()), Vec::new())
            .unwrap_err()
            .to_string();
        assert_contains(
            &msg,
            &[
                "invalid http.bind_addr \"localhost\"",
                "expected host:port",
                &f.path().display().to_string(),
            ],
        );
    }

    // --- env errors ---------------------------------------------------------

    #[test]
    fn non_numeric_env_value() {
        let msg = err_env(&[("DCACHE_RAFT_HEARTBEAT_INTERVAL_MS", "abc")]);
        assert_eq!(
            msg,
            "invalid value \"abc\" for raft.heartbeat_interval_ms \
             (from DCACHE_RAFT_HEARTBEAT_INTERVAL_MS): expected an unsigned integer"
        );
        for v in ["-1", "+5", "1.5", "", "99999999999999999999999"] {
            let msg = err_env(&[("DCACHE_HTTP_MAX_KEY_BYTES", v)]);
            assert_contains(&msg, &["DCACHE_HTTP_MAX_KEY_BYTES", &format!("{v:?}")]);
        }
        let msg = err_env(&[("DCACHE_RAFT_PORT", "70000")]);
        assert_contains(&msg, &["DCACHE_RAFT_PORT", "\"70000\"", "raft.port"]);
    }

    #[test]
    fn bad_env_bool_level_and_policy() {
        let msg = err_env(&[("DCACHE_LOGGING_JSON", "maybe")]);
        assert_contains(
            &msg,
            &[
                "logging.json",
                "\"maybe\"",
                "DCACHE_LOGGING_JSON",
                "boolean",
            ],
        );
        let msg = err_env(&[("DCACHE_LOGGING_LEVEL", "loud")]);
        assert_contains(
            &msg,
            &[
                "logging.level",
                "\"loud\"",
                "DCACHE_LOGGING_LEVEL",
                "expected one of trace, debug, info, warn, error",
            ],
        );
        let msg = err_env(&[("DCACHE_RAFT_READ_POLICY", "fast")]);
        assert_contains(
            &msg,
            &["raft.read_policy", "\"fast\"", "DCACHE_RAFT_READ_POLICY"],
        );
    }

    #[test]
    fn unknown_env_var_is_an_error() {
        let msg = err_env(&[("DCACHE_LOGING_LEVEL", "debug")]);
        assert_contains(
            &msg,
            &[
                "unknown environment variable DCACHE_LOGING_LEVEL",
                "DCACHE_LOGGING_LEVEL",
            ],
        );
        let msg = err_env(&[("DCACHE_WHATEVER_ELSE_ENTIRELY", "1")]);
        assert_contains(
            &msg,
            &["DCACHE_WHATEVER_ELSE_ENTIRELY", "not a dcache setting"],
        );
        // Only the prefix matters: similar names without it are ignored.
        Config::load(None, env(&[("DCACHEX_FOO", "1"), ("dcache_node_id", "x")])).unwrap();
    }

    #[test]
    fn invalid_env_address_names_the_variable() {
        let msg = err_env(&[("DCACHE_HTTP_BIND_ADDR", "localhost")]);
        assert_eq!(
            msg,
            "invalid http.bind_addr \"localhost\" (from DCACHE_HTTP_BIND_ADDR): expected host:port"
        );
    }

    // --- addresses ----------------------------------------------------------

    #[test]
    fn address_syntax() {
        let ok = [
            "localhost:11000",
            "127.0.0.1:0",
            "0.0.0.0:80",
            "[::1]:12000",
            "[::]:1",
            "node-1.example.com:65535",
            "my_host:1",
            "host.:2",
        ];
        for a in ok {
            let c = Config::load(None, env(&[("DCACHE_HTTP_BIND_ADDR", a)])).unwrap();
            assert_eq!(c.http.bind_addr, a);
        }
        let bad = [
            "localhost",
            ":11000",
            "localhost:",
            "localhost:65536",
            "localhost:-1",
            "localhost:+80",
            "::1:12000",
            "[::1]12000",
            "[zz]:1",
            "300.1.2.3:1",
            "bad host:1",
            "a..b:1",
            "localhost:port",
            "",
        ];
        for a in bad {
            for var in [
                "DCACHE_HTTP_BIND_ADDR",
                "DCACHE_RAFT_BIND_ADDR",
                "DCACHE_HTTP_ADVERTISE_ADDR",
                "DCACHE_RAFT_ADVERTISE_ADDR",
                "DCACHE_CLUSTER_JOIN_ADDR",
            ] {
                if a.is_empty() && !var.ends_with("BIND_ADDR") {
                    continue; // empty advertise/join addr means "unset"
                }
                let err = Config::load(None, env(&[(var, a)])).unwrap_err();
                let key = KEYS.iter().find(|k| env_var_for(k) == var).unwrap();
                assert_contains(&err.to_string(), &[key, &format!("{a:?}"), var]);
            }
        }
    }

    #[test]
    fn port_zero_only_for_bind_addrs() {
        let c = Config::load(
            None,
            env(&[
                ("DCACHE_HTTP_BIND_ADDR", "127.0.0.1:0"),
                ("DCACHE_RAFT_BIND_ADDR", "127.0.0.1:0"),
            ]),
        )
        .unwrap();
        assert_eq!(c.raft.bind_addr, "127.0.0.1:0");
        for var in [
            "DCACHE_HTTP_ADVERTISE_ADDR",
            "DCACHE_RAFT_ADVERTISE_ADDR",
            "DCACHE_CLUSTER_JOIN_ADDR",
        ] {
            let msg = err_env(&[(var, "node1:0")]);
            assert_contains(&msg, &["\"node1:0\"", "port 0", var]);
        }
        // Advertising a wildcard address is useless to peers.
        let msg = err_env(&[("DCACHE_RAFT_ADVERTISE_ADDR", "0.0.0.0:12000")]);
        assert_contains(
            &msg,
            &["raft.advertise_addr", "\"0.0.0.0:12000\"", "wildcard"],
        );
    }

    // --- semantic checks ----------------------------------------------------

    #[test]
    fn semantic_errors() {
        let cases: &[(&str, &[&str])] = &[
            (
                "raft:\n  heartbeat_interval_ms: 1000\n",
                &[
                    "raft.election_timeout_min_ms",
                    "\"1000\"",
                    "raft.heartbeat_interval_ms (1000)",
                ],
            ),
            (
                "raft:\n  election_timeout_min_ms: 250\n",
                &["raft.election_timeout_min_ms", "\"250\"", "greater than"],
            ),
            (
                "raft:\n  election_timeout_max_ms: 999\n",
                &[
                    "raft.election_timeout_max_ms",
                    "\"999\"",
                    "raft.election_timeout_min_ms (1000)",
                ],
            ),
            (
                "raft:\n  snapshot_threshold: 0\n",
                &["raft.snapshot_threshold", "\"0\"", ">= 1"],
            ),
            (
                "http:\n  max_key_bytes: 0\n",
                &["http.max_key_bytes", "\"0\""],
            ),
            (
                "http:\n  max_value_bytes: 0\n",
                &["http.max_value_bytes", "\"0\""],
            ),
            ("node:\n  data_dir: \"\"\n", &["node.data_dir", "empty"]),
            (
                "http:\n  bind_addr: localhost:12000\n",
                &[
                    "raft.bind_addr",
                    "\"localhost:12000\"",
                    "must differ from http.bind_addr",
                ],
            ),
        ];
        for (yaml, parts) in cases {
            let msg = err_yaml(yaml);
            assert_contains(&msg, parts);
            assert_contains(&msg, &["test.yaml"]);
        }
        // Same checks fire for env-sourced values, naming the variable.
        let msg = err_env(&[("DCACHE_RAFT_SNAPSHOT_THRESHOLD", "0")]);
        assert_eq!(
            msg,
            "invalid raft.snapshot_threshold \"0\" (from DCACHE_RAFT_SNAPSHOT_THRESHOLD): must be >= 1"
        );
        let msg = err_env(&[("DCACHE_NODE_DATA_DIR", "")]);
        assert_contains(&msg, &["node.data_dir", "DCACHE_NODE_DATA_DIR"]);
        // Boundaries that are allowed.
        Config::from_yaml_str(
            "raft:\n  heartbeat_interval_ms: 999\n  election_timeout_min_ms: 1000\n  election_timeout_max_ms: 1000\n  snapshot_threshold: 1\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn validate_on_hand_built_config() {
        let mut c = Config::default();
        c.raft.bind_addr = c.http.bind_addr.clone();
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.cluster.join_addr = "nohost".into();
        let msg = c.validate().unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid cluster.join_addr \"nohost\": expected host:port"
        );
    }

    // --- shipped files ------------------------------------------------------

    #[test]
    fn shipped_configs_parse() {
        let n1 =
            Config::from_yaml_str(include_str!("../configs/node1.yaml"), "node1.yaml").unwrap();
        assert_eq!(n1.node.id, "node1");
        assert_eq!(n1.node.data_dir, PathBuf::from("./data/node1"));
        assert_eq!(n1.http.bind_addr, "localhost:11001");
        assert_eq!(n1.raft.bind_addr, "localhost:12001");
        assert_eq!(n1.cluster.join_addr, "");
        assert_eq!(
            n1.logging,
            LoggingConfig {
                level: LogLevel::Info,
                json: false
            }
        );

        for (n, yaml) in [
            (2, include_str!("../configs/node2.yaml")),
            (3, include_str!("../configs/node3.yaml")),
        ] {
            let c = Config::from_yaml_str(yaml, "node.yaml").unwrap();
            assert_eq!(c.node.id, format!("node{n}"));
            assert_eq!(c.node.data_dir, PathBuf::from(format!("./data/node{n}")));
            assert_eq!(c.http.bind_addr, format!("localhost:1100{n}"));
            assert_eq!(c.raft.bind_addr, format!("localhost:1200{n}"));
            assert_eq!(c.cluster.join_addr, "localhost:11001");
            // Everything else stays at the defaults.
            assert_eq!(
                c.raft,
                RaftConfig {
                    bind_addr: c.raft.bind_addr.clone(),
                    ..RaftConfig::default()
                }
            );
        }

        // The example documents every option at its default value.
        let ex = Config::from_yaml_str(include_str!("../configs/config.example.yaml"), "example")
            .unwrap();
        assert_eq!(ex, Config::default());
        let text = include_str!("../configs/config.example.yaml");
        for key in KEYS {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(text.contains(&format!("{leaf}:")), "example lacks {key}");
            assert!(
                text.contains(&env_var_for(key)),
                "example lacks {}",
                env_var_for(key)
            );
        }
    }
}
