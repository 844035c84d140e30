//! [`Config::validate`]: the checks a loaded configuration has passed, and
//! the [`bounds`] of every numeric setting.
//!
//! Owns cross-key rules (timeout ordering, distinct listeners) and ranges.
//! Invariant: a config that passes has every size, count and duration within
//! [`bounds`], chosen so that the arithmetic the rest of the node does on
//! them (`6 * (max_key_bytes + max_value_bytes) + 4096`, `2 *
//! election_timeout_max_ms`, `Duration::from_millis`) cannot overflow, even
//! with a 32-bit `usize`. It does not know where a value came from: the
//! loader attaches origins to the errors returned here.

use super::addr::{AddrUse, check_addr};
use super::error::invalid;
use super::{Config, ConfigError};

/// Upper bounds of the numeric settings, checked by [`Config::validate`] and
/// documented in `configs/config.example.yaml`.
pub mod bounds {
    /// One day, in milliseconds: the longest any `*_ms` timeout, interval or
    /// backoff may be.
    pub const MAX_MS: u64 = 86_400_000;
    /// `http.max_key_bytes`: 64 KiB.
    pub const MAX_KEY_BYTES: usize = 64 * 1024;
    /// `http.max_value_bytes`: 512 MiB.
    pub const MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;
    /// `http.max_connections`.
    pub const MAX_CONNECTIONS: usize = 1_000_000;
    /// `raft.snapshot_threshold`, in log entries.
    pub const MAX_SNAPSHOT_THRESHOLD: u64 = 1_000_000_000;
    /// `raft.log_flush_wait_us`: one second.
    pub const MAX_LOG_FLUSH_WAIT_US: u64 = 1_000_000;
    /// `cache.expiry_batch`: keys one expiry entry may remove.
    pub const MAX_EXPIRY_BATCH: u64 = 1_000_000;
    /// `watch.history_events`.
    pub const MAX_HISTORY_EVENTS: u64 = 100_000_000;
    /// `watch.history_bytes`: 64 GiB.
    pub const MAX_HISTORY_BYTES: u64 = 64 << 30;
    /// `watch.max_watchers`.
    pub const MAX_WATCHERS: u64 = 1_000_000;
    /// `http.rate_limit_per_ip` and `http.rate_limit_burst`.
    pub const MAX_RATE: u64 = 1_000_000;
    /// `node.worker_threads`.
    pub const MAX_WORKER_THREADS: u64 = 1024;
}

/// A validation failure, plus the other key a cross-key check compared
/// against: when the failing key was left at its default, the loader points
/// the operator at where that other key was set.
pub(super) struct Problem {
    pub error: ConfigError,
    pub related: Option<&'static str>,
}

impl From<ConfigError> for Problem {
    fn from(error: ConfigError) -> Self {
        Problem {
            error,
            related: None,
        }
    }
}

fn related(error: ConfigError, other: &'static str) -> Problem {
    Problem {
        error,
        related: Some(other),
    }
}

