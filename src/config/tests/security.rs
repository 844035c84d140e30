//! `cluster.secret` / `cluster.secret_file` and the connection and rate
//! limit keys.

use super::*;

const GOOD: &str = "0123456789abcdef0123";

#[test]
fn secret_from_file_env_and_file_setting() {
    let c = load_yaml_env(&format!("cluster:\n  secret: {GOOD}\n"), &[]).unwrap();
    assert_eq!(c.cluster_secret().unwrap().unwrap().expose(), GOOD);
    let c = load_yaml_env("", &[("DCACHE_CLUSTER_SECRET", GOOD)]).unwrap();
    assert_eq!(c.cluster.secret.expose(), GOOD);
    assert!(Config::default().cluster_secret().unwrap().is_none());

    let f = yaml_file(&format!("{GOOD}\n"));
    let c = load_yaml_env(
        "",
        &[("DCACHE_CLUSTER_SECRET_FILE", f.path().to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(c.cluster_secret().unwrap().unwrap().expose(), GOOD);
}

#[test]
fn secret_is_never_shown() {
    let c = load_yaml_env("", &[("DCACHE_CLUSTER_SECRET", GOOD)]).unwrap();
    assert!(!format!("{c:?}").contains(GOOD));
    // A bad secret's error names the key, not the value.
    let bad = "short-but-secret";
    let msg = err_env(&[("DCACHE_CLUSTER_SECRET", &bad[..10])]);
    assert_contains(&msg, &["cluster.secret", "at least 16"]);
    assert!(!msg.contains(&bad[..10]), "{msg}");
    let msg = err_env(&[("DCACHE_CLUSTER_SECRET", "has a space in it, long enough")]);
    assert_contains(&msg, &["cluster.secret", "visible ASCII"]);
    assert!(!msg.contains("space in it"), "{msg}");
}

#[test]
fn secret_and_secret_file_are_exclusive_and_the_file_must_be_good() {
    let msg = err_env(&[
        ("DCACHE_CLUSTER_SECRET", GOOD),
        ("DCACHE_CLUSTER_SECRET_FILE", "/x"),
    ]);
    assert_contains(&msg, &["cluster.secret_file", "only one"]);

    let c = load_yaml_env("", &[("DCACHE_CLUSTER_SECRET_FILE", "/nonexistent/s")]).unwrap();
    let msg = c.cluster_secret().unwrap_err().to_string();
    assert_contains(&msg, &["cluster.secret_file", "cannot read"]);

    let f = yaml_file("tooshort\n");
    let c = load_yaml_env(
        "",
        &[("DCACHE_CLUSTER_SECRET_FILE", f.path().to_str().unwrap())],
    )
    .unwrap();
    let msg = c.cluster_secret().unwrap_err().to_string();
    assert_contains(&msg, &["cluster.secret_file", "at least 16"]);
    assert!(!msg.contains("tooshort"), "{msg}");
}

#[test]
fn connection_and_rate_limits() {
    let d = Config::default();
    assert_eq!(d.http.max_connections_per_ip, 512);
    assert_eq!(d.http.rate_limit_per_ip, 0);
    let c = load_yaml_env(
        "http:\n  max_connections_per_ip: 8\n  rate_limit_per_ip: 50\n",
        &[("DCACHE_HTTP_RATE_LIMIT_BURST", "7")],
    )
    .unwrap();
    assert_eq!(
        (
            c.http.max_connections_per_ip,
            c.http.rate_limit_per_ip,
            c.http.rate_limit_burst
        ),
        (8, 50, 7)
    );
    assert_contains(
        &err_env(&[("DCACHE_HTTP_MAX_CONNECTIONS_PER_IP", "0")]),
        &["http.max_connections_per_ip"],
    );
    assert_contains(
        &err_env(&[("DCACHE_HTTP_RATE_LIMIT_BURST", "0")]),
        &["http.rate_limit_burst"],
    );
}

#[test]
fn tls_files_all_or_none_and_client_auth_names() {
    let c = Config::default();
    assert!(!c.tls.enabled());
    assert_eq!(c.tls.client_auth, ClientAuth::None);
    let all = [
        ("DCACHE_TLS_CERT_FILE", "/c/n1.crt"),
        ("DCACHE_TLS_KEY_FILE", "/c/n1.key"),
        ("DCACHE_TLS_CA_FILE", "/c/ca.crt"),
    ];
    let c = load_yaml_env("", &all).unwrap();
    assert!(c.tls.enabled());
    assert_eq!(c.tls.ca_file, std::path::PathBuf::from("/c/ca.crt"));
    // Any one missing is named.
    for missing in 0..3 {
        let some: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, kv)| *kv)
            .collect();
        let e = load_yaml_env("", &some).unwrap_err().to_string();
        let key = ["tls.cert_file", "tls.key_file", "tls.ca_file"][missing];
        assert!(e.contains(key) && e.contains("must be set"), "{e}");
    }
    for (text, want) in [
        ("none", ClientAuth::None),
        ("Optional", ClientAuth::Optional),
        ("REQUIRED", ClientAuth::Required),
    ] {
        let c = load_yaml_env("", &[("DCACHE_TLS_CLIENT_AUTH", text)]).unwrap();
        assert_eq!(c.tls.client_auth, want);
    }
    let e = load_yaml_env("tls:\n  client_auth: sometimes\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tls.client_auth") && e.contains("one of none, optional, required"),
        "{e}"
    );
}
