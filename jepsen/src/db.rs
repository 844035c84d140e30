//! The dcache processes of a run: one per node namespace, started with
//! `ip netns exec`, configured by `DCACHE_*` variables, logging to
//! `<dir>/n<i>.log`.
//!
//! Owns: starting nodes ([`Db::start`]) and, through [`Procs`], every node
//! process's lifetime: signals (kill, stop, pause, resume) and the record of
//! every exit, *expected* (the harness killed or stopped it) or
//! *unexpected* (it exited on its own: a crash, even if a later fault
//! restarts the node).
//!
//! Invariants: the harness only ever signals the PIDs it started; every
//! incarnation's end is recorded exactly once, and an exit is expected only
//! if the harness signalled the process while it was still alive (a process
//! found dead when the harness comes to kill it crashed); an unexpected exit
//! carries the tail of what that incarnation wrote to its log (stdout and
//! stderr). [`Procs::failures`] is the "no crash" check of the run.
//!
//! Does not: decide which node to fault (see `nemesis.rs`) or touch the
//! network (see `net.rs`).

use std::fs::File;
use std::fs::OpenOptions;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;

use crate::net::Topology;

pub const HTTP_PORT: u16 = 11000;
pub const RAFT_PORT: u16 = 12000;
pub const REDIS_PORT: u16 = 6380;
/// The nodes' `cache.expiry_tick_ms` (set explicitly: the TTL checks'
/// margin depends on it).
pub const EXPIRY_TICK_MS: u64 = 100;

/// The record of every node start and its clock skew, so a read served by a
/// node can be matched with the clock that node had. Shared with the
/// clients; cheap to clone.
#[derive(Clone, Default)]
pub struct SkewLog {
    starts: std::sync::Arc<std::sync::Mutex<Starts>>,
}

/// Per node (index 0 = n1): (start time, skew in ms), in start order.
type Starts = Vec<Vec<(Instant, i64)>>;

impl SkewLog {
    fn record(&self, i: usize, at: Instant, skew_ms: i64) {
        let mut s = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < i {
            s.resize(i, Vec::new());
        }
        s[i - 1].push((at, skew_ms));
    }

    /// The lowest skew (ms) of node `i`'s processes that may have been
    /// running at some time in `[from, to]`: the one started last at or
    /// before `from` and any started in between. `None` if none was.
    pub fn lowest(&self, i: usize, from: Instant, to: Instant) -> Option<i64> {
        let s = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        let starts = s.get(i.checked_sub(1)?)?;
        let before = starts.iter().rev().find(|(t, _)| *t <= from);
        let during = starts.iter().filter(|(t, _)| *t > from && *t <= to);
        before.into_iter().chain(during).map(|(_, k)| *k).min()
    }

    /// The skew (ms) of node `i`'s latest process.
    pub fn current(&self, i: usize) -> Option<i64> {
        let s = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        s.get(i.checked_sub(1)?)?.last().map(|(_, k)| *k)
    }
}
/// Lines of a crashed node's log shown in the report.
const TAIL_LINES: usize = 12;
/// Characters shown of each such line (Raft debug lines can be huge).
const TAIL_LINE_CHARS: usize = 300;
/// Bytes read from the end of a log for its tail.
const TAIL_BYTES: u64 = 8192;

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).output();
}

/// One running incarnation of a node.
struct Incarnation {
    child: Child,
    paused: bool,
    /// Where this incarnation's output starts in the node's log.
    log_offset: u64,
}

/// How a node process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub node: usize,
    pub pid: u32,
    /// Seconds since [`Procs::set_epoch`] when the exit was noticed.
    pub at_secs: f64,
    /// e.g. "exit status: 101", "signal: 6 (SIGABRT)".
    pub status: String,
    /// The harness killed or stopped it.
    pub expected: bool,
    /// For unexpected exits: the last lines the incarnation logged.
    pub log_tail: String,
}

impl Exit {
    /// The failure line for an unexpected exit, with its log tail.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "n{} (pid {}) exited on its own at {:.2} s with {}; last lines of n{}.log:",
            self.node, self.pid, self.at_secs, self.status, self.node
        );
        if self.log_tail.trim().is_empty() {
            s += " (nothing logged)";
        }
        for line in self.log_tail.lines() {
            s += "\n    | ";
            s += line;
        }
        s
    }
}

/// Every node process of a run, and every exit.
pub struct Procs {
    dir: PathBuf,
    nodes: Vec<Option<Incarnation>>,
    exits: Vec<Exit>,
    epoch: Instant,
}

