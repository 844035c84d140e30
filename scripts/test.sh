#!/usr/bin/env bash
# The project's whole check, the same locally and in CI:
# format check, clippy with warnings as errors, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace --all-targets
echo "== cargo test: vendor/chunked-wal (outside the workspace, its own lock file)"
cargo test --locked --manifest-path vendor/chunked-wal/Cargo.toml --target-dir target/vendor --lib
