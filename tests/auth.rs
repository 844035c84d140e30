//! Bearer tokens and roles on every client route: without a token or with
//! a bad one 401 `unauthorized`, with too small a role or outside the
//! token's key prefix 403 `forbidden`, otherwise past the check.

use dcache::auth::Role;
use dcache::wire::Code;
use dcache_testkit::cluster::TestCluster;
use dcache_testkit::http::Resp;

/// A token for each kind of principal, and the tokens file accepting them.
struct Tokens {
    read: String,
    write: String,
    admin: String,
    /// write, limited to `tenant-a/`.
    tenant: String,
    /// admin, limited to `tenant-a/`.
    tenant_admin: String,
    file: std::path::PathBuf,
}

fn tokens(dir: &std::path::Path) -> Tokens {
    let mut lines = vec!["# test tokens".to_string()];
    let mut make = |name: &str, role, prefix: Option<&str>| {
        let (t, l) = dcache::auth::new_token(name, role, prefix).unwrap();
        lines.push(l);
        t
    };
    let read = make("reader", Role::Read, None);
    let write = make("writer", Role::Write, None);
    let admin = make("admin", Role::Admin, None);
    let tenant = make("tenant", Role::Write, Some("tenant-a/"));
    let tenant_admin = make("tenant-admin", Role::Admin, Some("tenant-a/"));
    let file = dir.join("tokens");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    Tokens {
        read,
        write,
        admin,
        tenant,
        tenant_admin,
        file,
    }
}

/// `n` nodes with tokens on (and `more` settings); the temp dir holds the
/// tokens file.
async fn start(
    n: usize,
    more: impl Fn(&mut dcache::config::Config),
) -> (TestCluster, Tokens, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let t = tokens(dir.path());
    let file = t.file.clone();
    let c = TestCluster::start(n, move |cfg| {
        cfg.auth.enabled = true;
        cfg.auth.tokens_file = file.clone();
        more(cfg);
    })
    .await;
    (c, t, dir)
}

/// `method path body` on node 0 with `token` (None: no Authorization
/// header).
async fn call(c: &TestCluster, token: Option<&str>, method: &str, path: &str, body: &str) -> Resp {
    call_at(c, 0, token, method, path, body).await
}

/// `method path body` on node `i` with `token`. Reads only the head of an
/// event stream (it never ends).
async fn call_at(
    c: &TestCluster,
    i: usize,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = c.client.request(m, c.url(i, path)).body(body.to_string());
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    if !path.starts_with("/v1/watch") {
        return dcache_testkit::http::send(rb).await;
    }
    let r = rb.send().await.expect("answered");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = if status == 200 {
        Vec::new()
    } else {
        r.bytes().await.unwrap().to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Open,
    /// A role on no key (status, health...).
    Role(Role),
    /// A role on keys outside `tenant-a/`.
    OtherKeys(Role),
}

/// Every route, with what it needs: method, path, body (`-`: none), and
/// `open`, a role on no key (`read`, `write`, `admin`: status, health...)
/// or a role on keys outside `tenant-a/` (`read+keys`, `write+keys`,
/// `admin+keys`).
const ROUTES: &str = r#"
GET    /livez                      -                                open
GET    /readyz                     -                                open
GET    /metrics                    -                                open
GET    /health                     -                                read
GET    /v1/status                  -                                read
GET    /v1/status/digest           -                                read
GET    /v1/cluster                 -                                read
GET    /v1/openapi.json            -                                read
GET    /no/such/route              -                                read
PUT    /v1/kv/k                    v                                write+keys
GET    /v1/kv/k                    -                                read+keys
HEAD   /v1/kv/k                    -                                read+keys
DELETE /v1/kv/k                    -                                write+keys
POST   /store                      {"key":"k","value":"v"}          write+keys
GET    /store/k                    -                                read+keys
HEAD   /store/k                    -                                read+keys
DELETE /store/k                    -                                write+keys
GET    /v1/kv?prefix=k             -                                read+keys
GET    /v1/kv?start=a&end=z        -                                read+keys
DELETE /v1/kv?prefix=zz            -                                write+keys
POST   /v1/txn                     {"ops":[{"op":"get","key":"k"}]} write+keys
GET    /v1/watch?prefix=k          -                                read+keys
POST   /v1/cluster/members         {"id":"x","addr":"bad"}          admin
DELETE /v1/cluster/members/nobody  -                                admin
POST   /join                       {"id":"x","addr":"bad"}          admin
POST   /leave                      {"id":"nobody"}                  admin
POST   /v1/cluster/transfer-leader {"to":"nobody"}                  admin
POST   /stepdown                   -                                admin
POST   /internal/kv                -                                admin+keys
"#;

/// [`ROUTES`], parsed.
fn routes() -> Vec<(&'static str, &'static str, &'static str, Needs)> {
    let role = |r: &str| match r {
        "read" => Role::Read,
        "write" => Role::Write,
        "admin" => Role::Admin,
        other => panic!("no role {other:?}"),
    };
    ROUTES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [method, path, body, needs] = f[..] else {
                panic!("a route line has four fields: {l:?}")
            };
            let needs = match needs.strip_suffix("+keys") {
                _ if needs == "open" => Needs::Open,
                Some(r) => Needs::OtherKeys(role(r)),
                None => Needs::Role(role(needs)),
            };
            (method, path, if body == "-" { "" } else { body }, needs)
        })
        .collect()
}

