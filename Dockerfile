# dcache image, built from source on a machine that can pull base images:
#
#   docker build -t dcache:latest .
#
# Without registry access use scripts/docker-image.sh instead (host cargo
# build + FROM scratch); both images behave the same (docs/DOCKER.md).
#
# The builder and the runtime must share a Debian release: the binary links
# against the builder's glibc, so a newer builder (rust:1 follows the newest
# Debian) would produce a binary that bookworm's older glibc cannot load.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, in their own layer: a source change does not rebuild them.
# The workspace's test tooling (jepsen/, testkit/) is only needed as
# manifests: cargo must load them, nothing of them is built. vendor/ holds a
# patched dependency (vendor/README.md) and is built.
COPY Cargo.toml Cargo.lock ./
COPY jepsen/Cargo.toml jepsen/Cargo.toml
COPY testkit/Cargo.toml testkit/Cargo.toml
COPY vendor ./vendor
RUN mkdir -p src/bin/dcache jepsen/src testkit/src testkit/tests \
 && echo 'fn main() {}' > src/bin/dcache/main.rs \
 && touch src/lib.rs testkit/src/lib.rs testkit/tests/cleanup.rs \
 && echo 'fn main() {}' > jepsen/src/main.rs \
 && cargo build --release --locked -p dcache \
 && rm -rf src
COPY src ./src
# touch: the placeholder build left newer timestamps than the copied sources.
RUN touch src/bin/dcache/main.rs src/lib.rs \
 && cargo build --release --locked -p dcache --bin dcache \
 && objcopy --strip-debug target/release/dcache /usr/local/bin/dcache \
 && /usr/local/bin/dcache --version

FROM ${RUNTIME_IMAGE}
RUN groupadd --gid 10001 dcache \
 && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin dcache \
 && mkdir /data \
 && chown 10001:10001 /data \
 && chmod 0750 /data
COPY --from=build /usr/local/bin/dcache /usr/local/bin/dcache

# Same runtime contract as deploy/Dockerfile.offline.
ENV DCACHE_HTTP_BIND_ADDR=0.0.0.0:11000 \
    DCACHE_RAFT_BIND_ADDR=0.0.0.0:12000 \
    DCACHE_REDIS_BIND_ADDR=0.0.0.0:6380 \
    DCACHE_NODE_DATA_DIR=/data
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 11000 12000 6380
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/dcache", "health", "--addr", "127.0.0.1:11000"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/dcache"]
