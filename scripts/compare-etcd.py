#!/usr/bin/env python3
"""Side-by-side benchmark of dcache and etcd on this machine (issue 9, part 1).

Usage: scripts/compare-etcd.py [--duration S] [--rounds N] [--keys N] [--quick] ...

In ONE invocation, for each round and each system ALTERNATELY (never both at
once; the order flips every round so that drift on a shared machine does not
favour one system):
  * start a fresh 3-member cluster on loopback in a temp dir: etcd (Debian's
    etcd-server, default fsync, --quota-backend-bytes 8 GiB) or dcache
    (scripts/cluster.sh, the release binary);
  * prefill the key space (--keys keys of 100 B, and --big-keys keys of 16 KiB
    under the prefix "big-");
  * run every workload with `dcache bench --json --target dcache|etcd`
    against all three members: put and linearizable get at 1/16/64/256
    connections, stale get at 64 (etcd: serializable), a 90/10 get/put mix
    at 64, put and get at 64 with 16 KiB values;
  * for each case record ops/s, p50/p99/max, errors, the servers' CPU seconds
    (utime + stime of the three server processes from /proc/PID/stat, after
    minus before) per 1,000 ops, and the generator's own CPU (getrusage,
    reported by dcache bench);
  * stop the servers (by PID) and delete their dirs.
Then it prints a markdown table of the medians across rounds with dcache/etcd
ratios, writes it into docs/BENCHMARKS.md (section "dcache vs etcd", replaced
on each run) and draws two charts into docs/: throughput vs connections
(compare-etcd-throughput.png) and the latency CDF of put and get at 64
connections (compare-etcd-cdf.png).

Needs: Linux (/proc), cargo, curl not needed. Installs etcd-server with apt-get
(as root) and matplotlib with pip when missing. --quick is a smoke check
(few keys, 2 s cases); its numbers mean little.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import replace_section

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "dcache")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECTION = "## dcache vs etcd"
BIG = 16 * 1024
SMALL = 100

# name, op, connections, extra bench flags, value size, big key space?
CASES = (
    [(f"put c{c}", "put", c, [], SMALL, False) for c in (1, 16, 64, 256)]
    + [(f"get c{c}", "get", c, [], SMALL, False) for c in (1, 16, 64, 256)]
    + [
        ("stale get c64", "get", 64, ["--stale"], SMALL, False),
        ("mix 90/10 c64", "mix", 64, ["--get-ratio", "0.9"], SMALL, False),
        ("put 16KiB c64", "put", 64, [], BIG, True),
        ("get 16KiB c64", "get", 64, [], BIG, True),
    ]
)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg):
    print(f"compare-etcd.py: {msg}", file=sys.stderr)
    sys.exit(1)


def ensure_tools(skip_build):
    if shutil.which("etcd") is None:
        if os.geteuid() != 0:
            die("etcd is missing: apt-get install etcd-server (needs root)")
        log("installing etcd-server with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "etcd-server"], check=True, env=env)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("installing matplotlib from PyPI")
        pip = [sys.executable, "-m", "pip", "install", "-q", "matplotlib"]
        if subprocess.run(pip).returncode != 0:
            # Debian marks the system Python as externally managed (PEP 668).
            subprocess.run(pip + ["--break-system-packages"], check=True)
    if not skip_build:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=REPO, check=True)
    if not os.access(BIN, os.X_OK):
        die(f"{BIN} is missing (run without --no-build)")


def proc_cpu_s(pid):
    """utime + stime of a live process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces: split after its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200 and b"true" in r.read()
    except OSError:
        return False


