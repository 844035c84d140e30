#!/usr/bin/env python3
"""dcache beside durable Redis through redis-benchmark (issue 10's table).

In ONE invocation, for each round, alternately (never both at once): a
single durable Redis (`redis-server --appendonly yes --appendfsync always`,
temp dir, loopback) and a fresh 3-node dcache cluster (scripts/cluster.sh,
release binary, Redis ports from a base), each driven by the same
`redis-benchmark -t set,get -c 50 -d 100 -r KEYS` at `-P 1` and `-P 16`
against one server: Redis itself, dcache's leader (node1; a follower would
forward every command). Prints a markdown table of medians (ops/s, p50,
p99) with dcache/Redis ratios and the issue's targets, and writes it to
docs/BENCHMARKS.md ("dcache vs durable Redis", replaced on every run)
unless --no-doc.

Usage: scripts/compare-redis.py [--rounds N] [--requests N] [--no-doc]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import redis_benchmark, replace_section

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "dcache")
REDIS_PORT = 48379
# Below the ephemeral port range (32768-60999): an outgoing connection can
# hold a port there (a start failed with "Address already in use" on 48002).
HTTP_BASE, RAFT_BASE, RESP_BASE = 26000, 26100, 26200
SECTION = "## dcache vs durable Redis"


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"compare-redis: nothing listens on {port} after {timeout} s")


def bench(port, pipeline, args):
    n = args.requests * (5 if pipeline > 1 else 1)
    out = redis_benchmark(
        port, ["-t", "set,get", "-c", "50", "-d", "100", "-r", str(args.keys), "-n", str(n),
               "-P", str(pipeline)], "compare-redis")
    if set(out) != {"SET", "GET"}:
        raise SystemExit(f"compare-redis: expected SET and GET from redis-benchmark, got {sorted(out)}")
    return out


def run_redis(args):
    d = tempfile.mkdtemp(prefix="compare-redis.")
    p = subprocess.Popen(
        ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--dir", d,
         "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(REDIS_PORT)
        return {pl: bench(REDIS_PORT, pl, args) for pl in (1, 16)}
    finally:
        p.terminate()
        p.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


def run_dcache(args):
    d = tempfile.mkdtemp(prefix="compare-redis-dcache.")
    env = dict(os.environ, CLUSTER_BIN=BIN, CLUSTER_HTTP_PORT_BASE=str(HTTP_BASE),
               CLUSTER_RAFT_PORT_BASE=str(RAFT_BASE), CLUSTER_REDIS_PORT_BASE=str(RESP_BASE))
    cluster = os.path.join(REPO, "scripts", "cluster.sh")
    subprocess.run([cluster, "start", d], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        return {pl: bench(RESP_BASE + 1, pl, args) for pl in (1, 16)}
    finally:
        subprocess.run([cluster, "stop", d], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=20000,
                    help="requests per test at -P 1 (5x that at -P 16)")
    ap.add_argument("--keys", type=int, default=100000, help="redis-benchmark -r")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            raise SystemExit(f"compare-redis: {tool} missing (apt-get install redis-server redis-tools)")
    if not os.access(BIN, os.X_OK):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO, check=True)
    load_before = os.getloadavg()
    runs = {"redis": [], "dcache": []}
    for rnd in range(args.rounds):
        order = ["redis", "dcache"] if rnd % 2 == 0 else ["dcache", "redis"]
        for system in order:
            print(f"round {rnd + 1}: {system}", file=sys.stderr)
            runs[system].append(run_redis(args) if system == "redis" else run_dcache(args))
    load_after = os.getloadavg()

    def med(system, pl, test, field):
        return statistics.median(r[pl][test][field] for r in runs[system])

    lines = ["| test | Redis ops/s | dcache ops/s | dcache ÷ Redis | target | Redis p50 / p99 ms | dcache p50 / p99 ms |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for pl in (1, 16):
        for test, target in (("SET", 0.5), ("GET", 0.8)):
            r, c = med("redis", pl, test, "rps"), med("dcache", pl, test, "rps")
            goal = f"≥ {target:.0%}" + (", p99 ≤ 5 ms" if pl == 1 else "")
            lines.append(
                f"| {test} -P {pl} | {r:,.0f} | {c:,.0f} | {c / r:.2f}× | {goal} | "
                f"{med('redis', pl, test, 'p50'):.2f} / {med('redis', pl, test, 'p99'):.2f} | "
                f"{med('dcache', pl, test, 'p50'):.2f} / {med('dcache', pl, test, 'p99'):.2f} |")
    table = "\n".join(lines)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    version = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.split()[2]
    section = f"""{SECTION}

Generated by `scripts/compare-redis.py --rounds {args.rounds} --requests {args.requests}`;
rerun it to refresh this section. Each round runs a single durable Redis
({version}, `--appendonly yes --appendfsync always`: every write fsynced
before the reply) and a fresh 3-node dcache (every write fsynced on a
majority before the reply), one after the other (never both at once; the
order flips every round), with the same `redis-benchmark -t set,get -c 50
-d 100 -r {args.keys}` ({args.requests:,} requests per test at `-P 1`,
{args.requests * 5:,} at `-P 16`) against one server: Redis, and dcache's
leader (node1). Medians over {args.rounds} rounds.

- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit}; `nproc` = {os.cpu_count()}
- Load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; the
  servers and redis-benchmark share the cores.

{table}
"""
    print(section)
    if not args.no_doc:
        replace_section(os.path.join(REPO, "docs", "BENCHMARKS.md"), SECTION, section)

if __name__ == "__main__":
    main()
