#!/usr/bin/env bash
# A local Rust builder image for the Dockerfile's default (cargo) target
# where no registry is reachable: the debootstrapped Debian base
# (localhost/debian-bootstrap:bookworm, from tests/podman-env.sh) plus gcc
# and libc6-dev from Debian, plus this machine's rustup toolchain (rustc,
# cargo and the x86_64 standard library only; Debian's own Rust is too old
# for rmcp, which needs 1.88) and this machine's local CA certificates. Not part of CI (a release build in the image
# takes minutes); run by hand, then:
#   podman build --build-arg RUST_IMAGE=localhost/pod-exec-rust-builder:local \
#     --build-arg BASE_IMAGE=localhost/debian-bootstrap:bookworm \
#     -t localhost/pod_exec_mcp_server .
set -euo pipefail
unset CONTAINER_HOST
TAG=${1:-localhost/pod-exec-rust-builder:local}
BASE=${POD_EXEC_BASE_IMAGE:-localhost/debian-bootstrap:bookworm}
toolchain=$(rustc --print sysroot)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rust/bin" "$ctx/rust/lib/rustlib"
cp -a "$toolchain/bin/rustc" "$toolchain/bin/cargo" "$ctx/rust/bin/"
cp -a "$toolchain"/lib/lib*.so* "$ctx/rust/lib/"
cp -a "$toolchain/lib/rustlib/x86_64-unknown-linux-gnu" "$ctx/rust/lib/rustlib/"
# Local CA certificates (a TLS-inspecting egress proxy's, on machines that
# have one) so cargo in the image reaches crates.io as it does on the host.
mkdir -p "$ctx/ca"
cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
cat >"$ctx/Containerfile" <<CF
FROM $BASE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo
CF
podman build -t "$TAG" "$ctx" >&2
echo "$TAG"
