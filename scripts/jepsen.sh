#!/usr/bin/env bash
# Fault-injection suite: real dcache processes in network namespaces under a
# seeded mix of partitions, kills, pauses, membership changes and clock skew,
# with a linearizability check of the history and convergence checks.
# Needs root (ip netns, nft) and libfaketime for the clock-skew fault
# (`apt-get install faketime`; the harness stops at start without it).
# Runs the release build, as users do. Each run fails if a fault kind was
# never injected or a node exited on its own.
#
#   scripts/jepsen.sh            the bounded CI version: 3 nodes x 100 s + 5 nodes x 80 s, all faults;
#                                the 5-node run with TLS (mutual, client certificates required),
#                                a cluster secret and tokens on (--secure; needs openssl)
#   JEPSEN_LONG=1 scripts/jepsen.sh   the pre-release run: 5 nodes x 30 min, all faults
#   JEPSEN_SEED=123 ...          replay a seed (printed by every run)
set -euo pipefail
cd "$(dirname "$0")/.."
# The server as users run it (release, LTO); the harness with the test
# profile (its checker optimised, Cargo.toml), which reuses `cargo test`'s
# build instead of compiling the server's crate a second time with LTO.
cargo build --quiet --release -p dcache --bin dcache
cargo build --quiet -p dcache-jepsen --bin dcache-jepsen
bin=target/release/dcache
harness=target/debug/dcache-jepsen
seed_arg=()
if [[ -n "${JEPSEN_SEED:-}" ]]; then seed_arg=(--seed "$JEPSEN_SEED"); fi
if [[ -n "${JEPSEN_LONG:-}" ]]; then
  "$harness" --bin "$bin" --nodes 5 --duration 1800 "${seed_arg[@]}"
else
  "$harness" --bin "$bin" --nodes 3 --duration 100 "${seed_arg[@]}"
  secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  "$harness" --bin "$bin" --nodes 5 --duration 80 --cluster-secret "$secret" --secure "${seed_arg[@]}"
fi