impl Procs {
    /// `n` nodes logging to `dir/n<i>.log`.
    pub fn new(dir: PathBuf, n: usize) -> Procs {
        Procs {
            dir,
            nodes: (0..n).map(|_| None).collect(),
            exits: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// Exit times are reported relative to this (the run's clock).
    pub fn set_epoch(&mut self, epoch: Instant) {
        self.epoch = epoch;
    }

    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}.log"))
    }

    /// The node's log opened for appending, and where new output starts.
    pub fn open_log(&self, i: usize) -> std::io::Result<(File, u64)> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let offset = f.metadata()?.len();
        Ok((f, offset))
    }

    /// Takes charge of a just-started process for node `i`.
    pub fn adopt(&mut self, i: usize, child: Child, log_offset: u64) {
        self.poll_node(i);
        assert!(self.nodes[i - 1].is_none(), "n{i} is already running");
        self.nodes[i - 1] = Some(Incarnation {
            child,
            paused: false,
            log_offset,
        });
    }

    /// Notices nodes that exited on their own since the last look (each is
    /// recorded as an unexpected exit and printed); returns how many.
    pub fn poll(&mut self) -> usize {
        (1..=self.n()).filter(|&i| self.poll_node(i)).count()
    }

    /// Whether node `i` was found to have exited on its own just now.
    fn poll_node(&mut self, i: usize) -> bool {
        let Some(inc) = self.nodes[i - 1].as_mut() else {
            return false;
        };
        let status = match inc.child.try_wait() {
            Ok(Some(st)) => st,
            _ => return false,
        };
        let inc = self.nodes[i - 1].take().expect("checked above");
        let exit = self.record(i, &inc, status, false);
        println!(
            "[{:>7.2}s] db: n{i} (pid {}) EXITED ON ITS OWN with {}; see {}",
            exit.at_secs,
            exit.pid,
            exit.status,
            self.log_path(i).display()
        );
        true
    }

    fn record(&mut self, i: usize, inc: &Incarnation, status: ExitStatus, expected: bool) -> Exit {
        let exit = Exit {
            node: i,
            pid: inc.child.id(),
            at_secs: self.epoch.elapsed().as_secs_f64(),
            status: describe_status(status),
            expected,
            log_tail: if expected {
                String::new()
            } else {
                log_tail(&self.log_path(i), inc.log_offset)
            },
        };
        self.exits.push(exit.clone());
        exit
    }

    /// Whether node `i` has a live process (paused counts as live).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.poll_node(i);
        self.nodes[i - 1].is_some()
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.nodes[i - 1].as_ref().is_some_and(|n| n.paused)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i - 1].as_ref().map(|n| n.child.id())
    }

    /// SIGKILL and reap. True if a live process was killed; false if there
    /// was none, or it had already exited on its own (recorded as such).
    pub fn kill(&mut self, i: usize) -> bool {
        if self.poll_node(i) {
            return false;
        }
        let Some(mut inc) = self.nodes[i - 1].take() else {
            return false;
        };
        if inc.paused {
            signal(inc.child.id(), "-CONT");
        }
        let _ = inc.child.kill();
        match inc.child.wait() {
            Ok(status) => {
                self.record(i, &inc, status, true);
            }
            Err(e) => println!("db: waiting for n{i} after SIGKILL: {e}"),
        }
        true
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code.
    #[allow(dead_code)]
    pub fn stop(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        if self.poll_node(i) {
            return None;
        }
        let mut inc = self.nodes[i - 1].take()?;
        if inc.paused {
            signal(inc.child.id(), "-CONT");
        }
        signal(inc.child.id(), "-TERM");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(st)) = inc.child.try_wait() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = inc.child.kill();
                break inc.child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let status = status?;
        self.record(i, &inc, status, true);
        status.code()
    }

    /// SIGSTOP. True if a live process was paused.
    pub fn pause(&mut self, i: usize) -> bool {
        if self.poll_node(i) {
            return false;
        }
        match self.nodes[i - 1].as_mut() {
            Some(inc) => {
                signal(inc.child.id(), "-STOP");
                inc.paused = true;
                true
            }
            None => false,
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if let Some(inc) = self.nodes[i - 1].as_mut() {
            signal(inc.child.id(), "-CONT");
            inc.paused = false;
        }
        self.poll_node(i);
    }

    /// Every exit so far, in order.
    pub fn exits(&self) -> &[Exit] {
        &self.exits
    }

    /// The "no crash" check: one failure per unexpected exit.
    pub fn failures(&self) -> Vec<String> {
        self.exits
            .iter()
            .filter(|e| !e.expected)
            .map(Exit::describe)
            .collect()
    }

    /// Kills every node (expected exits).
    pub fn kill_all(&mut self) {
        for i in 1..=self.n() {
            self.kill(i);
        }
    }
}