#[track_caller]
fn assert_refused(r: &Resp, path: &str, code: Code, what: &str) {
    if r.headers.get("content-length").is_some_and(|v| v == "0") || r.body.is_empty() {
        // HEAD: no body to check.
        assert_eq!((r.status, r.code()), (code.status(), Some(code)), "{what}");
    } else if path.starts_with("/v1/") {
        r.assert_error(code);
    } else {
        r.assert_seed_error(code.status(), code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_for_every_role() {
    let (c, t, _dir) = start(1, |_| {}).await;
    let bad = format!("{}x", &t.read[..t.read.len() - 1]);
    let principals: [(&str, Option<&str>, Option<Role>, bool); 7] = [
        ("no token", None, None, false),
        ("bad token", Some(&bad), None, false),
        ("read", Some(&t.read), Some(Role::Read), false),
        ("write", Some(&t.write), Some(Role::Write), false),
        ("admin", Some(&t.admin), Some(Role::Admin), false),
        ("tenant", Some(&t.tenant), Some(Role::Write), true),
        // Admin on `tenant-a/` only: membership yes, other keys no, and
        // not `/internal/kv` (its body names keys the guard cannot see).
        (
            "tenant admin",
            Some(&t.tenant_admin),
            Some(Role::Admin),
            true,
        ),
    ];
    let mut checked = 0;
    for (method, path, body, needs) in routes() {
        for &(who, token, role, limited) in &principals {
            let r = call(&c, token, method, path, body).await;
            let what = format!(
                "{method} {path} as {who}: {} {:?}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            let expect = match (needs, role) {
                (Needs::Open, _) => None,
                (_, None) => Some(Code::Unauthorized),
                (Needs::Role(need), Some(role)) => (role < need).then_some(Code::Forbidden),
                (Needs::OtherKeys(need), Some(role)) => {
                    (role < need || limited).then_some(Code::Forbidden)
                }
            };
            match expect {
                Some(code) => assert_refused(&r, path, code, &what),
                None => assert!(
                    r.status != 401 && r.status != 403,
                    "{what}: should have passed the check"
                ),
            }
            if expect == Some(Code::Unauthorized) {
                assert!(r.headers.contains_key("www-authenticate"), "{what}");
            }
            checked += 1;
        }
    }
    eprintln!("checked {checked} route x principal pairs");

    // The tenant token inside its prefix.
    let r = call(&c, Some(&t.tenant), "PUT", "/v1/kv/tenant-a/x", "v").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&c, Some(&t.tenant), "GET", "/store/tenant-a/x", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&c, Some(&t.tenant), "GET", "/v1/kv?prefix=tenant-a/", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&c, Some(&t.tenant), "GET", "/v1/kv?prefix=tenant-", "").await;
    r.assert_error(Code::Forbidden);
    // A read token reads what a write token wrote.
    let r = call(&c, Some(&t.read), "GET", "/v1/kv/tenant-a/x", "").await;
    assert_eq!((r.status, r.text()), (200, "v".to_string()));
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_can_be_protected() {
    let (c, t, _dir) = start(1, |cfg| cfg.auth.protect_probes = true).await;
    for path in ["/livez", "/readyz", "/metrics"] {
        let r = call(&c, None, "GET", path, "").await;
        assert_eq!(
            (r.status, r.code()),
            (401, Some(Code::Unauthorized)),
            "{path}"
        );
        let r = call(&c, Some(&t.read), "GET", path, "").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    c.shutdown_all().await;
}

/// Three nodes with tokens, a cluster secret and a rate limit: the nodes
/// join (with the secret, no token), a follower forwards a client's write
/// with its token to the leader, and forwarded requests do not count
/// against the follower's IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_with_tokens_and_a_secret() {
    let (c, t, _dir) = start(3, |cfg| {
        cfg.cluster.secret = dcache::config::Secret::new("tokens-and-secret-test-0123456789");
        cfg.http.rate_limit_per_ip = 1;
        cfg.http.rate_limit_burst = 20;
    })
    .await;
    let l = c.leader().await;
    let f = (0..3).find(|i| *i != l).unwrap();
    // 18 writes through the follower, forwarded to the leader, then 18
    // straight to the leader, all from 127.0.0.1 (burst 20, 1/s): the
    // leader does not count the forwarded ones against the follower's
    // address (the same one here), or the last direct ones would be 429.
    for i in 0..18 {
        let r = call_at(&c, f, Some(&t.write), "PUT", &format!("/v1/kv/g{i}"), "v").await;
        assert_eq!(r.status, 200, "forwarded write {i}: {}", r.text());
    }
    for i in 0..18 {
        let r = call_at(&c, l, Some(&t.write), "PUT", &format!("/v1/kv/h{i}"), "v").await;
        assert_eq!(r.status, 200, "direct write {i}: {}", r.text());
    }
    let r = call_at(&c, f, None, "PUT", "/v1/kv/x", "v").await;
    r.assert_error(Code::Unauthorized);
    let r = call_at(&c, f, Some(&t.read), "PUT", "/v1/kv/x", "v").await;
    r.assert_error(Code::Forbidden);
    c.shutdown_all().await;
}

// ---------------------------------------------------------------------------
// Redis: AUTH / HELLO AUTH with the same tokens
// ---------------------------------------------------------------------------

use dcache_testkit::redis::Client as Redis;
use dcache_testkit::redis::Value;

fn err(v: &Value) -> &str {
    match v {
        Value::Error(e) => e,
        other => panic!("expected an error reply, got {other}"),
    }
}

/// Before AUTH nothing but AUTH/HELLO AUTH/QUIT runs (NOAUTH); a bad token
/// is WRONGPASS; roles and key prefixes are checked per command and per
/// key, with Redis's NOPERM words; and nothing refused ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_roles_and_prefixes() {
    let (c, t, _dir) = start(1, |_| {}).await;
    let addr = c.node(0).redis_addr.expect("redis listener");
    let mut r = Redis::connect(addr).await;
    assert_eq!(
        err(&r.cmd(&["SET", "k", "v"]).await),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        err(&r.cmd(&["PING"]).await),
        "NOAUTH Authentication required."
    );
    assert!(err(&r.cmd(&["HELLO", "3"]).await).starts_with("NOAUTH HELLO must be called"));
    let wrongpass = "WRONGPASS invalid username-password pair or user is disabled.";
    assert_eq!(err(&r.cmd(&["AUTH", "dct.writer.nope"]).await), wrongpass);
    assert_eq!(err(&r.cmd(&["AUTH", "garbage"]).await), wrongpass);
    // The user must be "default" or the token's name.
    assert_eq!(err(&r.cmd(&["AUTH", "someone", &t.write]).await), wrongpass);
    assert_eq!(
        err(&r.cmd(&["GET", "k"]).await),
        "NOAUTH Authentication required."
    );

    // A read token: reads yes, writes and CONFIG no.
    assert_eq!(r.cmd(&["AUTH", &t.read]).await, Value::ok());
    assert_eq!(r.cmd(&["GET", "k"]).await, Value::Nil);
    let noperm =
        |cmd: &str| format!("NOPERM this user has no permissions to run the '{cmd}' command");
    assert_eq!(err(&r.cmd(&["SET", "k", "v"]).await), noperm("set"));
    assert_eq!(err(&r.cmd(&["DEL", "k"]).await), noperm("del"));
    assert_eq!(
        err(&r.cmd(&["CONFIG", "GET", "maxmemory"]).await),
        noperm("config")
    );
    // A write token, as "default" and under its own name.
    assert_eq!(r.cmd(&["AUTH", "default", &t.write]).await, Value::ok());
    assert_eq!(r.cmd(&["SET", "k", "v"]).await, Value::ok());
    assert_eq!(r.cmd(&["AUTH", "writer", &t.write]).await, Value::ok());
    assert_eq!(r.cmd(&["GET", "k"]).await, Value::bulk("v"));
    // A wrong AUTH keeps the user it had (as Redis does).
    assert_eq!(err(&r.cmd(&["AUTH", "dct.writer.nope"]).await), wrongpass);
    assert_eq!(r.cmd(&["GET", "k"]).await, Value::bulk("v"));

    // The tenant token: every key of the command under tenant-a/.
    let mut r = Redis::connect(addr).await;
    let hello = r.cmd(&["HELLO", "2", "AUTH", "default", &t.tenant]).await;
    assert!(
        matches!(hello, Value::Array(_)),
        "HELLO AUTH answers the server map: {hello}"
    );
    assert_eq!(r.cmd(&["SET", "tenant-a/x", "1"]).await, Value::ok());
    let keys_refused =
        "NOPERM this user has no permissions to access one of the keys used as arguments";
    assert_eq!(err(&r.cmd(&["SET", "other", "1"]).await), keys_refused);
    assert_eq!(
        err(&r.cmd(&["MSET", "tenant-a/y", "1", "other", "2"]).await),
        keys_refused
    );
    assert_eq!(
        err(&r.cmd(&["MGET", "tenant-a/x", "k"]).await),
        keys_refused
    );
    assert_eq!(err(&r.cmd(&["DEL", "tenant-a/x", "k"]).await), keys_refused);
    assert_eq!(err(&r.cmd(&["KEYS", "*"]).await), keys_refused);
    // Nothing refused ran: "other" and "tenant-a/y" were never written, k
    // was not deleted.
    let mut admin = Redis::connect(addr).await;
    assert_eq!(admin.cmd(&["AUTH", &t.admin]).await, Value::ok());
    assert_eq!(
        admin.cmd(&["EXISTS", "other", "tenant-a/y"]).await,
        Value::Int(0)
    );
    assert_eq!(admin.cmd(&["GET", "k"]).await, Value::bulk("v"));
    assert!(matches!(
        admin.cmd(&["CONFIG", "GET", "maxmemory"]).await,
        Value::Array(_)
    ));
    // A refused command inside MULTI aborts the EXEC.
    assert_eq!(r.cmd(&["MULTI"]).await, Value::ok());
    assert_eq!(err(&r.cmd(&["SET", "other", "1"]).await), keys_refused);
    assert!(err(&r.cmd(&["EXEC"]).await).starts_with("EXECABORT"));
    // RESET forgets the user.
    assert_eq!(r.cmd(&["RESET"]).await, Value::Simple("RESET".into()));
    assert_eq!(
        err(&r.cmd(&["GET", "tenant-a/x"]).await),
        "NOAUTH Authentication required."
    );
    c.shutdown_all().await;
}

/// redis-cli's `-a TOKEN` and `--user NAME --pass TOKEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_authenticates_with_a_token() {
    if !dcache_testkit::tools::require(
        "redis_cli_authenticates_with_a_token",
        &["redis-cli"],
        "apt-get install redis-tools",
    ) {
        return;
    }
    let (c, t, _dir) = start(1, |_| {}).await;
    let port = c.node(0).redis_addr.expect("redis listener").port();
    let cli = |args: &[&str]| dcache_testkit::redis::cli(port, args);
    let (_, out) = cli(&["SET", "a", "1"]);
    assert_eq!(out, "NOAUTH Authentication required.");
    let (_, out) = cli(&["-a", &t.write, "--no-auth-warning", "SET", "a", "1"]);
    assert_eq!(out, "OK");
    let as_reader = |cmd: &[&str]| {
        let mut a = vec!["--user", "reader", "--pass", &t.read, "--no-auth-warning"];
        a.extend_from_slice(cmd);
        cli(&a)
    };
    let (_, out) = as_reader(&["GET", "a"]);
    assert_eq!(out, "1");
    let (_, out) = as_reader(&["SET", "a", "2"]);
    assert!(out.starts_with("NOPERM"), "{out}");
    // redis-cli reports the failed AUTH on stderr and still sends GET.
    let (_, out) = cli(&["-a", "dct.reader.wrong", "--no-auth-warning", "GET", "a"]);
    assert_eq!(out, "NOAUTH Authentication required.");
    c.shutdown_all().await;
}

/// Without auth.enabled, AUTH is Redis's "no password configured" error
/// and every command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_without_tokens_configured() {
    let c = TestCluster::start(1, |_| {}).await;
    let mut r = Redis::connect(c.node(0).redis_addr.unwrap()).await;
    assert!(
        err(&r.cmd(&["AUTH", "x"]).await)
            .starts_with("ERR AUTH <password> called without any password configured")
    );
    assert_eq!(r.cmd(&["SET", "k", "v"]).await, Value::ok());
    c.shutdown_all().await;
}

