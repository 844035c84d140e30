#!/usr/bin/env python3
"""Memory benchmark: resident memory of dcache holding N keys, on one node and
on a 3-node cluster, while loading, after loading, while a snapshot is built
and sent to a wiped follower, and after a restart; plus restart-to-ready
time, snapshot size and accounted bytes per key.

Usage:
  scripts/memory-bench.py                         # target/release/dcache
  scripts/memory-bench.py before=/path/to/old/dcache after=target/release/dcache

Each LABEL=BIN pair is measured in turn in this one run (compare within a
run: the machine is shared and noisy). The snapshot build time is the
last "snapshot taken" log line's `build_ms` (nodes log at info). Environment: MEM_KEYS (default
1000000), MEM_VALUE (100), MEM_CONNS (32), MEM_PORT_BASE (24000),
MEM_KEY_PREFIX (`memkey-0-`: with 1,000,000 keys, 10 to 15 bytes),
MEM_NODE_ENV (`DCACHE_X=v,...` for every node). Keys are
`<prefix>0 .. <prefix><N-1>`, written once each by
`dcache bench --preload` (100-byte values). Everything runs on 127.0.0.1 in a
temp dir and is stopped (by PID) at the end. Standard library only.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

KEYS = int(os.environ.get("MEM_KEYS", "1000000"))
VALUE = int(os.environ.get("MEM_VALUE", "100"))
CONNS = int(os.environ.get("MEM_CONNS", "32"))
PORT_BASE = int(os.environ.get("MEM_PORT_BASE", "24000"))
PREFIX = os.environ.get("MEM_KEY_PREFIX", "memkey-0-")
READY_TIMEOUT = 120

RAW = sum(len(f"{PREFIX}{i}") for i in range(KEYS)) + KEYS * VALUE


def rss_mib(pid):
    """(VmRSS, VmHWM) of a process in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) / 1024
    return out.get("VmRSS", 0.0), out.get("VmHWM", 0.0)


def http_get(addr, path, timeout=5):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as r:
        return r.status, r.read()


def ready(addr):
    try:
        return http_get(addr, "/readyz", 2)[0] == 200
    except Exception:
        return False


