#!/usr/bin/env bash
# The project's whole check, the same locally and in CI:
# format check, clippy with warnings as errors, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo fmt --check"
cargo fmt -p dcache -p dcache-jepsen -p dcache-testkit -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace --all-targets