impl Config {
    /// Check every invariant a loaded config promises. Returns the first
    /// problem found. Called by `load` and `from_yaml_str`; call it again
    /// only if you mutate a config by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|p| p.error)
    }

    pub(super) fn check(&self) -> Result<(), Problem> {
        check_addr("http.bind_addr", &self.http.bind_addr, AddrUse::Bind)?;
        check_addr("raft.bind_addr", &self.raft.bind_addr, AddrUse::Bind)?;
        for (key, addr, usage) in [
            (
                "http.advertise_addr",
                &self.http.advertise_addr,
                AddrUse::Advertise,
            ),
            (
                "raft.advertise_addr",
                &self.raft.advertise_addr,
                AddrUse::Advertise,
            ),
            ("cluster.join_addr", &self.cluster.join_addr, AddrUse::Dial),
        ] {
            // Empty means unset (advertise the bind address / bootstrap).
            if !addr.is_empty() {
                check_addr(key, addr, usage)?;
            }
        }
        // Port 0 on both sides is two distinct ephemeral ports, not a clash.
        if self
            .http
            .bind_addr
            .eq_ignore_ascii_case(&self.raft.bind_addr)
            && !self.raft.bind_addr.ends_with(":0")
        {
            let e = invalid(
                "raft.bind_addr",
                &self.raft.bind_addr,
                "must differ from http.bind_addr",
            );
            return Err(related(e, "http.bind_addr"));
        }

        if !self.redis.bind_addr.is_empty() {
            check_addr("redis.bind_addr", &self.redis.bind_addr, AddrUse::Bind)?;
            for (other, addr) in [
                ("http.bind_addr", &self.http.bind_addr),
                ("raft.bind_addr", &self.raft.bind_addr),
            ] {
                if self.redis.bind_addr.eq_ignore_ascii_case(addr)
                    && !self.redis.bind_addr.ends_with(":0")
                {
                    let e = invalid(
                        "redis.bind_addr",
                        &self.redis.bind_addr,
                        format!("must differ from {other}"),
                    );
                    return Err(related(e, other));
                }
            }
        }

        let c = &self.cluster;
        if !c.secret.is_empty() {
            if !c.secret_file.as_os_str().is_empty() {
                let e = invalid(
                    "cluster.secret_file",
                    c.secret_file.display(),
                    "set only one of cluster.secret and cluster.secret_file",
                );
                return Err(related(e, "cluster.secret"));
            }
            super::secret::check_secret("cluster.secret", c.secret.expose())?;
        }

        // TLS: all three files or none.
        let t = &self.tls;
        let any = [&t.cert_file, &t.key_file, &t.ca_file]
            .iter()
            .any(|p| !p.as_os_str().is_empty());
        if any {
            for (key, path) in [
                ("tls.cert_file", &t.cert_file),
                ("tls.key_file", &t.key_file),
                ("tls.ca_file", &t.ca_file),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(invalid(
                        key,
                        "",
                        "must be set when any of tls.cert_file, tls.key_file, tls.ca_file is",
                    )
                    .into());
                }
            }
        }

        if self.auth.enabled && self.auth.tokens_file.as_os_str().is_empty() {
            let e = invalid(
                "auth.tokens_file",
                "",
                "must be set when auth.enabled is true (make tokens with `dcache token new`)",
            );
            return Err(related(e, "auth.enabled"));
        }

        if self.node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "", "must not be empty").into());
        }

        self.check_ranges()?;

        let r = &self.raft;
        if r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            let e = invalid(
                "raft.election_timeout_min_ms",
                r.election_timeout_min_ms,
                format!(
                    "must be greater than raft.heartbeat_interval_ms ({})",
                    r.heartbeat_interval_ms
                ),
            );
            return Err(related(e, "raft.heartbeat_interval_ms"));
        }
        if r.election_timeout_max_ms < r.election_timeout_min_ms {
            let e = invalid(
                "raft.election_timeout_max_ms",
                r.election_timeout_max_ms,
                format!(
                    "must be >= raft.election_timeout_min_ms ({})",
                    r.election_timeout_min_ms
                ),
            );
            return Err(related(e, "raft.election_timeout_min_ms"));
        }
        Ok(())
    }

    /// Every numeric setting against its bounds. `usize` values are widened
    /// to `u64`, which is lossless on every target Rust supports.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        use bounds::*;
        let (h, r) = (&self.http, &self.raft);
        #[rustfmt::skip]
        let c = &self.cache;
        let ranges: [(&str, u64, u64, u64, &str); 23] = [
            // (key, value, min, max, max in words)
            (
                "node.worker_threads",
                self.node.worker_threads as u64,
                0,
                MAX_WORKER_THREADS,
                "",
            ),
            (
                "http.max_key_bytes",
                h.max_key_bytes as u64,
                1,
                MAX_KEY_BYTES as u64,
                "64 KiB",
            ),
            (
                "http.max_value_bytes",
                h.max_value_bytes as u64,
                1,
                MAX_VALUE_BYTES as u64,
                "512 MiB",
            ),
            (
                "http.request_timeout_ms",
                h.request_timeout_ms,
                1,
                MAX_MS,
                "one day",
            ),
            (
                "http.max_connections",
                h.max_connections as u64,
                1,
                MAX_CONNECTIONS as u64,
                "",
            ),
            (
                "http.max_connections_per_ip",
                h.max_connections_per_ip as u64,
                1,
                MAX_CONNECTIONS as u64,
                "",
            ),
            (
                "tls.reload_check_ms",
                self.tls.reload_check_ms,
                0,
                MAX_MS,
                "one day",
            ),
            (
                "http.rate_limit_per_ip",
                u64::from(h.rate_limit_per_ip),
                0,
                MAX_RATE,
                "",
            ),
            (
                "http.rate_limit_burst",
                u64::from(h.rate_limit_burst),
                1,
                MAX_RATE,
                "",
            ),
            (
                "raft.heartbeat_interval_ms",
                r.heartbeat_interval_ms,
                1,
                MAX_MS,
                "one day",
            ),
            (
                "raft.election_timeout_min_ms",
                r.election_timeout_min_ms,
                1,
                MAX_MS,
                "one day",
            ),
            (
                "raft.election_timeout_max_ms",
                r.election_timeout_max_ms,
                1,
                MAX_MS,
                "one day",
            ),
            (
                "raft.snapshot_threshold",
                r.snapshot_threshold,
                1,
                MAX_SNAPSHOT_THRESHOLD,
                "",
            ),
            (
                "raft.rpc_timeout_ms",
                r.rpc_timeout_ms,
                1,
                MAX_MS,
                "one day",
            ),
            (
                "raft.log_flush_wait_us",
                r.log_flush_wait_us,
                0,
                MAX_LOG_FLUSH_WAIT_US,
                "one second",
            ),
            (
                "cluster.join_retry_max_ms",
                self.cluster.join_retry_max_ms,
                1,
                MAX_MS,
                "one day",
            ),
            (
                "shutdown.drain_timeout_ms",
                self.shutdown.drain_timeout_ms,
                0,
                MAX_MS,
                "one day",
            ),
            (
                "cache.expiry_tick_ms",
                c.expiry_tick_ms,
                1,
                MAX_MS,
                "one day",
            ),
            (
                "cache.expiry_batch",
                u64::from(c.expiry_batch),
                1,
                MAX_EXPIRY_BATCH,
                "",
            ),
            (
                "watch.history_events",
                self.watch.history_events,
                1,
                MAX_HISTORY_EVENTS,
                "",
            ),
            (
                "watch.history_bytes",
                self.watch.history_bytes.0,
                1024,
                MAX_HISTORY_BYTES,
                "64 GiB",
            ),
            (
                "watch.max_watchers",
                self.watch.max_watchers,
                0,
                MAX_WATCHERS,
                "",
            ),
            (
                "watch.slow_consumer_ms",
                self.watch.slow_consumer_ms,
                1,
                MAX_MS,
                "one day",
            ),
        ];
        for (key, value, min, max, words) in ranges {
            if value < min {
                return Err(invalid(key, value, format!("must be >= {min}")));
            }
            if value > max {
                let words = if words.is_empty() {
                    String::new()
                } else {
                    format!(" ({words})")
                };
                return Err(invalid(key, value, format!("must be <= {max}{words}")));
            }
        }
        Ok(())
    }
}