def metric(addr, name):
    _, body = http_get(addr, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None


def wait_until(what, cond, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise SystemExit(f"memory-bench: timed out after {timeout}s waiting for {what}")


class Sampler:
    """Polls VmRSS of some processes every 100 ms; keeps the maximum."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = {p: 0.0 for p in pids}
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            for p in self.pids:
                try:
                    self.peak[p] = max(self.peak[p], rss_mib(p)[0])
                except FileNotFoundError:
                    pass
            time.sleep(0.1)

    def done(self):
        self.stop.set()
        self.t.join()
        return self.peak


class Node:
    def __init__(self, binary, root, i, join):
        self.i = i
        self.http = f"127.0.0.1:{PORT_BASE + i}"
        self.raft = f"127.0.0.1:{PORT_BASE + 100 + i}"
        self.dir = os.path.join(root, f"n{i}")
        self.binary = binary
        self.join = join
        self.proc = None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DCACHE_")}
        env.update(
            DCACHE_NODE_ID=f"n{self.i}",
            DCACHE_NODE_DATA_DIR=self.dir,
            DCACHE_HTTP_BIND_ADDR=self.http,
            DCACHE_RAFT_BIND_ADDR=self.raft,
            DCACHE_CLUSTER_JOIN_ADDR=self.join,
            # info: the "snapshot taken ... build_ms=N" lines are read back.
            DCACHE_LOGGING_LEVEL=os.environ.get("MEM_LOG", "info"),
            DCACHE_REDIS_BIND_ADDR="",  # several nodes on one host: no Redis listener
        )
        # MEM_NODE_ENV="DCACHE_A=1,DCACHE_B=2": settings for every node (to
        # measure what a bounded buffer, e.g. the watch history, costs).
        for kv in filter(None, os.environ.get("MEM_NODE_ENV", "").split(",")):
            k, v = kv.split("=", 1)
            env[k] = v
        log = open(self.dir + ".log", "ab")
        self.proc = subprocess.Popen([self.binary], env=env, stdout=log, stderr=log)
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def last_build_ms(self):
        """build_ms of the last "snapshot taken" line in the node's log."""
        last = None
        try:
            with open(self.dir + ".log", errors="replace") as f:
                for line in f:
                    if "snapshot taken" in line:
                        plain = re.sub(r"\x1b\[[0-9;]*m", "", line)  # ANSI styling
                        m = re.search(r"build_ms=(\d+)", plain)
                        if m:
                            last = int(m.group(1))
        except FileNotFoundError:
            pass
        return last

    def snapshot_bytes(self):
        d = os.path.join(self.dir, "snapshots")
        return sum(
            os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".snap")
        ) if os.path.isdir(d) else 0


def load(binary, addr):
    cmd = [
        binary, "bench", "--addrs", addr, "--op", "get", "--preload",
        "--keys", str(KEYS), "--value-size", str(VALUE), "--connections", str(CONNS),
        "--duration", "0.2", "--max-requests", "1", "--json", "--key-prefix", PREFIX,
    ]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def leader_of(nodes):
    for n in nodes:
        try:
            _, body = http_get(n.http, "/v1/cluster")
            st = json.loads(body)
            if st.get("is_leader"):
                return n
        except Exception:
            pass
    return None


def measure(label, binary):
    rows = []
    root = tempfile.mkdtemp(prefix="dcache-mem-")
    nodes = []
    try:
        # --- one node ---------------------------------------------------
        n = Node(binary, root, 1, "")
        nodes = [n]
        pid = n.start()
        wait_until("node ready", lambda: ready(n.http), READY_TIMEOUT)
        time.sleep(1)
        idle, _ = rss_mib(pid)
        s = Sampler([pid])
        secs = load(binary, n.http)
        peak = s.done()[pid]
        time.sleep(1)
        rss, hwm = rss_mib(pid)
        accounted = metric(n.http, "dcache_cache_memory_bytes") or 0
        snap = n.snapshot_bytes() / 2**20
        build_ms = n.last_build_ms()
        n.stop()
        pid = n.start()
        t_ready = wait_until("restart ready", lambda: ready(n.http), READY_TIMEOUT)
        time.sleep(1)
        rss_restart, _ = rss_mib(pid)
        n.stop()
        rows.append(dict(
            label=label, setup="1 node", idle=idle, load_s=secs, peak=max(peak, hwm), rss=rss,
            rss_restart=rss_restart, restart_s=t_ready, snapshot_mib=snap, build_ms=build_ms,
            accounted_per_key=accounted / KEYS, rss_per_key=rss * 2**20 / KEYS,
        ))
        shutil.rmtree(n.dir)

        # --- three nodes ---------------------------------------------------
        first = Node(binary, root, 11, "")
        nodes = [first, Node(binary, root, 12, first.http), Node(binary, root, 13, first.http)]
        pids = [nd.start() for nd in nodes]
        for nd in nodes:
            wait_until("cluster ready", lambda nd=nd: ready(nd.http), READY_TIMEOUT)
        s = Sampler(pids)
        secs = load(binary, first.http)
        peaks = s.done()
        time.sleep(1)
        leader = leader_of(nodes) or first
        follower = next(nd for nd in nodes if nd is not leader)
        rss_after = {nd.i: rss_mib(nd.proc.pid)[0] for nd in nodes}
        # A wiped follower catches up by snapshot: the leader sends its file,
        # the follower receives and installs it. Done the safe way: the
        # member is removed, its data wiped, and it joins again as new
        # (a member that lost its data cannot rejoin as itself).
        follower.stop()
        req = urllib.request.Request(
            f"http://{leader.http}/v1/cluster/members/n{follower.i}", method="DELETE"
        )
        urllib.request.urlopen(req, timeout=30).read()
        shutil.rmtree(follower.dir)
        follower.join = leader.http
        s = Sampler([leader.proc.pid])
        fpid = follower.start()
        s2 = Sampler([fpid])
        t_catch = wait_until(
            "wiped follower catches up",
            lambda: ready(follower.http)
            and (metric(follower.http, "dcache_cache_keys") or 0) >= KEYS,
            300,
        )
        leader_peak_send = s.done()[leader.proc.pid]
        follower_peak_install = s2.done()[fpid]
        rows.append(dict(
            label=label, setup="3 nodes", idle=idle, load_s=secs,
            peak=max(peaks.values()), rss=max(rss_after.values()),
            rss_restart=None, restart_s=t_catch, snapshot_mib=leader.snapshot_bytes() / 2**20,
            build_ms=leader.last_build_ms(),
            accounted_per_key=(metric(leader.http, "dcache_cache_memory_bytes") or 0) / KEYS,
            rss_per_key=max(rss_after.values()) * 2**20 / KEYS,
            leader_peak_send=leader_peak_send, follower_peak_install=follower_peak_install,
        ))
    finally:
        for nd in nodes:
            nd.stop()
        if os.environ.get("MEM_KEEP"):
            print(f"memory-bench: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return rows


def main():
    pairs = [a.split("=", 1) for a in sys.argv[1:]] or [["dcache", "target/release/dcache"]]
    for _, b in pairs:
        if not os.access(b, os.X_OK):
            raise SystemExit(f"memory-bench: {b} is not an executable")
    print(f"{KEYS} keys x {VALUE} B values: raw key+value bytes {RAW / 2**20:.1f} MiB "
          f"(2x = {2 * RAW / 2**20:.1f} MiB)")
    rows = []
    for label, b in pairs:
        rows += measure(label, os.path.abspath(b))
    print()
    print("| binary | setup | idle RSS MiB | load s | peak RSS MiB | RSS after load MiB | "
          "(RSS − idle) ÷ raw | (peak − idle) ÷ raw | RSS after restart MiB | "
          "ready after restart / catch-up s | snapshot MiB | last snapshot build ms | "
          "accounted B/key | RSS B/key | "
          "leader peak while sending MiB | follower peak while installing MiB |")
    print("|" + "---|" * 16)
    for r in rows:
        f = lambda v, fmt="{:.1f}": "-" if v is None else fmt.format(v)
        above = lambda v: (v - r["idle"]) * 2**20 / RAW
        print(f"| {r['label']} | {r['setup']} | {f(r['idle'])} | {f(r['load_s'])} | {f(r['peak'])} | "
              f"{f(r['rss'])} | {above(r['rss']):.2f} | {above(r['peak']):.2f} | "
              f"{f(r['rss_restart'])} | {f(r['restart_s'])} | "
              f"{f(r['snapshot_mib'])} | {f(r['build_ms'], '{:.0f}')} | "
              f"{f(r['accounted_per_key'], '{:.0f}')} | "
              f"{f(r['rss_per_key'], '{:.0f}')} | {f(r.get('leader_peak_send'))} | "
              f"{f(r.get('follower_peak_install'))} |")


if __name__ == "__main__":
    main()