fn describe_status(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!(
            "signal {s}{}",
            if st.core_dumped() {
                " (core dumped)"
            } else {
                ""
            }
        ),
        _ => format!("{st}"),
    }
}

/// The last [`TAIL_LINES`] lines written to `path` after `offset`, each cut
/// to [`TAIL_LINE_CHARS`].
fn log_tail(path: &Path, offset: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let from = offset.max(len.saturating_sub(TAIL_BYTES));
        f.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            last_lines(&lines, TAIL_LINES, TAIL_LINE_CHARS).join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The last `n` of `lines`, each cut to `max_chars` (marked `[...]`).
pub fn last_lines(lines: &[&str], n: usize, max_chars: usize) -> Vec<String> {
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| match l.char_indices().nth(max_chars) {
            Some((cut, _)) => format!("{} [...]", &l[..cut]),
            None => l.to_string(),
        })
        .collect()
}

pub struct Db {
    pub topo: Topology,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub procs: Procs,
    pub snapshot_threshold: u64,
    pub read_policy: String,
    /// libfaketime, when the clock-skew fault is enabled.
    pub libfaketime: Option<PathBuf>,
    /// Every start with its skew.
    pub skews: SkewLog,
    /// `cluster.secret` of every node (`--cluster-secret`), if any.
    pub cluster_secret: Option<String>,
    /// `--secure`: TLS and tokens on (files in [`Db::secure_dir`]).
    pub secure: bool,
}

impl Db {
    pub fn new(
        topo: Topology,
        bin: PathBuf,
        dir: PathBuf,
        snapshot_threshold: u64,
        read_policy: String,
        libfaketime: Option<PathBuf>,
    ) -> Db {
        let n = topo.n;
        Db {
            topo,
            bin,
            procs: Procs::new(dir.clone(), n),
            dir,
            snapshot_threshold,
            read_policy,
            libfaketime,
            skews: SkewLog::default(),
            cluster_secret: None,
            secure: false,
        }
    }

    /// Where `--secure` keeps the CA, certificates and tokens file.
    pub fn secure_dir(&self) -> PathBuf {
        self.dir.join("secure")
    }