class Etcd:
    name = "etcd"

    def __init__(self, port_base):
        self.dir = tempfile.mkdtemp(prefix="compare-etcd.")
        self.client = [port_base + n for n in (1, 2, 3)]
        self.peer = [port_base + 10 + n for n in (1, 2, 3)]
        self.procs = []
        self.logs = []

    def addrs(self):
        return [f"127.0.0.1:{p}" for p in self.client]

    def start(self):
        initial = ",".join(f"e{n}=http://127.0.0.1:{self.peer[n - 1]}" for n in (1, 2, 3))
        for n in (1, 2, 3):
            c, p = self.client[n - 1], self.peer[n - 1]
            cmd = [
                "etcd",
                "--name", f"e{n}",
                "--data-dir", os.path.join(self.dir, f"e{n}"),
                "--listen-client-urls", f"http://127.0.0.1:{c}",
                "--advertise-client-urls", f"http://127.0.0.1:{c}",
                "--listen-peer-urls", f"http://127.0.0.1:{p}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "compare-etcd",
                "--quota-backend-bytes", str(8 * 1024**3),
            ]
            logf = open(os.path.join(self.dir, f"e{n}.log"), "w")
            self.logs.append(logf)
            self.procs.append(
                subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
            )
        wait_until(
            lambda: all(http_ok(f"http://127.0.0.1:{c}/health") for c in self.client),
            60,
            "3 healthy etcd members",
        )

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.logs:
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Dcache:
    name = "dcache"

    def __init__(self, http_base, raft_base):
        self.dir = tempfile.mkdtemp(prefix="compare-dcache.")
        self.http_base, self.raft_base = http_base, raft_base
        self.env = dict(
            os.environ,
            CLUSTER_BIN=BIN,
            CLUSTER_HTTP_PORT_BASE=str(http_base),
            CLUSTER_RAFT_PORT_BASE=str(raft_base),
        )

    def addrs(self):
        return [f"localhost:{self.http_base + n}" for n in (1, 2, 3)]

    def start(self):
        subprocess.run(
            [os.path.join(REPO, "scripts", "cluster.sh"), "start", self.dir],
            env=self.env, check=True, stdout=subprocess.DEVNULL,
        )

    def pids(self):
        out = []
        for n in (1, 2, 3):
            with open(os.path.join(self.dir, f"node{n}.pid")) as f:
                out.append(int(f.read().strip()))
        return out

    def stop(self):
        subprocess.run(
            [os.path.join(REPO, "scripts", "cluster.sh"), "stop", self.dir],
            env=self.env, stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(system, args, extra, timeout):
    cmd = [BIN, "bench", "--target", system.name, "--addrs", ",".join(system.addrs()),
           "--json"] + [str(a) for a in extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def prefill(system, a):
    # --duration 0: the preload only, no measured request.
    for prefix, keys, size in (("bench-", a.keys, SMALL), ("big-", a.big_keys, BIG)):
        t0 = time.monotonic()
        bench(system, a, ["--op", "get", "--preload", "--duration", "0", "--connections", 64,
                          "--keys", keys, "--key-prefix", prefix, "--value-size", size], 1800)
        log(f"  prefilled {keys} keys of {size} B in {time.monotonic() - t0:.1f} s")


def run_case(system, a, case, cdf_path, seed):
    name, op, conns, extra, size, big = case
    keys, prefix = (a.big_keys, "big-") if big else (a.keys, "bench-")
    pids = system.pids()
    before = sum(proc_cpu_s(p) for p in pids)
    rep = bench(system, a, ["--op", op, "--connections", conns, "--duration", a.duration,
                            "--max-requests", 100_000_000, "--keys", keys, "--key-prefix", prefix,
                            "--value-size", size, "--latency-cdf", cdf_path, "--seed", seed] + extra,
                a.duration + 120)
    server_cpu = sum(proc_cpu_s(p) for p in pids) - before
    ops = rep["requests"] - rep["errors"]
    rep["server_cpu_s"] = server_cpu
    rep["server_cpu_per_1k"] = server_cpu / ops * 1000 if ops else float("nan")
    rep["client_cpu_per_1k"] = rep["client_cpu_s"] / ops * 1000 if ops else float("nan")
    total = server_cpu + rep["client_cpu_s"]
    rep["client_share"] = rep["client_cpu_s"] / total if total else float("nan")
    with open(cdf_path) as f:
        rep["cdf"] = [(float(r["percentile"]), float(r["latency_ms"])) for r in csv.DictReader(f)]
    log(f"  {system.name:6} {name:14} {rep['ops_per_sec']:9.0f} ops/s  p50 {rep['p50_ms']:.2f}"
        f"  p99 {rep['p99_ms']:.2f}  max {rep['max_ms']:.1f} ms  err {rep['errors']}"
        f"  server {rep['server_cpu_per_1k']:.3f} s/1k  gen {100 * rep['client_share']:.0f}%")
    return rep


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def median(xs):
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def fmt(v, spec):
    return "n/a" if v != v else format(v, spec)


def ratio(d, e):
    return "n/a" if not e or e != e or d != d else f"{d / e:.2f}×"


def summarize(results):
    """{system: {case: {metric: median}}}; errors are summed over rounds."""
    out = {}
    for sysname, by_case in results.items():
        out[sysname] = {}
        for name, reps in by_case.items():
            m = {k: median([r[k] for r in reps]) for k in
                 ("ops_per_sec", "p50_ms", "p99_ms", "max_ms", "server_cpu_per_1k",
                  "client_cpu_per_1k", "client_share")}
            m["errors"] = sum(r["errors"] for r in reps)
            m["rounds"] = len(reps)
            # The CDF: per percentile, the median over rounds.
            m["cdf"] = [(pts[0][0], median([p[1] for p in pts])) for pts in
                        zip(*[r["cdf"] for r in reps])] if all(r["cdf"] for r in reps) else []
            out[sysname][name] = m
    return out


def tables(s):
    e, d = s.get("etcd", {}), s.get("dcache", {})
    rows = ["| workload | etcd ops/s | dcache ops/s | dcache ÷ etcd | etcd p50 / p99 / max ms "
            "| dcache p50 / p99 / max ms | errors etcd / dcache |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    cpu = ["| workload | etcd server CPU s / 1k ops | dcache server CPU s / 1k ops "
           "| dcache ÷ etcd | generator CPU s / 1k ops (etcd / dcache) "
           "| generator share of all CPU (etcd / dcache) |",
           "|---|---:|---:|---:|---:|---:|"]
    nan = float("nan")
    for case in CASES:
        n = case[0]
        em, dm = e.get(n, {}), d.get(n, {})
        g = lambda m, k: m.get(k, nan)  # noqa: E731
        lat = lambda m: (f"{fmt(g(m, 'p50_ms'), '.2f')} / {fmt(g(m, 'p99_ms'), '.2f')} / "  # noqa: E731
                         f"{fmt(g(m, 'max_ms'), '.1f')}")
        rows.append(
            f"| {n} | {fmt(g(em, 'ops_per_sec'), ',.0f')} | {fmt(g(dm, 'ops_per_sec'), ',.0f')} "
            f"| {ratio(g(dm, 'ops_per_sec'), g(em, 'ops_per_sec'))} | {lat(em)} | {lat(dm)} "
            f"| {em.get('errors', 'n/a')} / {dm.get('errors', 'n/a')} |")
        cpu.append(
            f"| {n} | {fmt(g(em, 'server_cpu_per_1k'), '.3f')} "
            f"| {fmt(g(dm, 'server_cpu_per_1k'), '.3f')} "
            f"| {ratio(g(dm, 'server_cpu_per_1k'), g(em, 'server_cpu_per_1k'))} "
            f"| {fmt(g(em, 'client_cpu_per_1k'), '.3f')} / {fmt(g(dm, 'client_cpu_per_1k'), '.3f')} "
            f"| {fmt(100 * g(em, 'client_share'), '.0f')} % / "
            f"{fmt(100 * g(dm, 'client_share'), '.0f')} % |")
    return "\n".join(rows), "\n".join(cpu)


def charts(s, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"etcd": "tab:blue", "dcache": "tab:orange"}
    conns = [1, 16, 64, 256]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, op in zip(axes, ("put", "get")):
        for sysname in ("etcd", "dcache"):
            ys = [s.get(sysname, {}).get(f"{op} c{c}", {}).get("ops_per_sec", float("nan"))
                  for c in conns]
            ax.plot(conns, ys, marker="o", label=sysname, color=colors[sysname])
        ax.set_xscale("log", base=2)
        ax.set_xticks(conns, [str(c) for c in conns])
        ax.set_xlabel("connections")
        ax.set_ylabel("ops/s (median of rounds)")
        ax.set_title("put (100 B)" if op == "put" else "linearizable get (100 B)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("dcache vs etcd, 3 nodes on one machine: throughput vs connections")
    fig.tight_layout()
    tp = os.path.join(out_dir, "compare-etcd-throughput.png")
    fig.savefig(tp, dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, case in zip(axes, ("put c64", "get c64")):
        for sysname in ("etcd", "dcache"):
            pts = s.get(sysname, {}).get(case, {}).get("cdf", [])
            if pts:
                ax.plot([p[1] for p in pts], [p[0] / 100 for p in pts], label=sysname,
                        color=colors[sysname])
        ax.set_xscale("log")
        ax.set_xlabel("latency ms (log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{case.replace(' c', ', ')} connections")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle("latency CDF (per percentile, median of rounds)")
    fig.tight_layout()
    cp = os.path.join(out_dir, "compare-etcd-cdf.png")
    fig.savefig(cp, dpi=100)
    plt.close(fig)
    return tp, cp


def machine_facts():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    etcd_v = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
    etcd_v = etcd_v.splitlines()[0] if etcd_v else "etcd ?"
    fs = subprocess.run(["df", "-PT", tempfile.gettempdir()], capture_output=True, text=True)
    fs = fs.stdout.splitlines()[-1].split()[1] if fs.returncode == 0 else "?"
    return (f"`nproc` = {os.cpu_count()}, {cpu}, {mem_kib / 1048576:.0f} GiB RAM, kernel "
            f"`{platform.release()}`; {etcd_v}; temp dirs on {fs}")


def git_rev():
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                         capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           cwd=REPO, capture_output=True, text=True).stdout.strip()
    return rev + (" + uncommitted changes in src/ or Cargo.toml/Cargo.lock" if dirty else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds per case (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per system (default 2)")
    p.add_argument("--keys", type=int, default=100_000, help="100 B keys prefilled (default 100000)")
    p.add_argument("--big-keys", type=int, default=10_000,
                   help="16 KiB keys prefilled for the 16 KiB cases (default 10000)")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: 2000 keys, 200 big keys, 2 s cases; numbers mean little")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the load generator (case i of round r uses seed + 100 r + i); "
                        "random when not given, printed and recorded")
    p.add_argument("--no-build", action="store_true", help="use the existing release binary")
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    p.add_argument("--output", default=os.path.join(REPO, "docs", "BENCHMARKS.md"))
    p.add_argument("--etcd-port-base", type=int, default=23700,
                   help="etcd member n: client port base+n, peer port base+10+n")
    p.add_argument("--dcache-http-base", type=int, default=21100)
    p.add_argument("--dcache-raft-base", type=int, default=22100)
    a = p.parse_args()
    if a.quick:
        a.keys, a.big_keys = min(a.keys, 2000), min(a.big_keys, 200)
        a.duration = min(a.duration, 2.0)
    if a.rounds < 1 or a.duration <= 0 or a.keys < 1 or a.big_keys < 1:
        die("--rounds, --duration, --keys and --big-keys must be positive")
    if a.seed is None:
        a.seed = int.from_bytes(os.urandom(4), "little")
    log(f"generator seed: {a.seed}")
    invocation = "scripts/compare-etcd.py " + " ".join(sys.argv[1:])
    ensure_tools(a.no_build)

    started = datetime.datetime.now(datetime.timezone.utc)
    rev = git_rev()
    load_before = load_avg()
    log(f"load average before: {load_before}")
    results = {"etcd": {}, "dcache": {}}
    failures = []
    work = tempfile.mkdtemp(prefix="compare-run.")
    try:
        for rnd in range(a.rounds):
            order = ("etcd", "dcache") if rnd % 2 == 0 else ("dcache", "etcd")
            for sysname in order:
                system = (Etcd(a.etcd_port_base) if sysname == "etcd"
                          else Dcache(a.dcache_http_base, a.dcache_raft_base))
                log(f"round {rnd + 1}/{a.rounds}: starting {sysname} in {system.dir}")
                try:
                    system.start()
                    prefill(system, a)
                    for i, case in enumerate(CASES):
                        slug = "".join(ch if ch.isalnum() else "_" for ch in case[0])
                        cdf = os.path.join(work, f"{sysname}-{rnd}-{slug}.csv")
                        try:
                            rep = run_case(system, a, case, cdf, a.seed + 100 * rnd + i)
                        except (RuntimeError, subprocess.TimeoutExpired) as e:
                            log(f"  {sysname} {case[0]} FAILED: {e}")
                            failures.append(f"round {rnd + 1} {sysname} {case[0]}: {e}")
                            continue
                        results[sysname].setdefault(case[0], []).append(rep)
                finally:
                    log(f"stopping {sysname}")
                    system.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = load_avg()
    log(f"load average after: {load_after}")

    s = summarize(results)
    main_table, cpu_table = tables(s)
    print()
    print(main_table)
    print()
    print(cpu_table)
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    if a.no_doc:
        sys.exit(1 if failures else 0)
    out_dir = os.path.dirname(os.path.abspath(a.output))
    tp, cp = charts(s, out_dir)
    # Only the load before the run tells of other work: during it, the
    # run's own servers and generator fill both cores.
    busy = (" The\n  load before the run was above half the cores: other work (or an\n"
            "  earlier run, still in the 1-minute average) overlapped its start."
            if float(load_before.split()[0]) > (os.cpu_count() or 1) / 2 else "")
    quick = (" **This was a `--quick` smoke run: few keys and 2 s cases; do not read the "
             "numbers as results.**") if a.quick else ""
    section = f"""{SECTION}

Generated by `scripts/compare-etcd.py`; rerun it to refresh this section and
the two charts. Each round starts a fresh 3-member etcd (Debian's
`etcd-server`, default fsync, `--quota-backend-bytes` 8 GiB) and a fresh
3-node dcache (`scripts/cluster.sh`, release binary) on loopback, one after
the other (never both at once; the order flips every round), prefills
{a.keys:,} keys of 100 B and {a.big_keys:,} keys of 16 KiB, runs every
workload for {a.duration:g} s with the same generator (`dcache bench --target
etcd|dcache`, closed loop, one keep-alive connection per worker, spread
round-robin over the three members), and stops and deletes the cluster.
Figures are medians over {a.rounds} rounds; errors are summed. Only the
ratios within one run mean anything on a shared machine.{quick}

{"".join(f"- **Failed case:** {f}{chr(10)}" for f in failures)}- Command: `{invocation}`
- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; commit {rev}; generator seed
  {a.seed} (`--seed {a.seed}` repeats the key and operation choices)
- Machine: {machine_facts()}. The three servers and the generator share the cores.
- Load average (1/5/15 min) before: {load_before}; after: {load_after}.{busy}
- etcd's stale read is `"serializable": true`; its linearizable read is the
  default range. dcache's stale read is `?consistency=stale`.
- Server CPU: utime + stime of the three server processes from
  `/proc/PID/stat` (after minus before each case) per 1,000 answered
  requests. Generator CPU: `getrusage` of the `dcache bench` process over the
  measured phase; its share is of servers + generator.

### Throughput and latency

{main_table}

### CPU per operation

{cpu_table}

### Charts

![throughput vs connections](compare-etcd-throughput.png)

![latency CDF, put and get at 64 connections](compare-etcd-cdf.png)
"""
    replace_section(a.output, SECTION, section)
    log(f"wrote {a.output}, {tp}, {cp}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
