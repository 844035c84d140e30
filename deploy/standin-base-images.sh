#!/usr/bin/env bash
# Check the root Dockerfile on a machine that cannot pull base images.
#
# Builds two local stand-ins for the Dockerfile's base images, then builds
# the Dockerfile against them (unchanged, via its build args):
#   local/standin-bookworm-slim:test  debootstrap --variant=minbase bookworm
#   local/standin-rust-bookworm:test  the same + gcc, libc6-dev, binutils, make, this
#                                     host's stable Rust toolchain and cargo
#                                     registry cache (CARGO_NET_OFFLINE=true)
# and runs the result once (ready, write, read, SIGTERM exit code 0).
# Needs root, debootstrap (apt-get install debootstrap), Debian's archive,
# rustup's stable toolchain in ~/.rustup, a populated ~/.cargo/registry.
# Takes ~10 minutes on 2 cores (most of it compiling the dependencies).
# Removes the stand-ins and the test image afterwards unless KEEP=1.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/dcache-standin.XXXXXX)
TOOLCHAIN=${TOOLCHAIN:-$HOME/.rustup/toolchains/stable-x86_64-unknown-linux-gnu}
cleanup() {
    mountpoint -q "$WORK/builder/proc" && umount "$WORK/builder/proc"
    docker rm -f dcache-standin-test >/dev/null 2>&1 || true
    docker volume rm dcache-standin-data >/dev/null 2>&1 || true
    if [[ ${KEEP:-} != 1 ]]; then
        docker rmi dcache-fromsrc:test local/standin-rust-bookworm:test \
            local/standin-bookworm-slim:test >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

debootstrap --variant=minbase bookworm "$WORK/slim" http://deb.debian.org/debian >"$WORK/debootstrap.log"
chroot "$WORK/slim" apt-get clean
rm -rf "$WORK/slim/var/lib/apt/lists/"*
tar -C "$WORK/slim" -c . | docker import - local/standin-bookworm-slim:test

cp -a "$WORK/slim" "$WORK/builder"
mount -t proc proc "$WORK/builder/proc"
cp /etc/resolv.conf "$WORK/builder/etc/resolv.conf"
chroot "$WORK/builder" apt-get update -q
chroot "$WORK/builder" apt-get install -qy --no-install-recommends gcc libc6-dev binutils make
umount "$WORK/builder/proc"
chroot "$WORK/builder" apt-get clean
rm -rf "$WORK/builder/var/lib/apt/lists/"*
mkdir -p "$WORK/builder/usr/local/rust" "$WORK/builder/usr/local/cargo"
cp -a "$TOOLCHAIN/." "$WORK/builder/usr/local/rust/"
rm -rf "$WORK/builder/usr/local/rust/share/doc"
cp -a "$HOME/.cargo/registry" "$WORK/builder/usr/local/cargo/"
rm -rf "$WORK/builder/usr/local/cargo/registry/src"
tar -C "$WORK/builder" -c . | docker import \
    -c 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV CARGO_HOME=/usr/local/cargo' -c 'ENV CARGO_NET_OFFLINE=true' \
    - local/standin-rust-bookworm:test
rm -rf "$WORK/slim" "$WORK/builder"

dangling_before=$(docker images -qf dangling=true | sort)
DOCKER_BUILDKIT=0 docker build -q --force-rm \
    --build-arg RUST_IMAGE=local/standin-rust-bookworm:test \
    --build-arg RUNTIME_IMAGE=local/standin-bookworm-slim:test \
    -t dcache-fromsrc:test "$REPO"
# The legacy builder leaves the build stage behind as an untagged image (~2 GB).
comm -13 <(echo "$dangling_before") <(docker images -qf dangling=true | sort) |
    xargs -r docker rmi >/dev/null 2>&1 || true

docker run -d --name dcache-standin-test -p 127.0.0.1:31999:11000 -v dcache-standin-data:/data \
    -e DCACHE_NODE_ID=dcache -e DCACHE_RAFT_ADVERTISE_ADDR=127.0.0.1:12000 dcache-fromsrc:test >/dev/null
for _ in $(seq 1 100); do
    curl -sf -o /dev/null localhost:31999/readyz && break
    sleep 0.2
done
curl -sf -XPUT localhost:31999/v1/kv/standin -d ok >/dev/null
[[ $(curl -sf localhost:31999/v1/kv/standin) == ok ]]
docker stop dcache-standin-test >/dev/null
[[ $(docker inspect -f '{{.State.ExitCode}}' dcache-standin-test) == 0 ]]
echo "Dockerfile OK: built on stand-in bases, served a write and a read, exit code 0 on SIGTERM"
