//! The real `dcache` binary as child processes.
//!
//! [`Proc`] owns a child: its `Drop` SIGKILLs and reaps it, so a failing
//! test leaves no process behind. [`Spec`] is one node's binary, id,
//! ports, data dir and settings; the functions below start nodes and talk
//! to them over HTTP. Every wait is a condition under a deadline.
//!
//! Every child runs with any `DCACHE_*`/`RUST_LOG` variables of the test
//! environment removed, in its own working directory, stdin and stdout
//! closed, stderr appended to one file per start (see [`Proc::stderr`]).
//!
//! Ports: [`Spec::new`] takes two from [`crate::ports::free_ports`], which
//! releases them before the child binds them; another process could bind
//! one in between, so a child that exits with "cannot listen" is started
//! again by [`start_ready`] once the ports are free.

use std::fs::OpenOptions;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;

use crate::ports::free_ports;
use crate::wait;

/// How long a node may take to become ready (and other process waits).
pub const READY: Duration = Duration::from_secs(30);

/// A child process, SIGKILLed and reaped on drop if still running.
pub struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with its stderr appended to the file `stderr`.
    pub fn spawn(mut cmd: Command, stderr: &Path) -> Proc {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr)
            .unwrap_or_else(|e| panic!("open {}: {e}", stderr.display()));
        let child = cmd
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        Proc {
            child,
            stderr: stderr.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its exit status, if it has exited (reaps it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Wait for the child to exit by itself within `timeout`; panics (with
    /// its stderr, after killing it) if it does not.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let r = wait::until(timeout, || {
            let st = self.exited();
            async move { st.ok_or(()) }
        })
        .await;
        match r {
            Ok(st) => st,
            Err(()) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "process {} did not exit within {timeout:?}; stderr:\n{}",
                    self.pid(),
                    tail(&self.stderr())
                );
            }
        }
    }

    /// Wait for the child to exit by itself within `timeout`: its exit
    /// status and stderr.
    pub async fn outcome(mut self, timeout: Duration) -> (ExitStatus, String) {
        let st = self.wait_exit(timeout).await;
        (st, self.stderr())
    }

    /// Send `SIG<name>` (`TERM`, `INT`, ...) through `kill(1)`.
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(st.success(), "kill -{name} {} failed", self.pid());
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// SIGKILL (kill -9), and reap.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM and expect exit code 0 within `timeout`.
    pub async fn stop_gracefully(&mut self, timeout: Duration) {
        self.sigterm();
        let start = Instant::now();
        let st = self.wait_exit(timeout).await;
        assert_eq!(
            st.code(),
            Some(0),
            "SIGTERM exit status {st:?} after {:?}; stderr:\n{}",
            start.elapsed(),
            tail(&self.stderr())
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last 40 lines of `s`.
pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A unique number within this process (file names).
pub fn unique() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `cmd` with a clean environment (no inherited `DCACHE_*` or `RUST_LOG`;
/// `DCACHE_REDIS_BIND_ADDR=127.0.0.1:0`), run in `cwd` with stdin and stdout closed.
pub fn isolated(mut cmd: Command, cwd: &Path) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("DCACHE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    // Every node gets its own ephemeral Redis port unless the test sets
    // one (the default, localhost:6380, would clash between nodes).
    cmd.env("DCACHE_REDIS_BIND_ADDR", "127.0.0.1:0");
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// The binary `bin` run in `cwd`, with a clean environment.
pub fn command(bin: &Path, cwd: &Path) -> Command {
    isolated(Command::new(bin), cwd)
}

/// Run `cmd` to completion (it must exit by itself within `timeout`, a
/// bound that only catches a hang); its stderr goes to a file in `dir`.
/// Returns its status and stderr.
pub async fn run_to_exit(cmd: Command, dir: &Path, timeout: Duration) -> (ExitStatus, String) {
    let path = dir.join(format!("stderr-{}.log", unique()));
    Proc::spawn(cmd, &path).outcome(timeout).await
}

/// One node of the real binary. Its settings (id, data dir, addresses,
/// join address) are passed as `DCACHE_*` variables, or in a YAML file
/// (see [`Spec::with_config_file`]).
#[derive(Clone, Debug)]
pub struct Spec {
    /// The `dcache` binary (see [`crate::dcache_bin`]).
    pub bin: PathBuf,
    pub id: String,
    pub http: String,
    pub raft: String,
    /// Working directory; also holds one stderr file per start.
    pub cwd: PathBuf,
    pub data_dir: PathBuf,
    pub join: String,
    /// Further environment variables.
    pub env: Vec<(String, String)>,
    /// Program and arguments to run the binary under (e.g. `fiu-run -x`).
    pub wrapper: Vec<String>,
    /// (flag, YAML file) when the settings are in a file.
    pub config: Option<(String, PathBuf)>,
}

impl Spec {
    /// Node `id` of `bin` in `dir` (cwd, and data dir `data-<id>`) on two
    /// free ports, joining `join` unless it is empty.
    pub fn new(bin: &Path, dir: &Path, id: &str, join: &str) -> Spec {
        let p = free_ports(2);
        Spec {
            bin: bin.to_path_buf(),
            id: id.into(),
            http: format!("127.0.0.1:{}", p[0]),
            raft: format!("127.0.0.1:{}", p[1]),
            cwd: dir.to_path_buf(),
            data_dir: dir.join(format!("data-{id}")),
            join: join.into(),
            env: Vec::new(),
            wrapper: Vec::new(),
            config: None,
        }
    }

    pub fn with_env(mut self, k: &str, v: &str) -> Spec {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn with_envs(self, kvs: &[(&str, &str)]) -> Spec {
        kvs.iter().fold(self, |s, (k, v)| s.with_env(k, v))
    }

    /// Write the settings to `<cwd>/<id>.yaml` and pass that file with
    /// `flag` (`--config`, `-config`, or `-config=` joined to the path)
    /// instead of as variables.
    pub fn with_config_file(mut self, flag: &str) -> Spec {
        let path = self.cwd.join(format!("{}.yaml", self.id));
        let yaml = format!(
            "node:\n  id: {:?}\n  data_dir: {:?}\nhttp:\n  bind_addr: {:?}\nraft:\n  bind_addr: {:?}\ncluster:\n  join_addr: {:?}\n",
            self.id,
            self.data_dir.display().to_string(),
            self.http,
            self.raft,
            self.join
        );
        std::fs::write(&path, yaml).unwrap();
        self.config = Some((flag.into(), path));
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn spawn(&self) -> Proc {
        let cmd = match self.wrapper.split_first() {
            None => Command::new(&self.bin),
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(&self.bin);
                c
            }
        };
        let mut cmd = isolated(cmd, &self.cwd);
        match &self.config {
            Some((flag, path)) if flag.ends_with('=') => {
                cmd.arg(format!("{flag}{}", path.display()));
            }
            Some((flag, path)) => {
                cmd.arg(flag).arg(path);
            }
            None => {
                cmd.env("DCACHE_NODE_ID", &self.id)
                    .env("DCACHE_NODE_DATA_DIR", &self.data_dir)
                    .env("DCACHE_HTTP_BIND_ADDR", &self.http)
                    .env("DCACHE_RAFT_BIND_ADDR", &self.raft);
                if !self.join.is_empty() {
                    cmd.env("DCACHE_CLUSTER_JOIN_ADDR", &self.join);
                }
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // One stderr file per start, so each run's log can be checked alone.
        let stderr = self
            .cwd
            .join(format!("{}-{}.stderr.log", self.id, unique()));
        Proc::spawn(cmd, &stderr)
    }

    /// Start a node that is expected to refuse to start: its exit status
    /// and stderr.
    pub async fn start_expect_exit(&self) -> (ExitStatus, String) {
        self.spawn().outcome(READY).await
    }
}

/// Wait until `/readyz` answers 200. Panics (with the node's stderr) if the
/// process exits first or [`READY`] passes.
pub async fn wait_ready(c: &reqwest::Client, spec: &Spec, p: &mut Proc) {
    // Ok(Err(..)): exited, which ends the wait at once.
    let r = wait::until(READY, || {
        let exited = p.exited();
        let url = spec.url("/readyz");
        async move {
            if let Some(st) = exited {
                return Ok(Err(format!("exited ({st:?}) before becoming ready")));
            }
            match c.get(url).send().await {
                Ok(r) if r.status() == 200 => Ok(Ok(())),
                Ok(r) => Err(format!("/readyz answered {}", r.status())),
                Err(e) => Err(format!("/readyz: {e}")),
            }
        }
    })
    .await;
    let why = match r {
        Ok(Ok(())) => return,
        Ok(Err(why)) => why,
        Err(last) => format!("not ready within {READY:?} ({last})"),
    };
    panic!("{}: {why}; stderr:\n{}", spec.id, tail(&p.stderr()));
}

/// Start a node and wait until it is ready; if it lost one of its ports
/// to another process ("cannot listen"), start it again once both ports
/// can be bound (a few times).
pub async fn start_ready(c: &reqwest::Client, spec: &Spec) -> Proc {
    for _attempt in 0..5 {
        let mut p = spec.spawn();
        // Either it serves /livez or it exits (a bind failure shows fast).
        let exited = wait::wait_for(&format!("{} to serve or exit", spec.id), READY, || {
            let st = p.exited();
            let url = spec.url("/livez");
            async move {
                if let Some(st) = st {
                    return Some(Some(st));
                }
                let live = c.get(url).send().await.is_ok_and(|r| r.status() == 200);
                live.then_some(None)
            }
        })
        .await;
        if exited.is_some() && p.stderr().contains("cannot listen") {
            let addrs = [spec.http.clone(), spec.raft.clone()];
            wait::wait_for(&format!("ports of {} free", spec.id), READY, || {
                let free = addrs
                    .iter()
                    .all(|a| std::net::TcpListener::bind(a.as_str()).is_ok());
                async move { free.then_some(()) }
            })
            .await;
            continue;
        }
        wait_ready(c, spec, &mut p).await;
        return p;
    }
    panic!("{} could not bind its ports", spec.id);
}

/// Specs of `n` nodes in `dir` made by `node(dir, id, join)`: `node1`
/// bootstraps, the others join it.
pub fn nodes(dir: &Path, n: usize, node: impl Fn(&Path, &str, &str) -> Spec) -> Vec<Spec> {
    let first = node(dir, "node1", "");
    let join = first.http.clone();
    let mut specs = vec![first];
    specs.extend((2..=n).map(|i| node(dir, &format!("node{i}"), &join)));
    specs
}

/// Start every node of `specs` in order, each ready before the next.
pub async fn start_all(c: &reqwest::Client, specs: &[Spec]) -> Vec<Proc> {
    let mut procs = Vec::new();
    for s in specs {
        procs.push(start_ready(c, s).await);
    }
    procs
}

/// One PUT: its status, or None if the request failed.
pub async fn put(c: &reqwest::Client, spec: &Spec, key: &str, value: &str) -> Option<u16> {
    c.put(spec.url(&format!("/v1/kv/{key}")))
        .body(value.to_string())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// PUT a key, retrying until acknowledged (2xx) or `timeout`.
pub async fn put_ok(c: &reqwest::Client, spec: &Spec, key: &str, value: &str, timeout: Duration) {
    let what = format!("put {key} via {} to be acknowledged", spec.id);
    wait::wait_ok(&what, timeout, || async {
        let r = c
            .put(spec.url(&format!("/v1/kv/{key}")))
            .body(value.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().is_success() {
            return Ok(());
        }
        Err(format!(
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ))
    })
    .await
}

/// Default (linearizable) read: (status, body).
pub async fn get(c: &reqwest::Client, spec: &Spec, key: &str) -> (u16, String) {
    let r = c
        .get(spec.url(&format!("/v1/kv/{key}")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key} from {}: {e}", spec.id));
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `GET path` as JSON, or None (no answer, not 2xx, not JSON).
pub async fn get_json(c: &reqwest::Client, spec: &Spec, path: &str) -> Option<Value> {
    let r = c.get(spec.url(path)).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    serde_json::from_slice(&r.bytes().await.ok()?).ok()
}

/// Index of the node whose `/health` says it is the leader, among `alive`.
pub async fn leader_among(c: &reqwest::Client, specs: &[Spec], alive: &[usize]) -> Option<usize> {
    for &i in alive {
        if let Some(h) = get_json(c, &specs[i], "/health").await
            && h["is_leader"] == true
        {
            return Some(i);
        }
    }
    None
}

/// Wait (up to `timeout`) for a leader among `alive`.
pub async fn wait_leader(
    c: &reqwest::Client,
    specs: &[Spec],
    alive: &[usize],
    timeout: Duration,
) -> usize {
    wait::wait_for(&format!("a leader among {alive:?}"), timeout, || {
        leader_among(c, specs, alive)
    })
    .await
}

/// Wait (up to `timeout`) until the leader among `specs` reports exactly
/// `n` voters and no membership change in flight; returns the voters' ids,
/// sorted.
pub async fn wait_voters(
    c: &reqwest::Client,
    specs: &[Spec],
    n: usize,
    timeout: Duration,
) -> Vec<String> {
    let all: Vec<usize> = (0..specs.len()).collect();
    wait::wait_ok(&format!("{n} voters"), timeout, || async {
        let l = leader_among(c, specs, &all)
            .await
            .ok_or_else(|| "no leader".to_string())?;
        let st = get_json(c, &specs[l], "/v1/cluster")
            .await
            .ok_or_else(|| format!("no /v1/cluster from {}", specs[l].id))?;
        let mut voters: Vec<String> = st["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "voter")
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        voters.sort();
        if voters.len() == n && st["membership_settled"] == true {
            Ok(voters)
        } else {
            Err(format!(
                "voters {voters:?}, settled {}",
                st["membership_settled"]
            ))
        }
    })
    .await
}
