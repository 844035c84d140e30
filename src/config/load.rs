//! Loading: defaults, then the YAML file, then the environment, then the
//! legacy Go keys, then validation.
//!
//! # What this module owns
//! [`Config::load`] and [`Config::from_yaml_str`], the list of keys
//! ([`keys`]) and their environment variables ([`env_var_for`]), and the
//! record of where each value came from, used to annotate errors.
//!
//! Precedence is `env > file > defaults`. On top of that the Go code's legacy
//! keys (`node.bind_addr` host + `http.port` / `raft.port`) are folded into
//! `http.bind_addr` / `raft.bind_addr` when those were not given a non-empty
//! value in the file or env; an explicit `*.bind_addr` always wins.
//!
//! # How, and why not figment
//! 1. The file is deserialized from its text straight into [`Config`] with
//!    `serde_yaml_ng`, so a syntax error, an unknown key or a wrongly typed
//!    value is reported with the file name, the key path and the line and
//!    column. Its raw YAML tree gives the keys it mentions (origins).
//! 2. The known keys are the leaves of `Config::default()` serialized; the
//!    variable of a key is derived from it. `DCACHE_*` variables that match
//!    no key are an error, with the closest known name as a suggestion.
//! 3. The file's `Config` is serialized to a tree and deserialized again
//!    through `layer::Layer`, which substitutes the env text at the leaves
//!    that have a variable. The field's own `Deserialize` impl parses that
//!    text (with `layer::EnvStr`: digits-only integers, yes/no booleans,
//!    empty = unset for `Option`s), and a failure is reported with the key,
//!    the variable and what the type expected.
//!
//! figment was the alternative; it is not used because it would lose what
//! the operator-facing messages promise:
//! * it turns the YAML file into its own value tree before deserializing, so
//!   a type error in the file loses its line and column;
//! * its `Env` provider guesses a scalar kind from the text (`NAME=8080`
//!   becomes an integer and then fails for a `String` field) instead of
//!   asking the field's type;
//! * `Env::split("_")` cannot map `DCACHE_RAFT_HEARTBEAT_INTERVAL_MS` to
//!   `raft.heartbeat_interval_ms` because keys contain `_` themselves, and
//!   it has no notion of an unknown variable: both need the key list anyway.
//!
//! Working around those would take about as much code as `layer` (a few
//! hundred lines, much of it mechanical `Deserializer` forwarding), plus a
//! dependency, so the layering is ours.
//!
//! # What it does not do
//! It does not read the process environment (callers pass it in), check
//! values (that is `validate`), or know any particular setting except the
//! legacy keys it folds.

use super::addr::host_for_port;
use super::layer::{DeError, Layer};
use super::validate::Problem;
use super::{Config, ConfigError, HttpConfig, RaftConfig};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Prefix of every environment variable this module reads.
pub const ENV_PREFIX: &str = "DCACHE_";

/// `DCACHE_*` variables that belong to the command-line client, not to a
/// node's settings: a node ignores them (a shell that exports them for the
/// CLI can still start a node).
pub const CLIENT_ENV_VARS: &[&str] = &[
    "DCACHE_ENDPOINTS",
    "DCACHE_TOKEN",
    "DCACHE_CACERT",
    "DCACHE_CERT",
    "DCACHE_KEY",
];

/// The environment variable for a dotted key: `raft.heartbeat_interval_ms`
/// → `DCACHE_RAFT_HEARTBEAT_INTERVAL_MS`.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every setting's dotted key, in declaration order: the leaves of
/// `Config::default()` serialized, so a new field is a new key by itself.
pub fn keys() -> Vec<String> {
    let tree = to_tree(&Config::default());
    let mut out = Vec::new();
    for_each_leaf(&tree, "", &mut |key, _| out.push(key));
    out
}

fn to_tree(config: &Config) -> Value {
    // Only plain structs, strings, numbers, booleans and options: infallible.
    serde_yaml_ng::to_value(config).expect("a Config always serializes")
}

