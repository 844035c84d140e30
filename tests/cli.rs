//! The command-line client (`dcache get|put|del|cluster|member|leader|
//! completions`), driven as a user would: the real binary against a
//! 3-node cluster on loopback. Checks output, `--output json`, stdin values,
//! endpoint fallback and the exit codes scripts rely on.

use std::io::Write;
use std::process::Command;
use std::process::Stdio;

use dcache::wire::Code;
use dcache_testkit::WAIT;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::ports::free_listener;
use dcache_testkit::wait::wait_for;
use serde_json::Value;

/// What one CLI run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }
}

/// Run `dcache ARGS` against `endpoints`, with `stdin` piped in. Blocking:
/// call from `spawn_blocking` so the in-process nodes keep running.
fn dcache(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Run {
    dcache_env(endpoints, args, stdin, &[])
}

/// [`dcache`] with extra environment variables.
fn dcache_env(endpoints: &str, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcache"))
        .args(["--endpoints", endpoints, "--timeout", "20s"])
        .args(args)
        .env_remove("DCACHE_ENDPOINTS")
        .env_remove("DCACHE_CLUSTER_SECRET")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the dcache binary runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn cli(endpoints: &str, args: &[&str]) -> Run {
    cli_in(endpoints, args, None).await
}

async fn cli_in(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let (e, a, s) = (
        endpoints.to_string(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        stdin.map(str::to_string),
    );
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        dcache(&e, &a, s.as_deref())
    })
    .await
    .unwrap()
}

/// A loopback address nothing listens on (bound, then released).
async fn dead_endpoint() -> String {
    let l = free_listener().await;
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_through_the_cli_with_exit_codes_a_script_can_use() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let f = c.nodes[follower].http.to_string();

    // put/get through a follower (it forwards to the leader).
    let r = cli(&f, &["put", "user/42", "Ada"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("OK (modify index "), "{}", r.stdout);
    let r = cli(&f, &["get", "user/42"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "Ada\n"), "{}", r.stderr);

    // The value from stdin, a TTL, JSON output.
    let r = cli_in(&f, &["put", "session", "--ttl", "1h"], Some("tok\nen")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(&f, &["--output", "json", "get", "session"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["value"], "tok\nen");
    let ttl = j["ttl_ms"].as_u64().expect("a TTL");
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{j}");
    assert!(j["expires_at"].as_str().is_some(), "{j}");
    let index = j["modify_index"].as_u64().unwrap();

    // CAS: a stale index is refused (5), the current one applies.
    let r = cli(
        &f,
        &["put", "session", "x", "--cas", &(index - 1).to_string()],
    )
    .await;
    assert_eq!(r.code, 5, "cas mismatch: {} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(Code::CasMismatch.as_str()),
        "{}",
        r.stderr
    );
    let r = cli(&f, &["put", "session", "y", "--cas", &index.to_string()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Not found is 3, in text and in JSON.
    let r = cli(&f, &["get", "absent"]).await;
    assert_eq!(r.code, 3, "{} {}", r.stdout, r.stderr);
    let r = cli(&f, &["--output", "json", "get", "absent"]).await;
    assert_eq!((r.code, r.json()["exit"].as_u64()), (3, Some(3)));

    // Delete: deleted, then nothing to delete, then not found.
    let r = cli(&f, &["--output", "json", "del", "user/42"]).await;
    assert_eq!((r.code, r.json()["deleted"].as_bool()), (0, Some(true)));
    let r = cli(&f, &["del", "user/42"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("nothing deleted"), "{}", r.stdout);
    assert_eq!(cli(&f, &["get", "user/42"]).await.code, 3);

    // Endpoints are tried in order: a dead one first is skipped; only
    // dead ones is 4 (nothing was sent).
    let dead = dead_endpoint().await;
    let r = cli(&format!("{dead},{f}"), &["get", "session"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "y\n"), "{}", r.stderr);
    let r = cli(&dead, &["put", "k", "v"]).await;
    assert_eq!(r.code, 4, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("no endpoint could be reached"),
        "{}",
        r.stderr
    );

    // Bad input is refused by the server: 5 (not applied).
    let r = cli(&f, &["put", "k", "v", "--ttl", "forever"]).await;
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    let code = dcache::wire::Code::InvalidInput.as_str();
    assert!(r.stderr.contains(code), "{}", r.stderr);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_membership_and_leadership_through_the_cli() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let all = (0..3)
        .map(|i| c.nodes[i].http.to_string())
        .collect::<Vec<_>>()
        .join(",");

    let r = cli(&all, &["cluster", "status"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("leader {}", c.id(leader))),
        "{}",
        r.stdout
    );
    let r = cli(&all, &["--output", "json", "member", "list"]).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(3), "{}", r.stdout);

    // Hand leadership to a named follower.
    let to = (0..3).find(|&i| i != leader).unwrap();
    let r = cli(&all, &["leader", "transfer", "--to", c.id(to)]).await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(c.leader().await, to);

    // Remove a member, then add it back by its Raft address.
    let gone = (0..3).find(|&i| i != to).unwrap();
    let via = c.nodes[to].http.to_string();
    let r = cli(&via, &["member", "remove", c.id(gone)]).await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let r = cli(&via, &["member", "remove", c.id(gone)]).await;
    assert_eq!(
        r.code, 3,
        "removing a non-member: {} {}",
        r.stdout, r.stderr
    );
    let r = cli(&via, &["--output", "json", "member", "list"]).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(2), "{}", r.stdout);
    let raft = c.nodes[gone].raft.to_string();
    let r = cli(&via, &["member", "add", c.id(gone), &raft]).await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    wait_for("the member is back as a voter", WAIT, || async {
        let r = cli(&via, &["--output", "json", "member", "list"]).await;
        let members = r.json();
        let voters = members
            .as_array()?
            .iter()
            .filter(|m| m["role"] == "voter")
            .count();
        (voters == 3).then_some(())
    })
    .await;

    // Promote: a voter already is one; a stranger is not a member (exit 3).
    let r = cli(&via, &["member", "promote", c.id(gone)]).await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.stdout, format!("{} is already a voter\n", c.id(gone)));
    let r = cli(&via, &["member", "promote", "nobody"]).await;
    assert_eq!(r.code, 3, "{} {}", r.stdout, r.stderr);

    // Completions for a shell.
    let r = cli(&via, &["completions", "bash"]).await;
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("_dcache") && r.stdout.contains("member"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scans_prefix_deletes_transactions_and_watch_through_the_cli() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.leader().await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let f = c.nodes[follower].http.to_string();
    let other = c.nodes[(0..3).find(|&i| i != leader && i != follower).unwrap()]
        .http
        .to_string();

    // A watcher on another node, from now on: it must see the changes below
    // in order, each once.
    let start = cli(&f, &["--output", "json", "cluster", "status"])
        .await
        .json()["applied_index"]
        .as_u64()
        .unwrap();
    let watch = {
        let other = other.clone();
        let since = start.to_string();
        tokio::spawn(async move {
            cli(
                &other,
                &[
                    "--output", "json", "watch", "jobs/", "--since", &since, "--count", "6",
                ],
            )
            .await
        })
    };

    // 5 keys, scanned in pages of 1000 (one page) and with a limit.
    for i in 0..5 {
        let r = cli(&f, &["put", &format!("jobs/{i}"), &format!("v{i}")]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = cli(&f, &["put", "other", "x"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(&f, &["scan", "jobs/"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "jobs/0\tv0\njobs/1\tv1\njobs/2\tv2\njobs/3\tv3\njobs/4\tv4\n"
    );
    let r = cli(&f, &["ls", "jobs/", "--keys-only", "--limit", "2"]).await;
    assert_eq!(r.stdout, "jobs/0\njobs/1\n", "{}", r.stderr);
    let r = cli(&f, &["scan", "jobs/", "--count"]).await;
    assert_eq!(r.stdout, "5\n", "{}", r.stderr);

    // A transaction from stdin: move a value if jobs/0 is unchanged.
    let txn = r#"{"compare":[{"key":"jobs/0","target":"value","op":"=","value":"v0"}],
        "success":[{"op":"delete","key":"jobs/0"},{"op":"put","key":"done/0","value":"v0"}],
        "failure":[{"op":"get","key":"jobs/0"}]}"#;
    let r = cli_in(&f, &["--output", "json", "txn"], Some(txn)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["succeeded"], true, "{}", r.stdout);
    let r = cli_in(&f, &["txn", "-"], Some(txn)).await;
    assert!(r.stdout.starts_with("FAILURE"), "{}", r.stdout);
    let r = cli_in(&f, &["txn"], Some("{\"success\":[{\"op\":\"nope\"}]}")).await;
    assert_eq!(r.code, 5, "malformed txn: {} {}", r.stdout, r.stderr);

    // Delete the rest of the prefix.
    let r = cli(&f, &["--output", "json", "del", "--prefix", "jobs/"]).await;
    assert_eq!(
        (r.code, r.json()["deleted"].as_u64()),
        (0, Some(4)),
        "{}",
        r.stderr
    );
    assert_eq!(cli(&f, &["scan", "jobs/", "--count"]).await.stdout, "0\n");

    // The watcher saw 5 puts and the txn's delete of jobs/0 (6 changes), in
    // order, and nothing about keys outside the prefix.
    let w = tokio::time::timeout(WAIT, watch)
        .await
        .expect("the watcher saw the 6 changes within the wait")
        .unwrap();
    assert_eq!(w.code, 0, "{}", w.stderr);
    let changes: Vec<Value> = w
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, String)> = changes
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = (0..5)
        .map(|i| ("put".to_string(), format!("jobs/{i}")))
        .collect();
    want.push(("delete".to_string(), "jobs/0".to_string()));
    assert_eq!(got, want);
    let indexes: Vec<u64> = changes
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    c.shutdown_all().await;
}

/// With `cluster.secret` set, membership changes through the CLI need the
/// secret (`DCACHE_CLUSTER_SECRET` or `--cluster-secret`); without it the
/// node refuses with `unauthorized` and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_through_the_cli_needs_the_cluster_secret() {
    const SECRET: &str = "cli-test-cluster-secret-0123456789";
    let c = TestCluster::start(3, |cfg| {
        cfg.cluster.secret = dcache::config::Secret::new(SECRET)
    })
    .await;
    let leader = c.leader().await;
    let via = c.nodes[leader].http.to_string();
    let gone = (0..3).find(|&i| i != leader).unwrap();
    let remove = ["--output", "json", "member", "remove", c.id(gone)];

    let r = cli(&via, &remove).await;
    assert_eq!(r.code, 5, "refused, not applied: {} {}", r.stdout, r.stderr);
    assert_eq!(
        r.json()["code"],
        Code::Unauthorized.as_str(),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains(SECRET) && !r.stdout.contains(SECRET));
    let r = cli(&via, &["--output", "json", "member", "list"]).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(3), "{}", r.stdout);

    let (v, a, id) = (
        via.clone(),
        remove.map(str::to_string),
        c.id(gone).to_string(),
    );
    let r = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        dcache_env(&v, &a, None, &[("DCACHE_CLUSTER_SECRET", SECRET)])
    })
    .await
    .unwrap();
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let raft = c.nodes[gone].raft.to_string();
    let add = ["--cluster-secret", SECRET, "member", "add", &id, &raft];
    let r = cli(&via, &add).await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    c.shutdown_all().await;
}

/// The token commands keep a tokens file (new --file, list, revoke), and a
/// node that reloads it (what SIGHUP does) refuses a revoked token from
/// its next request on while the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_made_listed_and_revoked_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    let f = file.to_str().unwrap().to_string();
    let none = dead_endpoint().await;
    let app = token_into(&f, &["--name", "app", "--role", "write"]).await;
    let ops = token_into(&f, &["--name", "ops", "--role", "read", "--prefix", "t/"]).await;
    // A name already in the file is refused; the file is unchanged.
    let before = std::fs::read_to_string(&file).unwrap();
    let r = cli(
        &none,
        &[
            "token", "new", "--name", "app", "--role", "read", "--file", &f,
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("dct."), "no token made: {}", r.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let r = cli(&none, &["token", "list", "--file", &f]).await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "app write *\nops read t/\n")
    );

    let file2 = file.clone();
    let c = TestCluster::start(1, move |cfg| {
        cfg.auth.enabled = true;
        cfg.auth.tokens_file = file2.clone();
    })
    .await;
    let ep = c.nodes[0].http.to_string();
    let put = |t: String| {
        let ep = ep.clone();
        async move { cli(&ep, &["--token", &t, "put", "k", "v"]).await }
    };
    assert_eq!(put(app.clone()).await.code, 0);

    let r = cli(&none, &["token", "revoke", "--name", "app", "--file", &f]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(&none, &["token", "revoke", "--name", "app", "--file", &f]).await;
    assert_eq!(r.code, 3, "not in the file: {}", r.stderr);
    let r = cli(&none, &["token", "list", "--file", &f]).await;
    assert_eq!(r.stdout, "ops read t/\n");
    // Until the node reloads, the revoked token still works; after, not.
    assert_eq!(put(app.clone()).await.code, 0);
    let tokens = c.nodes[0].node.as_ref().unwrap().tokens().expect("auth on");
    assert_eq!(tokens.reload(), Ok(1));
    let r = put(app).await;
    assert_eq!(r.code, 5, "refused, not applied: {} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(Code::Unauthorized.as_str()),
        "{}",
        r.stderr
    );
    let r = cli(&ep, &["--token", &ops, "get", "t/absent"]).await;
    assert_eq!(
        r.code, 3,
        "ops still works (a miss): {} {}",
        r.stdout, r.stderr
    );
    c.shutdown_all().await;
}

/// The binary reloads its tokens file on SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tokens_file() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("tokens");
    let f = file.to_str().unwrap().to_string();
    let none = dead_endpoint().await;
    let app = token_into(&f, &["--name", "app", "--role", "write"]).await;
    let spec =
        dcache_testkit::proc::Spec::new(dcache_testkit::dcache_bin!(), work.path(), "n0", "")
            .with_envs(&[
                ("DCACHE_AUTH_ENABLED", "true"),
                ("DCACHE_AUTH_TOKENS_FILE", &f),
                ("DCACHE_REDIS_BIND_ADDR", ""),
            ]);
    let mut p = spec.spawn();
    let ep = spec.http.clone();
    wait_for("the token is accepted", WAIT, || async {
        (cli(&ep, &["--token", &app, "put", "k", "v"]).await.code == 0).then_some(())
    })
    .await;
    let r = cli(&none, &["token", "revoke", "--name", "app", "--file", &f]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    p.signal("HUP");
    wait_for("SIGHUP revokes the token", WAIT, || async {
        let r = cli(&ep, &["--token", &app, "put", "k", "v"]).await;
        r.stderr.contains(Code::Unauthorized.as_str()).then_some(())
    })
    .await;
    p.stop_gracefully(WAIT).await;
}

/// `dcache token new ARGS --file FILE`: the token it printed.
async fn token_into(file: &str, args: &[&str]) -> String {
    let none = dead_endpoint().await;
    let mut a = vec!["token", "new", "--file", file];
    a.extend_from_slice(args);
    let r = cli(&none, &a).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
        .split_whitespace()
        .find(|w| w.starts_with("dct."))
        .unwrap_or_else(|| panic!("no token in {:?}", r.stdout))
        .to_string()
}