/// With tokens on and no cluster secret, a follower hands Redis writes to
/// the leader over the Raft port (a member's channel, which needs no
/// token), but cannot forward a read it must not answer itself (the
/// leader's `/internal/kv` is for members): the client gets an error
/// naming the fix, not a retry hint. With a secret, both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_forwarding_with_tokens_needs_the_secret() {
    // With a secret: the cluster forms with tokens on, and a follower
    // forwards an authenticated client's write.
    let (c, t, _dir) = start(3, |cfg| {
        cfg.cluster.secret = dcache::config::Secret::new("forwarding-secret-0123456789abcdef");
    })
    .await;
    let l = c.leader().await;
    let f = (0..3).find(|i| *i != l).unwrap();
    let mut r = Redis::connect(c.node(f).redis_addr.unwrap()).await;
    assert_eq!(r.cmd(&["AUTH", &t.write]).await, Value::ok());
    assert_eq!(
        r.cmd(&["SET", "k", "v"]).await,
        Value::ok(),
        "with a secret"
    );
    assert_eq!(r.cmd(&["GET", "k"]).await, Value::bulk("v"));
    c.shutdown_all().await;

    // Without one: a cluster formed before tokens were turned on, then
    // restarted with them (joins need the secret, so this is the only way
    // to get there), and with LRU eviction, so that a follower forwards
    // reads too (the leader must see every access).
    let dir = tempfile::tempdir().unwrap();
    let t = tokens(dir.path());
    let mut c = TestCluster::start(3, |_| {}).await;
    for i in 0..3 {
        c.stop(i, true).await;
    }
    for i in 0..3 {
        let cfg = &mut c.nodes[i].cfg;
        cfg.auth.enabled = true;
        cfg.auth.tokens_file = t.file.clone();
        cfg.cache.eviction_policy = dcache::config::EvictionPolicy::AllkeysLru;
        cfg.cache.max_memory = dcache::config::ByteSize(64 << 20);
        c.restart(i).await;
    }
    let l = c.leader().await;
    let f = (0..3).find(|i| *i != l).unwrap();
    let mut r = Redis::connect(c.node(f).redis_addr.unwrap()).await;
    assert_eq!(r.cmd(&["AUTH", &t.write]).await, Value::ok());
    assert_eq!(r.cmd(&["SET", "k", "v"]).await, Value::ok(), "a write");
    // The leader refuses the forwarded read, and the client is told why.
    let get = r.cmd(&["GET", "k"]).await;
    let e = err(&get);
    assert!(
        e.starts_with("ERR the leader") && e.contains("cluster.secret"),
        "{e}"
    );
    let mut r = Redis::connect(c.node(l).redis_addr.unwrap()).await;
    assert_eq!(r.cmd(&["AUTH", &t.write]).await, Value::ok());
    assert_eq!(
        r.cmd(&["GET", "k"]).await,
        Value::bulk("v"),
        "the write applied"
    );
    c.shutdown_all().await;
}