    /// `--secure`: make a CA and a certificate for every node (naming its
    /// id `n<i>` and its IP) and for the harness, and a tokens file with one
    /// admin token. Returns the harness's TLS config and token.
    pub fn make_secure(
        &mut self,
        n: usize,
    ) -> anyhow::Result<(dcache::net::tls::ClientTls, String)> {
        let dir = self.secure_dir();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs.sh");
        let mut certs: Vec<(String, Option<String>)> = (1..=n)
            .map(|i| (Self::id(i), Some(format!("IP:{}", Topology::ip(i)))))
            .collect();
        certs.push(("harness".into(), None));
        for (name, san) in certs {
            let mut cmd = Command::new("bash");
            cmd.arg(&script);
            if let Some(san) = san {
                cmd.args(["--san", &san]);
            }
            let out = cmd.arg(&dir).arg(&name).output()?;
            if !out.status.success() {
                bail!(
                    "make-certs.sh {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let (token, line) = dcache::auth::new_token("harness", dcache::auth::Role::Admin, None)
            .map_err(|e| anyhow::anyhow!("token: {e}"))?;
        std::fs::write(dir.join("tokens"), format!("{line}\n"))?;
        let tls = dcache::net::tls::ClientTls::from_files(
            &dir.join("ca.crt"),
            Some((&dir.join("harness.crt"), &dir.join("harness.key"))),
        )?;
        self.secure = true;
        Ok((tls, token))
    }

    pub fn n(&self) -> usize {
        self.procs.n()
    }

    pub fn http(i: usize) -> String {
        format!("{}:{HTTP_PORT}", Topology::ip(i))
    }

    /// Node i's Redis (RESP) address.
    pub fn redis(i: usize) -> String {
        format!("{}:{REDIS_PORT}", Topology::ip(i))
    }

    pub fn id(i: usize) -> String {
        format!("n{i}")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}"))
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.procs.is_running(i)
    }

    /// Start node i (1-based). `join`: the HTTP address to join through
    /// (None: bootstrap if the data dir is fresh, else just restart).
    /// `skew`: run with the wall clock this many seconds off (libfaketime).
    pub fn start(
        &mut self,
        i: usize,
        join: Option<String>,
        skew: Option<i64>,
    ) -> anyhow::Result<()> {
        if self.procs.is_running(i) {
            bail!("n{i} is already running");
        }
        let (log, log_offset) = self.procs.open_log(i)?;
        let ns = self.topo.node_ns(i);
        let mut cmd = Command::new("ip");
        // `ip netns exec` execs the binary, so the child PID is dcache's own
        // and kill/stop/pause reach it. libfaketime is preloaded directly
        // rather than through the `faketime` wrapper, which forks: killing
        // the wrapper would orphan a still-running node.
        cmd.args(["netns", "exec", &ns])
            .arg(&self.bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        if let Some(secs) = skew {
            let Some(lib) = &self.libfaketime else {
                bail!("n{i}: clock skew requested without libfaketime");
            };
            cmd.envs(crate::faketime::env(lib, secs));
        }
        if let Some(secret) = &self.cluster_secret {
            cmd.env("DCACHE_CLUSTER_SECRET", secret);
        }
        if self.secure {
            let d = self.secure_dir();
            cmd.env(
                "DCACHE_TLS_CERT_FILE",
                d.join(format!("{}.crt", Self::id(i))),
            )
            .env(
                "DCACHE_TLS_KEY_FILE",
                d.join(format!("{}.key", Self::id(i))),
            )
            .env("DCACHE_TLS_CA_FILE", d.join("ca.crt"))
            .env("DCACHE_TLS_CLIENT_AUTH", "required")
            .env("DCACHE_AUTH_ENABLED", "true")
            .env("DCACHE_AUTH_TOKENS_FILE", d.join("tokens"));
        }
        cmd.env("DCACHE_NODE_ID", Self::id(i))
            .env("DCACHE_NODE_DATA_DIR", self.data_dir(i))
            .env("DCACHE_HTTP_BIND_ADDR", Self::http(i))
            .env("DCACHE_REDIS_BIND_ADDR", Self::redis(i))
            .env(
                "DCACHE_RAFT_BIND_ADDR",
                format!("{}:{RAFT_PORT}", Topology::ip(i)),
            )
            .env("DCACHE_CLUSTER_JOIN_ADDR", join.unwrap_or_default())
            .env("DCACHE_CLUSTER_JOIN_RETRY_MAX_MS", "500")
            .env("DCACHE_RAFT_HEARTBEAT_INTERVAL_MS", "100")
            .env("DCACHE_RAFT_ELECTION_TIMEOUT_MIN_MS", "500")
            .env("DCACHE_RAFT_ELECTION_TIMEOUT_MAX_MS", "1000")
            .env(
                "DCACHE_RAFT_SNAPSHOT_THRESHOLD",
                self.snapshot_threshold.to_string(),
            )
            .env("DCACHE_RAFT_READ_POLICY", &self.read_policy)
            .env("DCACHE_CACHE_EXPIRY_TICK_MS", EXPIRY_TICK_MS.to_string())
            .env("DCACHE_HTTP_REQUEST_TIMEOUT_MS", "2000")
            .env("DCACHE_SHUTDOWN_DRAIN_TIMEOUT_MS", "2000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Recorded before the process exists: it cannot serve anything
        // earlier than this.
        self.skews
            .record(i, Instant::now(), skew.unwrap_or(0).saturating_mul(1000));
        let child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
        self.procs.adopt(i, child, log_offset);
        Ok(())
    }

    pub fn teardown(&mut self) {
        self.procs.kill_all();
        self.topo.heal();
        self.topo.teardown();
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Form the cluster: n1 bootstraps, the others join through it; returns
/// once all `n` are voters and the membership has settled.
pub(crate) async fn form_cluster(
    db: &std::sync::Arc<tokio::sync::Mutex<Db>>,
    api: &crate::client::Api,
    n: usize,
) -> anyhow::Result<()> {
    use crate::wait_until;
    db.lock().await.start(1, None, None)?;
    let n1 = Db::http(1);
    if !wait_until(Duration::from_secs(20), || api.ready(&n1)).await {
        bail!("n1 did not become ready");
    }
    for i in 2..=n {
        db.lock().await.start(i, Some(Db::http(1)), None)?;
    }
    let formed = wait_until(Duration::from_secs(60), || async {
        let Some(v) = api.json(&Db::http(1), "/v1/cluster").await else {
            return false;
        };
        let voters = v["members"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|x| x["role"] == "voter").count());
        voters == n && v["membership_settled"] == true
    })
    .await;
    if !formed {
        bail!("the cluster did not form with {n} voters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_log_lowest_covers_restarts_during_an_op() {
        let log = SkewLog::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        log.record(2, at(0), 0);
        log.record(2, at(100), -90_000);
        log.record(2, at(200), 90_000);
        assert_eq!(log.lowest(2, at(50), at(60)), Some(0));
        assert_eq!(log.lowest(2, at(150), at(250)), Some(-90_000));
        assert_eq!(log.lowest(2, at(250), at(300)), Some(90_000));
        assert_eq!(log.lowest(2, at(50), at(150)), Some(-90_000));
        assert_eq!(log.current(2), Some(90_000));
        assert_eq!(log.lowest(1, at(50), at(60)), None);
        assert_eq!(log.lowest(3, at(50), at(60)), None);
    }

    /// A scratch log directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir()
                .join(format!("dcache-jepsen-procs-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Starts `sh -c script` as node `i`, logging like a node.
    fn spawn(p: &mut Procs, i: usize, script: &str) {
        let (log, offset) = p.open_log(i).unwrap();
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        p.adopt(i, child, offset);
    }

    fn wait_exit(p: &mut Procs, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.is_running(i) {
            assert!(Instant::now() < deadline, "n{i} did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn killed_by_the_harness_is_expected() {
        let d = Dir::new("kill");
        let mut p = Procs::new(d.0.clone(), 2);
        spawn(&mut p, 1, "exec sleep 30");
        spawn(&mut p, 2, "exec sleep 30");
        assert!(p.is_running(1));
        assert!(p.pause(1));
        assert!(p.kill(1), "a paused node is killed too");
        assert_eq!(p.stop(2, Duration::from_secs(5)), None, "SIGTERM: no code");
        assert!(!p.is_running(1) && !p.is_running(2));
        assert_eq!(p.poll(), 0);
        assert_eq!(p.exits().len(), 2);
        assert!(p.exits().iter().all(|e| e.expected));
        assert!(p.failures().is_empty(), "{:?}", p.failures());
        assert!(!p.kill(1), "nothing left to kill");
    }

    #[test]
    fn a_crash_is_a_failure_with_the_log_tail() {
        let d = Dir::new("crash");
        let mut p = Procs::new(d.0.clone(), 1);
        // An earlier incarnation's output is not part of the tail.
        spawn(&mut p, 1, "echo old incarnation; exec sleep 30");
        assert!(p.kill(1));
        spawn(
            &mut p,
            1,
            "echo starting; printf '%0500d\\n' 0; echo 'panicked at boom' >&2; exit 101",
        );
        wait_exit(&mut p, 1);
        let failures = p.failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        let f = &failures[0];
        assert!(f.starts_with("n1 (pid "), "{f}");
        assert!(f.contains("exited on its own"), "{f}");
        assert!(f.contains("exit status 101"), "{f}");
        assert!(f.contains("| starting\n    | 000"), "{f}");
        assert!(f.contains("000 [...]\n    | panicked at boom"), "{f}");
        assert!(!f.contains(&"0".repeat(301)), "long lines are cut: {f}");
        assert!(!f.contains("old incarnation"), "{f}");
    }

    /// The case that used to slip through: a node crashes, then a kill or
    /// restart fault comes along and the crash was forgotten.
    #[test]
    fn a_crash_stays_a_failure_after_a_later_kill_and_restart() {
        let d = Dir::new("later");
        let mut p = Procs::new(d.0.clone(), 2);
        spawn(&mut p, 1, "exit 3");
        spawn(&mut p, 2, "kill -SEGV $$");
        std::thread::sleep(Duration::from_millis(300));
        // The nemesis comes to kill n1: it is found dead, not killed.
        assert!(!p.kill(1));
        // n2 is restarted without anyone having looked at it.
        spawn(&mut p, 2, "exec sleep 30");
        assert!(p.kill(2));
        let failures = p.failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("n1") && failures[0].contains("exit status 3"));
        assert!(failures[1].contains("n2") && failures[1].contains("signal 11"));
        assert!(failures[0].contains("(nothing logged)"));
        let expected: Vec<_> = p.exits().iter().filter(|e| e.expected).collect();
        assert_eq!(expected.len(), 1, "only the second n2 was killed");
    }

    #[test]
    fn poll_records_each_exit_once() {
        let d = Dir::new("poll");
        let mut p = Procs::new(d.0.clone(), 2);
        spawn(&mut p, 1, "exit 0");
        spawn(&mut p, 2, "exec sleep 30");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(p.poll(), 1);
        assert_eq!(p.poll(), 0);
        assert!(!p.is_running(1) && p.is_running(2));
        p.kill_all();
        assert_eq!(p.failures().len(), 1, "an exit 0 on its own is a crash too");
    }
}
