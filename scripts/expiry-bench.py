#!/usr/bin/env python3
"""Mass expiry under a write load: N keys (default 1,000,000) that all expire
at the same instant, on a 3-node cluster, while a write load runs; prints the
write latency before and during the expiry, how long the expiry took, and
the largest expiry lag seen.

Usage: scripts/expiry-bench.py [BIN]      (default target/release/dcache)

Environment: EXP_KEYS (1000000), EXP_CONNS (16 writers), EXP_PORT_BASE
(25000). Everything runs on 127.0.0.1 in a temp dir, stopped by PID at the
end. Standard library only.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

KEYS = int(os.environ.get("EXP_KEYS", "1000000"))
CONNS = int(os.environ.get("EXP_CONNS", "16"))
PORT_BASE = int(os.environ.get("EXP_PORT_BASE", "25000"))


def get_json(addr, path):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
        return json.loads(r.read())


def ready(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/readyz", timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


def wait_until(what, cond, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit(f"expiry-bench: timed out waiting for {what}")


def bench(binary, addr, *args):
    cmd = [binary, "bench", "--addrs", addr, "--json", *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/dcache")
    root = tempfile.mkdtemp(prefix="dcache-exp-")
    procs = []
    try:
        first = f"127.0.0.1:{PORT_BASE + 1}"
        for i in (1, 2, 3):
            env = {k: v for k, v in os.environ.items() if not k.startswith("DCACHE_")}
            env.update(
                DCACHE_NODE_ID=f"n{i}",
                DCACHE_NODE_DATA_DIR=os.path.join(root, f"n{i}"),
                DCACHE_HTTP_BIND_ADDR=f"127.0.0.1:{PORT_BASE + i}",
                DCACHE_RAFT_BIND_ADDR=f"127.0.0.1:{PORT_BASE + 100 + i}",
                DCACHE_CLUSTER_JOIN_ADDR="" if i == 1 else first,
                DCACHE_LOGGING_LEVEL="warn",
                DCACHE_REDIS_BIND_ADDR="",  # several nodes on one host: no Redis listener
            )
            log = open(os.path.join(root, f"n{i}.log"), "ab")
            procs.append(subprocess.Popen([binary], env=env, stdout=log, stderr=log))
        for i in (1, 2, 3):
            wait_until("cluster ready", lambda i=i: ready(f"127.0.0.1:{PORT_BASE + i}"), 60)

        # One deadline for all keys, far enough ahead for the load to finish.
        t0 = time.time()
        deadline = t0 + KEYS / 5000 + 60
        at_ms = int(deadline * 1000)
        load = bench(binary, first, "--op", "get", "--preload", "--keys", str(KEYS),
                     "--connections", "32", "--key-prefix", "exp-",
                     "--put-query", f"expire_at={at_ms}", "--duration", "0.1",
                     "--max-requests", "1")
        loaded = time.time()
        if loaded > deadline - 25:
            raise SystemExit(f"expiry-bench: the load took {loaded - t0:.0f} s, too slow for this deadline")
        print(f"{KEYS} keys loaded in {loaded - t0:.1f} s, all expiring at +{deadline - loaded:.1f} s")

        base = bench(binary, first, "--op", "put", "--keys", "100000", "--key-prefix", "w-",
                     "--connections", str(CONNS), "--duration", "10")

        while time.time() < deadline - 5:
            time.sleep(0.2)
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    st = get_json(first, "/v1/status")
                    samples.append((time.time(), st["ttl_keys"], st["expiry_lag_ms"]))
                except Exception:
                    pass
                time.sleep(0.25)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        during = bench(binary, first, "--op", "put", "--keys", "100000", "--key-prefix", "w-",
                       "--connections", str(CONNS), "--duration", "25")
        wait_until("every expiring key removed",
                   lambda: get_json(first, "/v1/status")["ttl_keys"] == 0, 120)
        stop.set()
        t.join()
        gone = next((ts for ts, n, _ in samples if n == 0), time.time())
        lag = max((lag for _, _, lag in samples), default=0)
        print()
        print("| phase | writes/s | p50 ms | p99 ms | max ms | errors |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in (("before the expiry", base), ("across the expiry", during)):
            print(f"| {name} | {r['ops_per_sec']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['max_ms']:.1f} | {r['errors']} |")
        print()
        print(f"all {KEYS} keys removed {gone - deadline:.1f} s after their deadline; "
              f"largest expiry lag seen {lag} ms; p99 during / before = "
              f"{during['p99_ms'] / max(base['p99_ms'], 1e-9):.2f}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
