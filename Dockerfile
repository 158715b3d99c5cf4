# The server image: pod_exec_mcp alone, as a non-root user (uid 10001). It
# talks to a Podman API through a mounted socket (CONTAINER_HOST); there is
# no podman binary (and no ssh client) inside.
#
# Two ways to get the binary in (see README, "Run the server in a
# container"):
#   podman build -t localhost/pod_exec_mcp_server .
#       the `build` stage compiles it with cargo in RUST_IMAGE (needs that
#       image and crates.io);
#   cargo build --release && \
#   podman build --target prebuilt -t localhost/pod_exec_mcp_server .
#       copies the host's target/release/pod_exec_mcp (PREBUILT) instead; no
#       Rust toolchain in any image. This is the path the tests exercise.
#
# It listens on 0.0.0.0:8000 and therefore refuses to start without a token
# (POD_EXEC_AUTH_TOKEN, --auth-token-file or --auth-tokens-file).
#
# Base images are build arguments, so the image builds from local ones where
# no registry is reachable, e.g.
#   --build-arg BASE_IMAGE=localhost/debian-bootstrap:bookworm
# BASE_IMAGE needs glibc (the binary is a glibc one) and, for the CA
# certificates, apt with a reachable Debian mirror (the `runtime-base`
# stage installs ca-certificates and nothing else).
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# ---- build: cargo in a Rust image --------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# build_image.rs embeds images/ (the session image's Containerfile).
COPY images ./images
# Cargo.toml declares the bench target, so its file must exist to build.
COPY benches ./benches
RUN cargo build --release --locked --bin pod_exec_mcp \
 && strip target/release/pod_exec_mcp

# ---- runtime-base: the base, CA certificates, the non-root user ---------------
FROM ${BASE_IMAGE} AS runtime-base
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && groupadd --system --gid 10001 pod-exec \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pod-exec
# Listen on all interfaces inside the container: the server then requires a
# bearer token and exits with one line saying how to set one. Host headers
# other than localhost/127.0.0.1/::1 still need POD_EXEC_ALLOWED_HOSTS.
ENV MCP_HOST=0.0.0.0 MCP_PORT=8000 CONTAINER_HOST=unix:///run/podman/podman.sock
EXPOSE 8000
# SIGTERM (podman stop) removes every session container, then exits.
STOPSIGNAL SIGTERM
# The rootful socket is 0600 root: run with --user 0 for it (README); a
# rootless user's socket: --user UID:GID of that user.
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/pod_exec_mcp"]

# ---- prebuilt: a binary built on the host (--target prebuilt) ----------------
FROM runtime-base AS prebuilt
ARG PREBUILT=target/release/pod_exec_mcp
COPY --chmod=0755 ${PREBUILT} /usr/local/bin/pod_exec_mcp

# ---- runtime (default): the binary from the build stage -----------------------
FROM runtime-base AS runtime
COPY --from=build /src/target/release/pod_exec_mcp /usr/local/bin/pod_exec_mcp
