# The server image: pod_exec_mcp alone. It talks to a Podman API through a
# mounted socket (CONTAINER_HOST); there is no podman binary inside.
#
#   podman build -t localhost/pod_exec_mcp_server -f Dockerfile .
#   podman run --rm --network host \
#     -v /run/podman/podman.sock:/run/podman/podman.sock \
#     -e CONTAINER_HOST=unix:///run/podman/podman.sock \
#     -e POD_EXEC_AUTH_TOKEN="$(openssl rand -hex 32)" \
#     localhost/pod_exec_mcp_server
#
# It listens on 0.0.0.0 and therefore refuses to start without a token
# (POD_EXEC_AUTH_TOKEN, --auth-token-file or --auth-tokens-file).
#
# RUST_IMAGE and BASE_IMAGE default to the public images; pass local ones
# with --build-arg where no registry is reachable.
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the bench target, so its file must exist to build.
COPY benches ./benches
RUN cargo build --release --locked --bin pod_exec_mcp \
 && strip target/release/pod_exec_mcp

FROM ${BASE_IMAGE}
COPY --from=build /src/target/release/pod_exec_mcp /usr/local/bin/pod_exec_mcp
# Listen on all interfaces inside the container: the server then requires a
# bearer token and exits with one line saying how to set one. Host headers
# other than localhost/127.0.0.1/::1 still need POD_EXEC_ALLOWED_HOSTS.
ENV MCP_HOST=0.0.0.0 MCP_PORT=8000
EXPOSE 8000
# SIGTERM (podman stop) removes every session container, then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pod_exec_mcp"]
