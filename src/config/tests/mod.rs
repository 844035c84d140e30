//! Tests of the public contract: defaults, precedence, env spellings,
//! legacy keys and the shipped files. Error messages are in `errors`.

mod errors;
mod security;

use super::*;
use std::io::Write;

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A named temp file holding `yaml`; kept alive by the returned handle.
pub(super) fn yaml_file(yaml: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    f
}

pub(super) fn load_yaml_env(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let f = yaml_file(yaml);
    Config::load(Some(f.path()), env(vars))
}

pub(super) fn err_yaml(yaml: &str) -> String {
    Config::from_yaml_str(yaml, "test.yaml")
        .expect_err("expected an error")
        .to_string()
}

pub(super) fn err_env(vars: &[(&str, &str)]) -> String {
    Config::load(None, env(vars))
        .expect_err("expected an error")
        .to_string()
}

#[track_caller]
pub(super) fn assert_contains(msg: &str, parts: &[&str]) {
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
    // Read policies too, in either layer.
    let c = Config::from_yaml_str("raft:\n  read_policy: Lease\n", "t").unwrap();
    assert_eq!(c.raft.read_policy, ReadPolicy::Lease);
    let c = Config::load(None, env(&[("DCACHE_RAFT_READ_POLICY", "LEASE")])).unwrap();
    assert_eq!(c.raft.read_policy, ReadPolicy::Lease);
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
    let c =
        Config::from_yaml_str("http:\n  port: 8080\n  bind_addr: localhost:11000\n", "t").unwrap();
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

// --- shipped files ------------------------------------------------------

#[test]
fn shipped_configs_parse() {
    let n1 =
        Config::from_yaml_str(include_str!("../../../configs/node1.yaml"), "node1.yaml").unwrap();
    assert_eq!(n1.node.id, "node1");
    assert_eq!(n1.node.data_dir, PathBuf::from("./data/node1"));
    assert_eq!(n1.http.bind_addr, "localhost:11001");
    assert_eq!(n1.raft.bind_addr, "localhost:12001");
    assert_eq!(n1.cluster.join_addr, "");
    // Three nodes on one machine: one runtime thread each (BENCHMARKS item 15).
    assert_eq!(n1.node.worker_threads, 1);
    assert_eq!(
        n1.logging,
        LoggingConfig {
            level: LogLevel::Info,
            json: false
        }
    );

    for (n, yaml) in [
        (2, include_str!("../../../configs/node2.yaml")),
        (3, include_str!("../../../configs/node3.yaml")),
    ] {
        let c = Config::from_yaml_str(yaml, "node.yaml").unwrap();
        assert_eq!(c.node.id, format!("node{n}"));
        assert_eq!(c.node.data_dir, PathBuf::from(format!("./data/node{n}")));
        assert_eq!(c.http.bind_addr, format!("localhost:1100{n}"));
        assert_eq!(c.raft.bind_addr, format!("localhost:1200{n}"));
        assert_eq!(c.cluster.join_addr, "localhost:11001");
        assert_eq!(c.node.worker_threads, 1);
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
    let ex = Config::from_yaml_str(
        include_str!("../../../configs/config.example.yaml"),
        "example",
    )
    .unwrap();
    assert_eq!(ex, Config::default());
    let text = include_str!("../../../configs/config.example.yaml");
    // Every variable it documents is known (a field whose key vanished from
    // the serialized defaults would fail here).
    let known: Vec<String> = keys().iter().map(|k| env_var_for(k)).collect();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with(ENV_PREFIX) && word.len() > ENV_PREFIX.len() {
            assert!(
                known.iter().any(|k| k == word),
                "example names unknown {word}"
            );
        }
    }
    for key in keys() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(text.contains(&format!("{leaf}:")), "example lacks {key}");
        assert!(
            text.contains(&env_var_for(&key)),
            "example lacks {}",
            env_var_for(&key)
        );
    }
}

#[test]
fn redis_bind_addr_default_env_and_validation() {
    let c = Config::default();
    assert_eq!(c.redis.bind_addr, "localhost:6380");
    let c = Config::load(None, env(&[("DCACHE_REDIS_BIND_ADDR", "127.0.0.1:7000")])).unwrap();
    assert_eq!(c.redis.bind_addr, "127.0.0.1:7000");
    // Empty disables the listener.
    let c = Config::load(None, env(&[("DCACHE_REDIS_BIND_ADDR", "")])).unwrap();
    assert_eq!(c.redis.bind_addr, "");
    let c = Config::from_yaml_str("redis:\n  bind_addr: \"[::1]:6390\"\n", "t.yaml").unwrap();
    assert_eq!(c.redis.bind_addr, "[::1]:6390");
    let msg = err_env(&[("DCACHE_REDIS_BIND_ADDR", "nope")]);
    assert_contains(&msg, &["redis.bind_addr", "nope"]);
    let msg = err_env(&[("DCACHE_REDIS_BIND_ADDR", "localhost:11000")]);
    assert_contains(
        &msg,
        &["redis.bind_addr", "must differ from http.bind_addr"],
    );
    // The Redis listener takes AUTH: tokens and a Redis listener together.
    let c = Config::load(
        None,
        env(&[
            ("DCACHE_AUTH_ENABLED", "true"),
            ("DCACHE_AUTH_TOKENS_FILE", "/tmp/tokens"),
        ]),
    )
    .unwrap();
    assert_eq!(c.redis.bind_addr, "localhost:6380");
    // Port 0 everywhere (tests) is three ephemeral ports, not a clash.
    Config::load(
        None,
        env(&[
            ("DCACHE_REDIS_BIND_ADDR", "127.0.0.1:0"),
            ("DCACHE_HTTP_BIND_ADDR", "127.0.0.1:0"),
            ("DCACHE_RAFT_BIND_ADDR", "127.0.0.1:0"),
        ]),
    )
    .unwrap();
}
