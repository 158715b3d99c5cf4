#!/usr/bin/env bash
# Prepares a real Podman for this project's tests and for running the server
# on a fresh Debian machine, idempotently:
#   eval "$(tests/podman-env.sh)"
#
# - installs podman, runc, catatonit, debootstrap (and curl) when missing;
# - writes a project-local containers.conf (runc, ulimits this sandbox allows,
#   short exit_command_delay) used through CONTAINERS_CONF; /etc is not edited;
# - builds a local Debian base image offline (debootstrap + import) when absent,
#   because no image registry is reachable here;
# - builds the session image from images/Containerfile FROM that base when it
#   is absent or images/ changed;
# - starts a Podman API service on a project-private socket unless one is
#   already answering there (or at an exported CONTAINER_HOST).
#
# Only `export` lines go to stdout; progress goes to stderr.
# A second run takes a second or two.
#
# Knobs (environment):
#   POD_EXEC_ENV_DIR      state directory      (default: <repo>/.podman-env)
#   POD_EXEC_IMAGE        session image name   (default: localhost/pod_exec_mcp_base:latest)
#   POD_EXEC_BASE_IMAGE   base for the build   (default: localhost/debian-bootstrap:bookworm)
#   POD_EXEC_ENV_REUSE=0  ignore an exported CONTAINER_HOST and use the private socket
#   POD_EXEC_PODMAN=5     serve Podman 5 instead (tests/podman5-env.sh: a trixie
#                         Podman 5.4 in a container of the local Podman)
set -euo pipefail

log() { printf 'podman-env: %s\n' "$*" >&2; }
die() { printf 'podman-env: error: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${POD_EXEC_ENV_DIR:-$ROOT/.podman-env}
IMAGE=${POD_EXEC_IMAGE:-localhost/pod_exec_mcp_base:latest}
BASE_IMAGE=${POD_EXEC_BASE_IMAGE:-localhost/debian-bootstrap:bookworm}
SUITE=bookworm
mkdir -p "$STATE"

# --- packages -----------------------------------------------------------------
need=()
for pair in podman:podman runc:runc debootstrap:debootstrap curl:curl conmon:conmon; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null 2>&1 || need+=(catatonit)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}; install them as root (apt-get install -y ${need[*]})"
  log "installing ${need[*]} uidmap slirp4netns"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" uidmap slirp4netns >&2
fi

# --- containers.conf ------------------------------------------------------------
# runc: crun fails on this kernel's hybrid cgroup layout. ulimits: podman's
# defaults exceed the sandbox's hard limits. exit_command_delay: each API exec
# otherwise leaves a conmon behind for 300 s.
CONF=$STATE/containers.conf
conf_text='# Written by tests/podman-env.sh; used through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
exit_command_delay = 5
'
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$(printf '%s' "$conf_text")" ]; then
  printf '%s' "$conf_text" >"$CONF"
fi
export CONTAINERS_CONF=$CONF

# --- base image (offline) ----------------------------------------------------------
if ! podman image exists "$BASE_IMAGE"; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  rootfs=$STATE/rootfs
  rm -rf "$rootfs"
  log "building $BASE_IMAGE with debootstrap from $mirror (about a minute)"
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $STATE/debootstrap.log"
  tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >&2
  rm -rf "$rootfs"
fi

# --- session image --------------------------------------------------------------
# Rebuilt when anything under images/ or the base changes: the hash is kept as
# an image label.
base_id=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")
# Only the files directly under images/: its subdirectories are other
# images' contexts (images/k8s/).
want=$( (cd "$ROOT/images" && find . -maxdepth 1 -type f -print0 | sort -z | xargs -0 sha256sum; echo "$base_id") | sha256sum | cut -c1-32)
have=$(podman image inspect --format '{{index .Labels "pod-exec-mcp.context-hash"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  log "building $IMAGE from images/Containerfile (FROM $BASE_IMAGE)"
  podman build --build-arg "BASE=$BASE_IMAGE" --label "pod-exec-mcp.context-hash=$want" \
    -t "$IMAGE" -f "$ROOT/images/Containerfile" "$ROOT/images" >"$STATE/build.log" 2>&1 ||
    die "image build failed; see $STATE/build.log"
fi

# --- API service ------------------------------------------------------------------
if [ "${POD_EXEC_PODMAN:-}" = 5 ]; then
  export STATE CONF IMAGE BASE_IMAGE ROOT
  exec "$ROOT/tests/podman5-env.sh"
fi

ping() { # ping a CONTAINER_HOST value; only unix:// and tcp:// are probed
  case "$1" in
    unix://*) curl -fsS --max-time 2 --unix-socket "${1#unix://}" http://d/_ping >/dev/null 2>&1 ;;
    tcp://*) curl -fsS --max-time 2 "http://${1#tcp://}/_ping" >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

started_pid=
if [ -n "${CONTAINER_HOST:-}" ] && [ "${POD_EXEC_ENV_REUSE:-1}" != 0 ] && ping "$CONTAINER_HOST"; then
  host=$CONTAINER_HOST
  log "using the Podman service already answering at $host"
else
  sock=$STATE/podman.sock
  # A unix socket path must fit in sun_path (108 bytes).
  if [ ${#sock} -gt 100 ]; then
    sock=/tmp/pod-exec-mcp-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/podman.sock
    mkdir -p "$(dirname "$sock")"
  fi
  host=unix://$sock
  if ! ping "$host"; then
    rm -f "$sock"
    log "starting podman system service on $host"
    # Detached, with every descriptor redirected: a background child that kept
    # our stdout open would make $(...) (and CI) wait forever.
    # Started from $STATE: conmon writes an `oom` file into the service's
    # working directory when a sandbox hits its memory limit.
    (cd "$STATE" && exec setsid podman system service --time=0 "$host" </dev/null >"$STATE/service.log" 2>&1) &
    started_pid=$!
    echo "$started_pid" >"$STATE/service.pid"
    for _ in $(seq 1 100); do
      ping "$host" && break
      kill -0 "$started_pid" 2>/dev/null || die "podman system service exited; see $STATE/service.log"
      sleep 0.1
    done
    ping "$host" || die "podman system service did not answer on $sock within 10 s; see $STATE/service.log"
  fi
fi

printf 'export CONTAINER_HOST=%q\n' "$host"
printf 'export CONTAINERS_CONF=%q\n' "$CONF"
printf 'export POD_EXEC_IMAGE=%q\n' "$IMAGE"
if [ -n "$started_pid" ]; then
  # Lets a caller (.ci/run) stop exactly the service this run started.
  printf 'export POD_EXEC_ENV_SERVICE_PID=%q\n' "$started_pid"
fi
log "ready: CONTAINER_HOST=$host image=$IMAGE"
