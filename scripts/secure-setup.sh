#!/usr/bin/env bash
# Fill a directory with what docker-compose.secure.yml mounts: a test CA and
# certificates for node1..node3 and a client (scripts/make-certs.sh), a
# cluster secret, and a tokens file with an admin and a read token (made
# with the image's `dcache token new`, or the host's dcache binary).
#
# Usage: scripts/secure-setup.sh [DIR]     (default: ./secure)
#
# Writes DIR/{ca,node1,node2,node3,client}.{crt,key}, DIR/cluster.secret,
# DIR/tokens, DIR/admin.token and DIR/read.token. Files are readable by
# every user (the container runs as uid 10001): a test setup, not a vault.
#
# Environment: IMAGE_NAME (default dcache) for `docker run IMAGE token new`
# when no dcache binary is on PATH or in target/.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-secure}
mkdir -p "$dir"

CERTS_WORLD_READABLE=1 "$REPO/scripts/make-certs.sh" "$dir" node1 node2 node3 client >/dev/null
openssl rand -hex 24 >"$dir/cluster.secret"

if command -v dcache >/dev/null; then
    token() { dcache token new "$@"; }
elif [[ -x $REPO/target/release/dcache ]]; then
    token() { "$REPO/target/release/dcache" token new "$@"; }
elif [[ -x $REPO/target/debug/dcache ]]; then
    token() { "$REPO/target/debug/dcache" token new "$@"; }
else
    token() { docker run --rm "${IMAGE_NAME:-dcache}:latest" token new "$@"; }
fi
# `dcache token new` prints the token on line 2, the tokens-file line on 4.
: >"$dir/tokens"
for spec in "admin admin" "read read"; do
    read -r name role <<<"$spec"
    out=$(token --name "$name" --role "$role")
    sed -n 4p <<<"$out" | sed 's/^ *//' >>"$dir/tokens"
    sed -n 2p <<<"$out" | tr -d ' ' >"$dir/$name.token"
done
chmod 0644 "$dir"/*
echo "$dir: CA, node1..node3 and client certificates, cluster.secret, tokens (admin.token, read.token)"
