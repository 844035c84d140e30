//! Network topology for a run: one namespace per node, a "switch" namespace
//! with a bridge, and a client veth from the root namespace onto the bridge,
//! so the harness (in the root namespace) reaches every node while faults
//! cut only node-to-node traffic.
//!
//! Addresses: a run claims the first free subnet `10.201.<x>.0/24` (x in
//! 0..=250: not routed here, and its switch namespace `dcj<x>sw` could be
//! created, which is the atomic claim), so two runs on one machine do not
//! collide. Node i (1-based) is `10.201.<x>.i`, the client side is
//! `10.201.<x>.254`. Faults are nft rules in a private table `dcj` inside
//! each node namespace; healing deletes the table. Everything created is
//! removed by [`Topology::teardown`], also called from `Drop`.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context;
use anyhow::bail;

/// The third octet of this run's subnet, set once by [`Topology::create`]
/// (one topology per process).
static OCTET: OnceLock<u8> = OnceLock::new();

fn subnet() -> String {
    format!("10.201.{}", OCTET.get().copied().unwrap_or(0))
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

pub struct Topology {
    pub prefix: String,
    pub n: usize,
    torn_down: bool,
}

impl Topology {
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    fn sw_ns(&self) -> String {
        format!("{}sw", self.prefix)
    }

    pub fn ip(i: usize) -> String {
        format!("{}.{i}", subnet())
    }

    /// Claim a free subnet: the first `10.201.<x>.0/24` that is not routed
    /// here and whose switch namespace this call creates (`ip netns add`
    /// fails when another run holds it). Returns x; the namespace exists.
    fn claim() -> anyhow::Result<u8> {
        let out = Command::new("ip").args(["route"]).output()?;
        let routes = String::from_utf8_lossy(&out.stdout).into_owned();
        for x in 0..=250u8 {
            if routes.contains(&format!("10.201.{x}.0/24")) {
                continue;
            }
            let ok = Command::new("ip")
                .args(["netns", "add", &format!("dcj{x}sw")])
                .output()
                .with_context(|| "running ip netns add")?
                .status
                .success();
            if ok {
                return Ok(x);
            }
        }
        bail!("no free subnet in 10.201.0.0/16 (ip netns list; clean up stale dcj* namespaces)")
    }

    /// Create `n` node namespaces wired to a bridge, plus the client link.
    pub fn create(n: usize) -> anyhow::Result<Topology> {
        if OCTET.get().is_some() {
            bail!("one topology per process");
        }
        let x = Self::claim()?;
        OCTET.set(x).expect("checked above");
        eprintln!("dcache-jepsen: network 10.201.{x}.0/24, namespaces dcj{x}*");
        let t = Topology {
            prefix: format!("dcj{x}"),
            n,
            torn_down: false,
        };
        let sw = t.sw_ns();
        run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        for i in 1..=n {
            let ns = t.node_ns(i);
            let (e, p) = (format!("{}e{i}", t.prefix), format!("{}p{i}", t.prefix));
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "link", "add", &e, "type", "veth", "peer", "name", &p])?;
            run(&["ip", "link", "set", &e, "netns", &ns])?;
            run(&["ip", "link", "set", &p, "netns", &sw])?;
            run(&["ip", "-n", &sw, "link", "set", &p, "master", "br0"])?;
            run(&["ip", "-n", &sw, "link", "set", &p, "up"])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Self::ip(i)),
                "dev",
                &e,
            ])?;
            run(&["ip", "-n", &ns, "link", "set", &e, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        // Client link: root namespace <-> bridge.
        let (c, cp) = (format!("{}c", t.prefix), format!("{}cp", t.prefix));
        run(&["ip", "link", "add", &c, "type", "veth", "peer", "name", &cp])?;
        run(&["ip", "link", "set", &cp, "netns", &sw])?;
        run(&["ip", "-n", &sw, "link", "set", &cp, "master", "br0"])?;
        run(&["ip", "-n", &sw, "link", "set", &cp, "up"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", Self::ip(254)),
            "dev",
            &c,
        ])?;
        run(&["ip", "link", "set", &c, "up"])?;
        Ok(t)
    }

    /// Drop packets arriving at node `to` from node `from` (one direction).
    pub fn drop_from(&self, to: usize, from: usize) -> anyhow::Result<()> {
        let ns = self.node_ns(to);
        let ip = Self::ip(from);
        run_quiet(&[
            "ip", "netns", "exec", &ns, "nft", "add", "table", "inet", "dcj",
        ]);
        run_quiet(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "add",
            "chain",
            "inet",
            "dcj",
            "input",
            "{ type filter hook input priority -10; policy accept; }",
        ]);
        run(&[
            "ip", "netns", "exec", &ns, "nft", "add", "rule", "inet", "dcj", "input", "ip",
            "saddr", &ip, "drop",
        ])
    }

    /// Cut traffic between a and b in both directions.
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.drop_from(a, b)?;
        self.drop_from(b, a)
    }

    /// Remove every fault rule.
    pub fn heal(&self) {
        for i in 1..=self.n {
            run_quiet(&[
                "ip",
                "netns",
                "exec",
                &self.node_ns(i),
                "nft",
                "delete",
                "table",
                "inet",
                "dcj",
            ]);
        }
    }

    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        // Anything still running inside a node namespace is ours: kill it,
        // so no node outlives the run.
        for i in 1..=self.n {
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &self.node_ns(i)])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    run_quiet(&["kill", "-9", pid]);
                }
            }
        }
        run_quiet(&["ip", "link", "del", &format!("{}c", self.prefix)]);
        for i in 1..=self.n {
            run_quiet(&["ip", "netns", "del", &self.node_ns(i)]);
        }
        run_quiet(&["ip", "netns", "del", &self.sw_ns()]);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}
