//! [`Config::validate`]: the checks a loaded configuration has passed.
//!
//! Owns cross-key rules (timeout ordering, distinct listeners) and the
//! non-zero limits. It does not know where a value came from: the loader
//! attaches origins to the errors returned here.

use super::addr::{AddrUse, check_addr};
use super::error::invalid;
use super::{Config, ConfigError};

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

    /// Limits and counts that must not be zero.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        let (h, r) = (&self.http, &self.raft);
        for (key, value) in [
            ("raft.heartbeat_interval_ms", r.heartbeat_interval_ms),
            ("raft.snapshot_threshold", r.snapshot_threshold),
            ("raft.rpc_timeout_ms", r.rpc_timeout_ms),
            ("http.max_key_bytes", h.max_key_bytes as u64),
            ("http.max_value_bytes", h.max_value_bytes as u64),
            ("http.request_timeout_ms", h.request_timeout_ms),
            ("http.max_connections", h.max_connections as u64),
            ("cluster.join_retry_max_ms", self.cluster.join_retry_max_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "must be >= 1"));
            }
        }
        Ok(())
    }
}
