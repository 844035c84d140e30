#!/usr/bin/env bash
# Put throughput and tail latency against the snapshot threshold, with a
# large state: for each round and each threshold ALTERNATELY, a fresh
# 3-node cluster (scripts/cluster.sh, temp dir, ports 27000+), prefilled with
# 100,000 keys of 100 B and 10,000 keys of 16 KiB (~170 MB, as
# scripts/compare-etcd.py prefills), then `dcache bench` put at 64
# connections for 10 s over all three nodes. Prints ops/s, p50/p99/max and
# the snapshots node1 took (prefill included). Stops the cluster by the
# PIDs cluster.sh recorded and deletes its dir.
#
#   scripts/snapshot-threshold-bench.sh [BIN] [THRESHOLD...]
#   (defaults: target/release/dcache, 10000 100000; 2 rounds, ROUNDS=N)
#   BINS="before after" scripts/snapshot-threshold-bench.sh - 10000
#   alternates binaries as well (each round: every binary, every threshold).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/dcache}
if [[ $# -gt 1 ]]; then thresholds=("${@:2}"); else thresholds=(10000 100000); fi
read -r -a bins <<<"${BINS:-$bin}"
addrs=localhost:27001,localhost:27002,localhost:27003
export CLUSTER_NODES=3 CLUSTER_HTTP_PORT_BASE=27000 \
  CLUSTER_RAFT_PORT_BASE=27100 CLUSTER_REDIS_PORT_BASE=27200
dir=""
cleanup() { if [[ -n "$dir" ]]; then scripts/cluster.sh stop "$dir" >/dev/null || true; rm -rf "$dir"; fi; }
trap cleanup EXIT
for round in $(seq 1 "${ROUNDS:-2}"); do
  for bin in "${bins[@]}"; do
  for t in "${thresholds[@]}"; do
    dir=$(mktemp -d /tmp/snapshot-bench.XXXX)
    CLUSTER_BIN=$bin DCACHE_RAFT_SNAPSHOT_THRESHOLD=$t scripts/cluster.sh start "$dir" >/dev/null
    "$bin" bench --addrs $addrs --op get --preload --keys 100000 --value-size 100 \
      --connections 32 --duration 1 --max-requests 1 --json >/dev/null
    "$bin" bench --addrs $addrs --op get --preload --keys 10000 --key-prefix big- \
      --value-size 16384 --connections 32 --duration 1 --max-requests 1 --json >/dev/null
    report=$("$bin" bench --addrs $addrs --op put --keys 100000 --value-size 100 \
      --connections 64 --duration 10 --max-requests 1000000 --json | tail -1)
    snaps=$(grep -c "snapshot taken" "$dir/node1.log" || true)
    python3 -c 'import json, sys
d = json.loads(sys.argv[1])
print("round %s %s threshold %s: %.0f ops/s, p50 %s / p99 %s / max %s ms, errors %s, snapshots on node1 %s"
      % (sys.argv[2], sys.argv[5], sys.argv[3], d["ops_per_sec"], d["p50_ms"], d["p99_ms"], d["max_ms"], d["errors"], sys.argv[4]))' \
      "$report" "$round" "$t" "$snaps" "$bin"
    cleanup
    dir=""
  done
  done
done