// The request-body limit in `api::Limits::max_body_bytes` is
// `6 * (max_key_bytes + max_value_bytes) + 4096`; at the bounds it must fit
// in a 32-bit usize, with the 32 MiB drain allowance the API adds on top.
const _: () = assert!(
    (6 * (bounds::MAX_KEY_BYTES as u64 + bounds::MAX_VALUE_BYTES as u64) + 4096 + (32 << 20))
        <= u32::MAX as u64
);

#[cfg(test)]
mod tests {
    use super::bounds::*;
    use crate::config::Config;
    use std::time::Duration;

    fn load(vars: &[(&str, String)]) -> Result<Config, String> {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.clone()));
        Config::load(None, env).map_err(|e| e.to_string())
    }

    #[test]
    fn every_bound_is_enforced_at_its_edge() {
        let day = MAX_MS.to_string();
        // (variable, bound, largest accepted value, what else must be set
        // for the cross-key rules to hold)
        type Case<'a> = (&'a str, u64, u64, Vec<(&'a str, String)>);
        let cases: Vec<Case> = vec![
            (
                "DCACHE_HTTP_MAX_KEY_BYTES",
                MAX_KEY_BYTES as u64,
                MAX_KEY_BYTES as u64,
                vec![],
            ),
            (
                "DCACHE_HTTP_MAX_VALUE_BYTES",
                MAX_VALUE_BYTES as u64,
                MAX_VALUE_BYTES as u64,
                vec![],
            ),
            ("DCACHE_HTTP_REQUEST_TIMEOUT_MS", MAX_MS, MAX_MS, vec![]),
            (
                "DCACHE_HTTP_MAX_CONNECTIONS",
                MAX_CONNECTIONS as u64,
                MAX_CONNECTIONS as u64,
                vec![],
            ),
            (
                // The election timeout must exceed it, so it can not reach the bound.
                "DCACHE_RAFT_HEARTBEAT_INTERVAL_MS",
                MAX_MS,
                MAX_MS - 1,
                vec![
                    ("DCACHE_RAFT_ELECTION_TIMEOUT_MIN_MS", day.clone()),
                    ("DCACHE_RAFT_ELECTION_TIMEOUT_MAX_MS", day.clone()),
                ],
            ),
            (
                "DCACHE_RAFT_ELECTION_TIMEOUT_MIN_MS",
                MAX_MS,
                MAX_MS,
                vec![("DCACHE_RAFT_ELECTION_TIMEOUT_MAX_MS", day.clone())],
            ),
            (
                "DCACHE_RAFT_ELECTION_TIMEOUT_MAX_MS",
                MAX_MS,
                MAX_MS,
                vec![],
            ),
            (
                "DCACHE_RAFT_SNAPSHOT_THRESHOLD",
                MAX_SNAPSHOT_THRESHOLD,
                MAX_SNAPSHOT_THRESHOLD,
                vec![],
            ),
            ("DCACHE_RAFT_RPC_TIMEOUT_MS", MAX_MS, MAX_MS, vec![]),
            (
                "DCACHE_NODE_WORKER_THREADS",
                MAX_WORKER_THREADS,
                MAX_WORKER_THREADS,
                vec![],
            ),
            (
                "DCACHE_RAFT_LOG_FLUSH_WAIT_US",
                MAX_LOG_FLUSH_WAIT_US,
                MAX_LOG_FLUSH_WAIT_US,
                vec![],
            ),
            ("DCACHE_CLUSTER_JOIN_RETRY_MAX_MS", MAX_MS, MAX_MS, vec![]),
            ("DCACHE_SHUTDOWN_DRAIN_TIMEOUT_MS", MAX_MS, MAX_MS, vec![]),
        ];
        for (var, bound, ok, mut extra) in cases {
            extra.push((var, ok.to_string()));
            load(&extra).unwrap_or_else(|e| panic!("{var}={ok}: {e}"));
            extra.pop();
            extra.push((var, (bound + 1).to_string()));
            let msg = load(&extra).unwrap_err();
            assert!(
                msg.contains(&format!("must be <= {bound}")) && msg.contains(var),
                "{var}={}: {msg}",
                bound + 1
            );
        }
        // The lower ends that are not 1.
        for var in [
            "DCACHE_RAFT_LOG_FLUSH_WAIT_US",
            "DCACHE_SHUTDOWN_DRAIN_TIMEOUT_MS",
            "DCACHE_NODE_WORKER_THREADS",
        ] {
            load(&[(var, "0".into())]).unwrap();
        }
        let msg = load(&[("DCACHE_HTTP_MAX_CONNECTIONS", "0".into())]).unwrap_err();
        assert!(msg.contains("must be >= 1"), "{msg}");
    }

    #[test]
    fn arithmetic_on_settings_cannot_overflow_at_the_maxima() {
        // api::Limits::max_body_bytes, in the narrowest usize Rust supports.
        let body = (MAX_KEY_BYTES as u32)
            .checked_add(MAX_VALUE_BYTES as u32)
            .and_then(|n| n.checked_mul(6))
            .and_then(|n| n.checked_add(4096))
            .expect("6 * (key + value) + 4096 fits in 32 bits");
        body.checked_add(32 << 20)
            .expect("plus the API's drain allowance");
        assert_eq!(6 * (MAX_KEY_BYTES + MAX_VALUE_BYTES) + 4096, body as usize);
        // node.rs: 2 * election_timeout_max_ms, Durations in ms and us.
        assert!(MAX_MS.checked_mul(2).is_some());
        assert_eq!(Duration::from_millis(MAX_MS).as_secs(), 86_400);
        assert!(MAX_MS.checked_mul(1000).is_some());
        // node.rs: snapshot_threshold.saturating_mul(2) stays exact.
        assert!(MAX_SNAPSHOT_THRESHOLD.checked_mul(2).is_some());
    }
}
