#!/usr/bin/env python3
"""Before/after comparison of two dcache binaries in one run (issue 9, part 3).

Usage: scripts/ab-bench.py BEFORE_BIN AFTER_BIN [--duration S] [--rounds N]
                           [--redis | --generators]

With --redis the cases are `redis-benchmark` (Debian's redis-tools) against
node1's Redis port instead: GET and SET, 50 connections, 100-byte values,
100,000 keys, at -P 1 and -P 16 (request counts, not durations: redis-benchmark
has no duration flag); errors are not counted there (redis-benchmark stops
on none).

For each round and each binary ALTERNATELY (never both clusters at once; the
order flips every round): start a fresh 3-node cluster with scripts/cluster.sh
(temp dir, ports away from the defaults), run `dcache bench --json` (the
AFTER binary's generator for both, so only the servers differ) against all
three nodes for each case, record ops/s, p50/p99, errors and the servers' CPU
(utime + stime of the three processes from /proc/PID/stat, after minus
before) per request, stop the cluster (by the PIDs cluster.sh recorded) and
delete its dir. Prints a markdown table of medians with after/before ratios,
and the generator's own CPU per request.

With --generators it is the load generators that differ: every cluster runs
the AFTER binary, and each round's `dcache bench` is BEFORE's, then AFTER's
(the order flipping every round), so a change to the generator is measured
by its own CPU per request and by what the same servers then do.

Build the before binary from another commit into its own path, e.g.
  git worktree add /tmp/before main && (cd /tmp/before && cargo build --release)
  scripts/ab-bench.py /tmp/before/target/release/dcache target/release/dcache
"""

import argparse
import os
import statistics
import sys

from benchlib import bench, local_cluster, redis_benchmark

CLK_TCK = os.sysconf("SC_CLK_TCK")
CASES = [
    ("put c1", ["--op", "put", "--connections", "1"]),
    ("put c64", ["--op", "put", "--connections", "64"]),
    ("get c64", ["--op", "get", "--connections", "64"]),
    ("stale get c64", ["--op", "get", "--connections", "64", "--stale"]),
]
# SETs first, so that the GETs mostly hit.
REDIS_CASES = [
    ("redis set -P1", ["-t", "set", "-P", "1", "-n", "50000"]),
    ("redis set -P16", ["-t", "set", "-P", "16", "-n", "200000"]),
    ("redis get -P1", ["-t", "get", "-P", "1", "-n", "100000"]),
    ("redis get -P16", ["-t", "get", "-P", "16", "-n", "500000"]),
]
# Below the ephemeral port range (32768-60999), where outgoing connections
# could hold a port.
HTTP_BASE, RAFT_BASE, REDIS_BASE = 27000, 27100, 27200


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def redis_bench(port, extra):
    """One redis-benchmark case against `port`: a report like `bench`'s."""
    rows = redis_benchmark(port, ["-c", "50", "-d", "100", "-r", "100000"] + extra, "ab-bench")
    if len(rows) != 1:
        raise SystemExit(f"ab-bench: expected one redis-benchmark test, got {sorted(rows)}")
    (row,) = rows.values()
    return {"ops_per_sec": row["rps"], "p50_ms": row["p50"], "p99_ms": row["p99"],
            "requests": int(extra[extra.index("-n") + 1]), "errors": 0}


def run_binary(server_bin, gen_bin, args):
    out = {}
    with local_cluster(server_bin, 3, HTTP_BASE, RAFT_BASE, REDIS_BASE,
                       "dcache-ab.") as (d, addrs):
        pids = []
        for i in (1, 2, 3):
            with open(os.path.join(d, f"node{i}.pid")) as f:
                pids.append(int(f.read().strip()))
        common = ["--addrs", ",".join(addrs), "--keys", "100000", "--value-size", "100",
                  "--key-prefix", "ab-"]
        # Every key written once, outside the measured cases (gets hit).
        bench(gen_bin, ["--op", "get", "--preload", "--connections", "64",
                        "--duration", "1"] + common)
        for name, extra in cases(args):
            before = cpu_ticks(pids)
            if args.redis:
                rep = redis_bench(REDIS_BASE + 1, extra)
            else:
                rep = bench(gen_bin, ["--duration", str(args.duration)] + common + extra)
            cpu_s = (cpu_ticks(pids) - before) / CLK_TCK
            rep["cpu_ms_per_op"] = 1000 * cpu_s / max(rep["requests"], 1)
            rep["gen_ms_per_op"] = 1000 * rep.get("client_cpu_s", 0) / max(rep["requests"], 1)
            out[name] = rep
            print(f"  {os.path.basename(server_bin)} {name}: {rep['ops_per_sec']:.0f} ops/s, "
                  f"p99 {rep['p99_ms']:.2f} ms, {rep['cpu_ms_per_op']:.3f} ms CPU/op, "
                  f"generator {rep['gen_ms_per_op']:.3f} ms CPU/op, errors {rep['errors']}",
                  file=sys.stderr)
    return out


def cases(args):
    return REDIS_CASES if args.redis else CASES


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--redis", action="store_true",
                   help="redis-benchmark GET/SET cases against node1's Redis port")
    p.add_argument("--generators", action="store_true",
                   help="compare the binaries' load generators on AFTER's servers")
    args = p.parse_args()
    if args.redis and args.generators:
        raise SystemExit("ab-bench: --redis runs redis-benchmark; it has no generator to compare")
    bins = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    load_before = os.getloadavg()
    results = {k: [] for k in bins}
    for rnd in range(args.rounds):
        order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
        for k in order:
            print(f"round {rnd + 1}: {k} ({bins[k]})", file=sys.stderr)
            if args.generators:
                results[k].append(run_binary(bins["after"], bins[k], args))
            else:
                results[k].append(run_binary(bins[k], bins["after"], args))
    load_after = os.getloadavg()
    keys = ("ops_per_sec", "p50_ms", "p99_ms", "cpu_ms_per_op", "gen_ms_per_op")
    med = {k: {c: {m: statistics.median(r[c][m] for r in results[k]) for m in keys}
               for c, _ in cases(args)} for k in bins}
    print("| workload | before ops/s | after ops/s | after ÷ before | before p50 / p99 ms "
          "| after p50 / p99 ms | server CPU ms/op before / after "
          "| generator CPU ms/op before / after | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, _ in cases(args):
        x, y = med["before"][c], med["after"][c]
        errs = sum(r[c]["errors"] for k in bins for r in results[k])
        print(f"| {c} | {x['ops_per_sec']:,.0f} | {y['ops_per_sec']:,.0f} | "
              f"{y['ops_per_sec'] / max(x['ops_per_sec'], 1):.2f}× | "
              f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} | {y['p50_ms']:.2f} / {y['p99_ms']:.2f} | "
              f"{x['cpu_ms_per_op']:.3f} / {y['cpu_ms_per_op']:.3f} | "
              f"{x['gen_ms_per_op']:.4f} / {y['gen_ms_per_op']:.4f} | {errs} |")
    per_case = "redis-benchmark request counts" if args.redis else f"{args.duration:g} s per case"
    print(f"\nmedians of {args.rounds} rounds, {per_case}; load average "
          f"before {load_before[0]:.2f}, after {load_after[0]:.2f}; nproc {os.cpu_count()}")


if __name__ == "__main__":
    main()
