//! The dcache processes of a run: one per node namespace, started with
//! `ip netns exec`, configured by `DCACHE_*` variables, logging to
//! `<dir>/n<i>.log`. The harness only ever signals the PIDs it started.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;

use crate::net::Topology;

pub const HTTP_PORT: u16 = 11000;
pub const RAFT_PORT: u16 = 12000;
/// Debian's libfaketime (package `faketime`).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

pub struct NodeProc {
    pub child: Option<Child>,
    pub paused: bool,
    /// libfaketime offset this incarnation runs with, e.g. "+90s".
    #[allow(dead_code)]
    pub skew: Option<String>,
}

pub struct Db {
    pub topo: Topology,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub nodes: Vec<NodeProc>,
    pub snapshot_threshold: u64,
    pub read_policy: String,
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).output();
}

impl Db {
    pub fn new(
        topo: Topology,
        bin: PathBuf,
        dir: PathBuf,
        snapshot_threshold: u64,
        read_policy: String,
    ) -> Db {
        let n = topo.n;
        Db {
            topo,
            bin,
            dir,
            nodes: (0..n)
                .map(|_| NodeProc {
                    child: None,
                    paused: false,
                    skew: None,
                })
                .collect(),
            snapshot_threshold,
            read_policy,
        }
    }

    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    pub fn http(i: usize) -> String {
        format!("{}:{HTTP_PORT}", Topology::ip(i))
    }

    pub fn id(i: usize) -> String {
        format!("n{i}")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}"))
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i - 1].child.is_some()
    }

    /// Start node i (1-based). `join`: the HTTP address to join through
    /// (None: bootstrap if the data dir is fresh, else just restart).
    pub fn start(
        &mut self,
        i: usize,
        join: Option<String>,
        skew: Option<String>,
    ) -> anyhow::Result<()> {
        assert!(
            self.nodes[i - 1].child.is_none(),
            "node {i} already running"
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{i}.log")))?;
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
        if let Some(s) = &skew {
            // Wall clock only: Instant (monotonic) stays real.
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", s)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        cmd.env("DCACHE_NODE_ID", Self::id(i))
            .env("DCACHE_NODE_DATA_DIR", self.data_dir(i))
            .env("DCACHE_HTTP_BIND_ADDR", Self::http(i))
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
            .env("DCACHE_HTTP_REQUEST_TIMEOUT_MS", "2000")
            .env("DCACHE_SHUTDOWN_DRAIN_TIMEOUT_MS", "2000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting node {i}"))?;
        self.nodes[i - 1] = NodeProc {
            child: Some(child),
            paused: false,
            skew,
        };
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i - 1].child.take() {
            if self.nodes[i - 1].paused {
                signal(c.id(), "-CONT");
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i - 1].paused = false;
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code.
    #[allow(dead_code)]
    pub fn stop(&mut self, i: usize, timeout: Duration) -> Option<i32> {
        let mut c = self.nodes[i - 1].child.take()?;
        if self.nodes[i - 1].paused {
            signal(c.id(), "-CONT");
            self.nodes[i - 1].paused = false;
        }
        signal(c.id(), "-TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pause(&mut self, i: usize) {
        if let Some(c) = &self.nodes[i - 1].child {
            signal(c.id(), "-STOP");
            self.nodes[i - 1].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if let Some(c) = &self.nodes[i - 1].child {
            signal(c.id(), "-CONT");
        }
        self.nodes[i - 1].paused = false;
    }

    /// Whether a started process died on its own (crash): returns its code.
    pub fn exited(&mut self, i: usize) -> Option<Option<i32>> {
        let c = self.nodes[i - 1].child.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some(st.code()),
            _ => None,
        }
    }

    pub fn teardown(&mut self) {
        for i in 1..=self.n() {
            self.kill(i);
        }
        self.topo.heal();
        self.topo.teardown();
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.teardown();
    }
}
