#!/usr/bin/env bash
# Build the dcache container image offline: no registry pull needed.
#
# Usage: scripts/docker-image.sh [--no-build]
#
#   1. cargo build --release on this machine (skipped with --no-build, which
#      reuses the existing binary);
#   2. assemble a root filesystem: the binary (debug info stripped), the shared
#      libraries `ldd` lists (copied to the same paths), /etc/passwd, /etc/group
#      and /etc/nsswitch.conf with a non-root user dcache (10001:10001), an
#      empty /data owned by 10001, /tmp (1777);
#   3. docker build it FROM scratch with deploy/Dockerfile.offline, tagged
#      dcache:latest and dcache:<git short sha> (plus "-dirty" when the work
#      tree has uncommitted changes).
#
# The image runs on any x86_64 Docker host: it carries its own glibc, so the
# host's glibc version does not matter. For the ordinary internet build, use
# the Dockerfile at the repo root: `docker build -t dcache .`.
#
# Environment (none start with DCACHE_, which dcache reserves):
#   IMAGE_NAME        image repository (default: dcache)
#   CARGO_TARGET_DIR  honoured as cargo does (default: <repo>/target)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE_NAME:-dcache}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$TARGET_DIR/release/dcache
UID_GID=10001

die() { echo "docker-image.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

build=1
case ${1:-} in
"") ;;
--no-build) build=0 ;;
-h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument: $1 (try --help)" ;;
esac

command -v docker >/dev/null || die "docker is required"
command -v ldd >/dev/null || die "ldd is required"

t0=$(now)
if ((build)); then
    command -v cargo >/dev/null || die "cargo is required (or pass --no-build)"
    echo "==> cargo build --release"
    (cd "$REPO" && cargo build --release --locked -p dcache --bin dcache) || die "cargo build --release failed"
    echo "    built in $(secs "$t0")s"
fi
[[ -x $BIN ]] || die "$BIN does not exist (run without --no-build)"

# Stage in a fresh directory under the target dir (ignored by git and by
# .dockerignore); only this directory is sent to the Docker daemon.
STAGE=$TARGET_DIR/docker-image
rm -rf "$STAGE"
ROOT=$STAGE/rootfs
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc" "$ROOT/data" "$ROOT/tmp"
trap 'rm -rf "$STAGE"' EXIT

echo "==> assembling root filesystem"
cp "$BIN" "$ROOT/usr/local/bin/dcache"
if command -v objcopy >/dev/null; then
    # Keep the symbol table (function names in panics' backtraces), drop DWARF.
    objcopy --strip-debug "$ROOT/usr/local/bin/dcache"
fi
chmod 0755 "$ROOT/usr/local/bin/dcache"

# Every library the dynamic loader needs, at the path ldd reports (the
# loader's own path is baked into the binary as its interpreter).
libs=$(ldd "$BIN" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }')
[[ -n $libs ]] || die "ldd listed no libraries for $BIN (a static binary needs none; adjust this script)"
if ldd "$BIN" | grep -q "not found"; then
    ldd "$BIN" >&2
    die "ldd reports missing libraries"
fi
for lib in $libs; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib" # -L: the file, not the symlink (e.g. /lib64/ld-linux-x86-64.so.2)
    echo "    $lib"
done

cat >"$ROOT/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
dcache:x:$UID_GID:$UID_GID:dcache:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat >"$ROOT/etc/group" <<GROUP
root:x:0:
dcache:x:$UID_GID:
nogroup:x:65534:
GROUP
# glibc resolves names via /etc/hosts then DNS (Docker mounts both files).
echo "hosts: files dns" >"$ROOT/etc/nsswitch.conf"
chmod 0644 "$ROOT/etc/passwd" "$ROOT/etc/group" "$ROOT/etc/nsswitch.conf"
chmod 1777 "$ROOT/tmp"
chmod 0750 "$ROOT/data"
# Two tarballs with explicit numeric owners (no root needed to build them):
# everything root-owned except /data, owned by the dcache user. ADD extracts
# a local tar archive keeping those owners (COPY would make /data root's).
tar --numeric-owner --owner=0 --group=0 -C "$ROOT" --exclude=./data -cf "$STAGE/rootfs.tar" .
tar --numeric-owner --owner=$UID_GID --group=$UID_GID -C "$ROOT" -cf "$STAGE/data.tar" ./data
rm -rf "$ROOT"
cp "$REPO/deploy/Dockerfile.offline" "$STAGE/Dockerfile"

sha=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo nogit)
if [[ $sha != nogit ]] && [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    sha=$sha-dirty
fi
version=$("$BIN" --version 2>/dev/null | awk '{print $2}') || version=unknown

echo "==> docker build ($IMAGE:latest, $IMAGE:$sha)"
previous=$(docker image inspect -f '{{.Id}}' "$IMAGE:latest" 2>/dev/null) || previous=""
tb=$(now)
# The legacy builder is what a docker 20.10 engine without buildx uses; the
# Dockerfile works with BuildKit too.
DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -q \
    --label "org.opencontainers.image.revision=$sha" \
    --label "org.opencontainers.image.version=$version" \
    -t "$IMAGE:latest" -t "$IMAGE:$sha" "$STAGE" >/dev/null 2>"$STAGE/build.err" || {
    cat "$STAGE/build.err" >&2
    die "docker build failed"
}
echo "    image built in $(secs "$tb")s"
# Drop the image the tags pointed to before, once nothing else refers to it
# (no tags left, no container using it), so rebuilds do not pile up.
current=$(docker image inspect -f '{{.Id}}' "$IMAGE:latest")
if [[ -n $previous && $previous != "$current" ]] &&
    [[ $(docker image inspect -f '{{len .RepoTags}}' "$previous" 2>/dev/null) == 0 ]]; then
    docker rmi "$previous" >/dev/null 2>&1 || true
fi

size=$(docker image inspect -f '{{.Size}}' "$IMAGE:latest")
echo "==> $IMAGE:latest ($IMAGE:$sha): $(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}') ($size bytes); total $(secs "$t0")s"