/// Calls `f(dotted key, value)` for every non-mapping node under `prefix`.
fn for_each_leaf<'a>(v: &'a Value, prefix: &str, f: &mut dyn FnMut(String, &'a Value)) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                if let Some(k) = k.as_str() {
                    let path = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    for_each_leaf(child, &path, f);
                }
            }
        }
        _ if !prefix.is_empty() => f(prefix.to_string(), v),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Provenance
// ---------------------------------------------------------------------------

/// Where values came from, so errors can point at the file or variable to
/// fix, and which keys were set explicitly (for the legacy rule).
#[derive(Default)]
struct Provenance {
    /// Dotted key → `in config file "f.yaml"`, `from DCACHE_X` or
    /// `derived from node.bind_addr`.
    origins: HashMap<String, String>,
    /// Keys given a non-empty value by the last layer that mentioned them:
    /// an explicit null or empty value does not count as "set".
    explicit: BTreeSet<String>,
}

impl Provenance {
    fn note(&mut self, key: &str, origin: String, non_empty: bool) {
        self.origins.insert(key.to_string(), origin);
        if non_empty {
            self.explicit.insert(key.to_string());
        } else {
            self.explicit.remove(key);
        }
    }

    /// Attach the origin of the offending key to a validation error.
    fn annotate(&self, problem: Problem) -> ConfigError {
        match problem.error {
            ConfigError::Invalid {
                key,
                value,
                reason,
                origin: None,
            } => {
                // A cross-key check may fail on a key left at its default
                // because the *other* key was changed: point at that one.
                let origin = self.origins.get(&key).cloned().or_else(|| {
                    let other = problem.related?;
                    self.origins.get(other).map(|o| format!("{other} {o}"))
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

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

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
        let Some(path) = path else {
            return load_layers(None, env);
        };
        let text = std::fs::read_to_string(path).map_err(|source| {
            let path = path.to_path_buf();
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound { path }
            } else {
                ConfigError::Io { path, source }
            }
        })?;
        load_layers(Some((&text, &path.display().to_string())), env)
    }

    /// Parse a YAML document (no env), resolve legacy keys and validate.
    /// `origin` names the document in error messages (usually the file name).
    pub fn from_yaml_str(yaml: &str, origin: &str) -> Result<Config, ConfigError> {
        load_layers(Some((yaml, origin)), Vec::new())
    }
}

/// The whole pipeline; `file` is (text, name).
fn load_layers(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let keys = keys();
    let mut prov = Provenance::default();
    let base = match file {
        None => Config::default(),
        Some((text, name)) => {
            let (config, raw) = parse_yaml(text, name)?;
            for_each_leaf(&raw, "", &mut |key, v| {
                if keys.contains(&key) {
                    let empty = v.is_null() || v.as_str().is_some_and(str::is_empty);
                    prov.note(&key, format!("in config file {name:?}"), !empty);
                }
            });
            config
        }
    };
    let env = env_layer(&keys, env, &mut prov)?;
    let mut config = merge(&base, &env)?;
    resolve_legacy(&mut config, &mut prov);
    config.check().map_err(|p| prov.annotate(p))?;
    Ok(config)
}

/// Parse a YAML document into a config plus its raw tree.
fn parse_yaml(yaml: &str, origin: &str) -> Result<(Config, Value), ConfigError> {
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
    let raw: Value = serde_yaml_ng::from_str(yaml).map_err(yaml_err)?;
    if raw.is_null() {
        // Empty or comments-only file: all defaults.
        return Ok((Config::default(), raw));
    }
    // Deserialize from the text (not the Value) so type errors keep line/column.
    let config: Config = serde_yaml_ng::from_str(yaml).map_err(yaml_err)?;
    Ok((config, raw))
}

/// The `DCACHE_*` variables of `env` as dotted key → text. Sorted so that,
/// with several bad variables, the reported one does not depend on the OS's
/// environment order.
fn env_layer(
    keys: &[String],
    env: impl IntoIterator<Item = (String, String)>,
    prov: &mut Provenance,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let by_var: HashMap<String, &String> = keys.iter().map(|k| (env_var_for(k), k)).collect();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !CLIENT_ENV_VARS.contains(&k.as_str()))
        .collect();
    vars.sort();
    let mut layer = BTreeMap::new();
    for (var, value) in vars {
        let Some(key) = by_var.get(&var) else {
            return Err(ConfigError::UnknownEnv {
                suggestion: suggest(&var, by_var.keys()),
                var,
            });
        };
        prov.note(key, format!("from {var}"), !value.is_empty());
        layer.insert(key.to_string(), value);
    }
    Ok(layer)
}

/// `base` with the env texts parsed into it by each field's own type.
fn merge(base: &Config, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let tree = to_tree(base);
    let layer = Layer {
        value: &tree,
        path: String::new(),
        env,
    };
    Config::deserialize(layer).map_err(|e: DeError| {
        match e.path.as_deref().and_then(|p| env.get_key_value(p)) {
            Some((key, value)) => ConfigError::EnvValue {
                var: env_var_for(key),
                key: key.clone(),
                value: value.clone(),
                expected: e.expected.unwrap_or(e.message),
            },
            // Only env text can fail: the rest is a serialized valid Config.
            None => ConfigError::Invalid {
                key: e.path.unwrap_or_else(|| "config".to_string()),
                value: String::new(),
                reason: e.message,
                origin: None,
            },
        }
    })
}

/// The Go project configured `node.bind_addr` (host) + `http.port` /
/// `raft.port`. Honour that when the modern `*.bind_addr` was not set
/// explicitly; an explicit `*.bind_addr` always wins. A legacy host alone
/// keeps the default port, as in Go.
fn resolve_legacy(c: &mut Config, prov: &mut Provenance) {
    let host_set = !c.node.bind_addr.is_empty();
    let host = if host_set {
        host_for_port(&c.node.bind_addr)
    } else {
        "localhost".to_string()
    };
    let default_port = |addr: String| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or_default()
    };
    for (key, port_key, bind, port, default) in [
        (
            "http.bind_addr",
            "http.port",
            &mut c.http.bind_addr,
            c.http.port,
            default_port(HttpConfig::default().bind_addr),
        ),
        (
            "raft.bind_addr",
            "raft.port",
            &mut c.raft.bind_addr,
            c.raft.port,
            default_port(RaftConfig::default().bind_addr),
        ),
    ] {
        if prov.explicit.contains(key) || (port.is_none() && !host_set) {
            continue;
        }
        *bind = format!("{host}:{}", port.unwrap_or(default));
        let from = match (host_set, port.is_some()) {
            (true, true) => format!("node.bind_addr and {port_key}"),
            (true, false) => "node.bind_addr".to_string(),
            _ => port_key.to_string(),
        };
        prov.origins
            .insert(key.to_string(), format!("derived from {from}"));
    }
}

/// Closest known variable to a misspelt one, if plausibly a typo.
fn suggest<'a>(var: &str, known: impl Iterator<Item = &'a String>) -> Option<String> {
    known
        .map(|k| (edit_distance(var, k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by(|(d1, k1), (d2, k2)| d1.cmp(d2).then(k1.cmp(k2)))
        .map(|(_, k)| k.clone())
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

    fn leaves(tree: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for_each_leaf(tree, "", &mut |k, v| out.push((k, v.clone())));
        out
    }

    fn text_of(v: &Value) -> String {
        match v {
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    /// The defaults with one env text merged in, as a tree.
    fn with_env(key: &str, text: &str) -> Result<Value, ConfigError> {
        let env = BTreeMap::from([(key.to_string(), text.to_string())]);
        merge(&Config::default(), &env).map(|c| to_tree(&c))
    }

    /// A value other than `default`, as env text. For names the type
    /// rejects, the alternatives are the ones its error lists.
    fn other_value(key: &str, default: &Value) -> String {
        let first = match default {
            Value::Number(n) => (n.as_u64().unwrap() + 1).to_string(),
            Value::Bool(b) => (!b).to_string(),
            Value::Null => "7".to_string(),
            Value::String(s) => format!("{s}x"),
            other => panic!("{key}: add env support for {other:?}"),
        };
        match with_env(key, &first) {
            Ok(_) => first,
            Err(ConfigError::EnvValue { expected, .. }) if expected.starts_with("one of ") => {
                expected["one of ".len()..]
                    .split(", ")
                    .find(|v| Value::String(v.to_string()) != *default)
                    .unwrap_or_else(|| panic!("{key}: no alternative in {expected:?}"))
                    .to_string()
            }
            Err(e) => panic!("{key}: {first:?} rejected: {e}"),
        }
    }

    #[test]
    fn every_key_has_an_env_var_that_round_trips() {
        // Only the field declarations drive this: a new setting is covered
        // without touching the test.
        let defaults = leaves(&to_tree(&Config::default()));
        assert_eq!(
            defaults.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            keys()
        );
        for (key, default) in &defaults {
            let text = other_value(key, default);
            let var = env_var_for(key);
            // Through the public entry point: the variable is known and
            // parsed (validation may then reject the odd sample value).
            match Config::load(None, vec![(var.clone(), text.clone())]) {
                Ok(_) | Err(ConfigError::Invalid { .. }) => {}
                Err(e) => panic!("{var}={text:?}: {e}"),
            }
            let got = leaves(&with_env(key, &text).unwrap());
            for ((k, want), (k2, have)) in defaults.iter().zip(&got) {
                assert_eq!(k, k2);
                if k == key {
                    assert_eq!(text_of(have), text, "{var} did not land in {key}");
                } else {
                    assert_eq!(want, have, "{var} changed {k}");
                }
            }
        }
    }

    #[test]
    fn env_var_names_are_distinct_and_plain() {
        let keys = keys();
        let vars: BTreeSet<String> = keys.iter().map(|k| env_var_for(k)).collect();
        assert_eq!(vars.len(), keys.len(), "two keys share a variable");
        for k in &keys {
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b)),
                "{k}: keys are lower-case snake_case"
            );
        }
        assert!(
            keys.contains(&"http.port".to_string()),
            "None defaults are keys"
        );
        assert_eq!(
            env_var_for("raft.rpc_timeout_ms"),
            "DCACHE_RAFT_RPC_TIMEOUT_MS"
        );
    }

    #[test]
    fn suggestions_are_deterministic_and_close() {
        let known = [
            "DCACHE_HTTP_PORT".to_string(),
            "DCACHE_RAFT_PORT".to_string(),
        ];
        // Equally close to both: the first by name.
        assert_eq!(
            suggest("DCACHE_HAFP_PORT", known.iter()).as_deref(),
            Some("DCACHE_HTTP_PORT")
        );
        assert_eq!(suggest("DCACHE_NOTHING_ALIKE", known.iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn legacy_origin_names_what_it_was_derived_from() {
        let mut c = Config::default();
        c.node.bind_addr = "::1".into();
        c.raft.port = Some(9);
        let mut prov = Provenance::default();
        resolve_legacy(&mut c, &mut prov);
        assert_eq!(c.http.bind_addr, "[::1]:11000");
        assert_eq!(c.raft.bind_addr, "[::1]:9");
        assert_eq!(
            prov.origins["http.bind_addr"],
            "derived from node.bind_addr"
        );
        assert_eq!(
            prov.origins["raft.bind_addr"],
            "derived from node.bind_addr and raft.port"
        );
    }
}
