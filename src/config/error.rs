//! [`ConfigError`]: every way loading a configuration can fail.
//!
//! Owns the error type and its operator-facing texts. Invariant: every
//! variant's text names what to fix (the file, the key or variable, the
//! offending value) so it can be printed as-is before exiting non-zero.
//! It does not decide *when* an error happens (loading and validation do).

use std::fmt;
use std::path::PathBuf;

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
    /// of timeouts, out-of-range limit...). `origin` says where the value
    /// came from (`from DCACHE_X`, `in config file "f.yaml"`) when known.
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

/// An [`ConfigError::Invalid`] whose origin is not known yet.
pub(super) fn invalid(
    key: &str,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
        origin: None,
    }
}
