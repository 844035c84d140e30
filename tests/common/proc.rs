//! The real `dcache` binary as child processes: [`Proc`] owns a child (its
//! `Drop` SIGKILLs and reaps it, so a failing test leaves no process
//! behind), [`Spec`] is one node's id, ports, data dir and settings, and
//! the helpers below start nodes and talk to them over HTTP. Waits poll a
//! condition under a deadline.
//!
//! Every child runs with any `DCACHE_*`/`RUST_LOG` variables of the test
//! environment removed.
//!
//! Ports: [`free_ports`] picks ports below the kernel's ephemeral range (see
//! [`super::low_port`]) and releases them before the child binds them, so a
//! node restarted on the same ports cannot find one taken by an outgoing
//! connection. Another process could still bind one in between; a child
//! that then fails to bind exits with "cannot listen", which
//! [`start_ready`] retries.

use std::fs::OpenOptions;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_dcache");
/// How long a node may take to become ready.
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
            .unwrap();
        let child = cmd.stderr(f).spawn().expect("spawn dcache");
        Proc {
            child,
            stderr: stderr.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Wait for the child to exit by itself within `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "dcache (pid {}) did not exit within {timeout:?}; stderr:\n{}",
                    self.pid(),
                    tail(&self.stderr())
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
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
            .expect("run kill");
        assert!(st.success(), "kill -{name} failed");
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

/// `n` distinct loopback ports below the ephemeral range that were free a
/// moment ago (see the module doc).
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::AtomicU16;
    // Not free_listener's counter: its own region, 6000 ports away.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let mut held = Vec::new();
    for _ in 0..2000 {
        if held.len() == n {
            break;
        }
        let port = super::low_port(&NEXT, 6_000);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    assert_eq!(held.len(), n, "no free port below the ephemeral range");
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `cmd` with a clean environment (no inherited `DCACHE_*` or `RUST_LOG`),
/// run in `cwd` with stdin and stdout closed.
fn isolated(mut cmd: Command, cwd: &Path) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("DCACHE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// `dcache` in `cwd`, with a clean environment.
pub fn dcache(cwd: &Path) -> Command {
    isolated(Command::new(BIN), cwd)
}

/// An HTTP client with a 10 s request timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One node of the real binary. Its settings (id, data dir, addresses,
/// join address) are passed as `DCACHE_*` variables, or in a YAML file
/// (see [`Spec::with_config_file`]).
#[derive(Clone)]
pub struct Spec {
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
    /// Node `id` in `dir` (cwd, and data dir `data-<id>`) on two free ports,
    /// joining `join` unless it is empty.
    pub fn new(dir: &Path, id: &str, join: &str) -> Spec {
        let p = free_ports(2);
        Spec {
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
            None => Command::new(BIN),
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
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
            .join(format!("{}-{}.stderr.log", self.id, rand::random::<u32>()));
        Proc::spawn(cmd, &stderr)
    }
}

/// Poll `/readyz` until 200. Panics (with the node's stderr) if the process
/// exits or `READY` passes.
pub async fn wait_ready(c: &reqwest::Client, spec: &Spec, p: &mut Proc) {
    let deadline = Instant::now() + READY;
    loop {
        if let Some(st) = p.exited() {
            panic!(
                "{} exited ({st:?}) before becoming ready; stderr:\n{}",
                spec.id,
                tail(&p.stderr())
            );
        }
        if let Ok(r) = c.get(spec.url("/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not ready within {READY:?}; stderr:\n{}",
            spec.id,
            tail(&p.stderr())
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Start a node and wait until it is ready, retrying a few times if it
/// lost a port to another process (see the module doc).
pub async fn start_ready(c: &reqwest::Client, spec: &Spec) -> Proc {
    for _ in 0..5 {
        let mut p = spec.spawn();
        // Give a bind failure a moment to show as an exit.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && p.exited().is_none() {
            if let Ok(r) = c.get(spec.url("/livez")).send().await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if p.exited().is_some() && p.stderr().contains("cannot listen") {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        wait_ready(c, spec, &mut p).await;
        return p;
    }
    panic!("{} could not bind its ports", spec.id);
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
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match c
            .put(spec.url(&format!("/v1/kv/{key}")))
            .body(value.to_string())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "put {key} via {} not acknowledged within {timeout:?}: {last}",
        spec.id
    );
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
