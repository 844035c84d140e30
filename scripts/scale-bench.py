#!/usr/bin/env python3
"""How throughput and latency change from 3 to 5 nodes (docs/SCALING.md).

In ONE invocation, for each round and each cluster size alternately (never
two clusters at once): start a fresh cluster with scripts/cluster.sh
(CLUSTER_NODES=3 or 5, release binary, temp dir, ports away from the
defaults), run `dcache bench --json` against all its nodes for put,
linearizable get and stale get at 64 connections (100 B values, 10,000
keys, preloaded for the gets), stop it (by the PIDs cluster.sh recorded)
and delete its dir. Prints a markdown table of medians over the rounds and
the 5-node / 3-node ratios.

Usage: scripts/scale-bench.py [--duration S] [--rounds N] [--sizes 3,5]
"""

import argparse
import os
import statistics
import subprocess
import sys

from benchlib import REPO, bench, local_cluster

BIN = os.path.join(REPO, "target", "release", "dcache")
CASES = [
    ("put c64", ["--op", "put"]),
    ("get c64", ["--op", "get", "--preload"]),
    ("stale get c64", ["--op", "get", "--stale", "--preload"]),
]
# Below the ephemeral port range (32768-60999), where outgoing connections
# could hold a port (a TIME-WAIT on 47002 once failed a start).
HTTP_BASE, RAFT_BASE, REDIS_BASE = 28000, 28100, 28200


def run_size(n, args):
    out = {}
    with local_cluster(BIN, n, HTTP_BASE, RAFT_BASE, REDIS_BASE,
                       f"dcache-scale-{n}.") as (_, addrs):
        for name, extra in CASES:
            rep = bench(BIN, ["--addrs", ",".join(addrs), "--connections", "64",
                              "--duration", str(args.duration), "--keys", "10000",
                              "--value-size", "100", "--key-prefix", "scale-"] + extra)
            out[name] = rep
            print(f"  {n} nodes, {name}: {rep['ops_per_sec']:.0f} ops/s, "
                  f"p99 {rep['p99_ms']:.2f} ms, errors {rep['errors']}",
                  file=sys.stderr)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--sizes", default="3,5")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not os.access(BIN, os.X_OK):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO, check=True)
    load_before = os.getloadavg()
    results = {n: [] for n in sizes}
    for rnd in range(args.rounds):
        order = sizes if rnd % 2 == 0 else list(reversed(sizes))
        for n in order:
            print(f"round {rnd + 1}: {n} nodes", file=sys.stderr)
            results[n].append(run_size(n, args))
    load_after = os.getloadavg()
    med = {n: {c: {k: statistics.median(r[c][k] for r in results[n])
                   for k in ("ops_per_sec", "p50_ms", "p99_ms")}
               for c, _ in CASES} for n in sizes}
    errors = {n: {c: sum(r[c]["errors"] for r in results[n]) for c, _ in CASES}
              for n in sizes}
    a, b = sizes[0], sizes[-1]
    print(f"| workload | {a} nodes ops/s | {b} nodes ops/s | {b}/{a} | "
          f"{a} nodes p50 / p99 ms | {b} nodes p50 / p99 ms | errors {a} / {b} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c, _ in CASES:
        x, y = med[a][c], med[b][c]
        print(f"| {c} | {x['ops_per_sec']:,.0f} | {y['ops_per_sec']:,.0f} | "
              f"{y['ops_per_sec'] / max(x['ops_per_sec'], 1):.2f}× | "
              f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} | {y['p50_ms']:.2f} / {y['p99_ms']:.2f} | "
              f"{errors[a][c]} / {errors[b][c]} |")
    print(f"\nmedians of {args.rounds} rounds, {args.duration:g} s per case; load average "
          f"before {load_before[0]:.2f}, after {load_after[0]:.2f}; nproc {os.cpu_count()}")


if __name__ == "__main__":
    main()
