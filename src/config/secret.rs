//! [`Secret`]: a configured secret string (`cluster.secret`), and
//! [`Config::cluster_secret`], which resolves `cluster.secret` /
//! `cluster.secret_file` into the one secret peers must present.
//!
//! Invariants:
//! - A secret is never printed: `Debug` redacts it and no error message
//!   quotes it (errors say `<redacted>`).
//! - An accepted secret is at least [`MIN_SECRET_BYTES`] bytes of visible
//!   ASCII, so it fits an HTTP header value as is.
//!
//! Not here: comparing a presented secret (`net::ClusterSecret`, constant
//! time), sending or checking headers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::invalid;
use super::{Config, ConfigError};

/// Shortest accepted cluster secret.
pub const MIN_SECRET_BYTES: usize = 16;

/// What error messages show instead of a secret.
const REDACTED: &str = "<redacted>";

/// A secret string. Serialized as itself (the loader round-trips the
/// config through a tree), never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "super::de_string_or_null")] String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret's text, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(\"\")")
        } else {
            write!(f, "Secret({REDACTED})")
        }
    }
}

/// Check the shape of a secret from `key` (never quoting it).
pub(super) fn check_secret(key: &str, s: &str) -> Result<(), ConfigError> {
    if s.len() < MIN_SECRET_BYTES {
        return Err(invalid(
            key,
            REDACTED,
            format!(
                "must be at least {MIN_SECRET_BYTES} bytes (it is {})",
                s.len()
            ),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            key,
            REDACTED,
            "must be visible ASCII only (no spaces or control characters), so it fits an HTTP header",
        ));
    }
    Ok(())
}

impl Config {
    /// The cluster secret peers must present: `cluster.secret`, or the
    /// contents of `cluster.secret_file` (read now; one trailing newline is
    /// dropped), or `None` when neither is set. [`Config::validate`] has
    /// already checked that at most one is set.
    pub fn cluster_secret(&self) -> Result<Option<Secret>, ConfigError> {
        let c = &self.cluster;
        if !c.secret.is_empty() {
            return Ok(Some(c.secret.clone()));
        }
        if c.secret_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&c.secret_file).map_err(|e| {
            invalid(
                "cluster.secret_file",
                c.secret_file.display(),
                format!("cannot read it: {e}"),
            )
        })?;
        let s = text
            .strip_suffix('\n')
            .map(|s| s.strip_suffix('\r').unwrap_or(s))
            .unwrap_or(&text);
        check_secret("cluster.secret_file", s)?;
        Ok(Some(Secret::new(s)))
    }
}
