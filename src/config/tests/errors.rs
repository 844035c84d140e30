//! The error messages an operator sees: they name the key, the value and
//! where it came from. Their wording is the contract tested here.

use super::*;

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
    // The CLI's variables are not a node's settings, and not an error.
    Config::load(None, env(&[("DCACHE_ENDPOINTS", "a:1,b:2")])).unwrap();
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
            let key = keys().into_iter().find(|k| env_var_for(k) == var).unwrap();
            assert_contains(&err.to_string(), &[key.as_str(), &format!("{a:?}"), var]);
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
