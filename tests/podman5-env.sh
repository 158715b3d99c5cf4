#!/usr/bin/env bash
# A Podman 5 API service beside the machine's Podman 4.3, for running the
# integration tests against both versions. Not called directly:
#   eval "$(POD_EXEC_PODMAN=5 tests/podman-env.sh)"
# runs tests/podman-env.sh's preparation (packages, containers.conf, base and
# session images in the local Podman) and then this script, with STATE, CONF,
# IMAGE, BASE_IMAGE and ROOT exported.
#
# - builds a Debian trixie root file system holding Podman 5.4 with
#   debootstrap (about 40 s, once; the tar is kept as $STATE/podman5/rootfs.tar
#   and imported into the local Podman as $PODMAN5_IMAGE, labelled with a hash
#   of the recipe so a changed recipe rebuilds it);
# - runs `podman system service` from it in a --privileged container of the
#   local Podman, its socket bind-mounted to $STATE/podman5/sock/podman.sock.
#   The container shares the host's PID namespace (inspect's Pid and the
#   tests' /proc checks see host PIDs, as with a host Podman), /tmp and the
#   repository at the same paths (bind mounts the tests make), and keeps its
#   image store in $STATE/podman5/storage, so the images loaded once stay;
# - loads the session and base images into it (POST /libpod/images/load of
#   a `podman save`) when their ids differ from the local ones;
# - reuses a service already answering on that socket.
#
# Only `export` lines go to stdout. POD_EXEC_ENV_PODMAN5_CONTAINER is exported
# when this run started the container; `tests/podman5-env.sh stop` then
# removes it (and first every container of that Podman 5: they run in
# sub-cgroups of its container and would outlive it).
set -euo pipefail

log() { printf 'podman5-env: %s\n' "$*" >&2; }
die() { printf 'podman5-env: error: %s\n' "$*" >&2; exit 1; }

# The podman CLI below is the local one: CONTAINER_HOST would make it a
# remote client of whatever service that names (in tests/run.sh, at times
# the Podman 5 this script serves).
unset CONTAINER_HOST
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
STATE=${STATE:-${POD_EXEC_ENV_DIR:-$ROOT/.podman-env}}
[ -z "${CONF:-}" ] || export CONTAINERS_CONF=$CONF

STATE5=$STATE/podman5
PODMAN5_IMAGE=${POD_EXEC_PODMAN5_IMAGE:-localhost/pod-exec-mcp-podman5:trixie}
NAME=pod-exec-mcp-podman5-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
sockdir=$STATE5/sock
if [ ${#sockdir} -gt 90 ]; then # sun_path holds 108 bytes
  sockdir=/tmp/$NAME
fi
sock=$sockdir/podman.sock
ping() { curl -fsS --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }
api() { curl -fsS --max-time 600 --unix-socket "$sock" "$@"; }

if [ "${1:-}" = stop ]; then
  if ping; then
    for id in $(api 'http://d/v5.0.0/libpod/containers/json?all=true' |
      python3 -c 'import json,sys; [print(c["Id"]) for c in (json.load(sys.stdin) or [])]'); do
      api -X DELETE "http://d/v5.0.0/libpod/containers/$id?force=true&timeout=0" >/dev/null || true
    done
  fi
  cid=$(podman inspect --format '{{.Id}}' "$NAME" 2>/dev/null || true)
  for _ in 1 2 3; do
    podman container exists "$NAME" || break
    podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || sleep 1
  done
  ! podman container exists "$NAME" || log "warning: could not remove $NAME: $(podman rm -f -t 0 "$NAME" 2>&1)"
  if [ -n "$cid" ]; then # last resort: whatever still runs in its cgroup tree
    find /sys/fs/cgroup/pids -path "*libpod-$cid*" -name cgroup.procs 2>/dev/null |
      while read -r f; do xargs -r kill -9 <"$f" 2>/dev/null || true; done
  fi
  log "stopped $NAME"
  exit 0
fi

: "${CONF:?run through tests/podman-env.sh with POD_EXEC_PODMAN=5}"
: "${IMAGE:?}" "${BASE_IMAGE:?}"
mkdir -p "$STATE5/storage" "$sockdir"

# --- the Podman 5 image ------------------------------------------------------------
# runc: crun fails on this kernel's hybrid cgroups; cgroupfs and file events:
# there is no systemd inside; the ulimits and exit_command_delay as for 4.3.
packages=podman,runc,conmon,catatonit,netavark,aardvark-dns,nftables,iptables,fuse-overlayfs,ca-certificates
inner_conf='# Written by tests/podman5-env.sh.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
exit_command_delay = 5
'
recipe=$(printf 'trixie %s\n%s' "$packages" "$inner_conf" | sha256sum | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "pod-exec-mcp.podman5-recipe"}}' "$PODMAN5_IMAGE" 2>/dev/null || true)
if [ "$have" != "$recipe" ]; then
  tarball=$STATE5/rootfs.tar
  if [ "$(cat "$STATE5/rootfs.recipe" 2>/dev/null || true)" != "$recipe" ] || [ ! -s "$tarball" ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    rootfs=$STATE5/rootfs
    rm -rf "$rootfs" "$tarball"
    log "building a Debian trixie root file system with Podman 5 (debootstrap from $mirror, about 40 s)"
    debootstrap --variant=minbase --include="$packages" trixie "$rootfs" "$mirror" \
      >"$STATE5/debootstrap.log" 2>&1 || die "debootstrap failed; see $STATE5/debootstrap.log"
    mkdir -p "$rootfs/etc/containers"
    printf '%s' "$inner_conf" >"$rootfs/etc/containers/containers.conf"
    tar -C "$rootfs" -c . >"$tarball"
    rm -rf "$rootfs"
    echo "$recipe" >"$STATE5/rootfs.recipe"
  fi
  log "importing $PODMAN5_IMAGE"
  podman import --change "LABEL=pod-exec-mcp.podman5-recipe=$recipe" "$tarball" "$PODMAN5_IMAGE" >&2
fi

# --- the service ------------------------------------------------------------------
started=
if ! ping; then
  for _ in 1 2 3; do
    podman container exists "$NAME" || break
    podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || sleep 1
  done
  ! podman container exists "$NAME" || log "warning: could not remove $NAME: $(podman rm -f -t 0 "$NAME" 2>&1)"
  rm -f "$sock"
  log "starting Podman 5 in container $NAME on unix://$sock"
  podman run -d --name "$NAME" --privileged --pid=host \
    --label "pod-exec-mcp.podman5-env=$ROOT" \
    -v /tmp:/tmp -v "$ROOT:$ROOT" -v "$sockdir:/sock" \
    -v "$STATE5/storage:/var/lib/containers" \
    -e PODMAN_IGNORE_CGROUPSV1_WARNING=1 \
    "$PODMAN5_IMAGE" podman system service --time=0 unix:///sock/podman.sock >/dev/null ||
    die "could not start the Podman 5 container"
  started=$NAME
  for _ in $(seq 1 100); do
    ping && break
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ] ||
      die "the Podman 5 service exited: $(podman logs "$NAME" 2>&1 | tail -3)"
    sleep 0.1
  done
  ping || die "the Podman 5 service did not answer on $sock within 10 s: $(podman logs "$NAME" 2>&1 | tail -3)"
fi
version=$(curl -fsS -D - -o /dev/null --unix-socket "$sock" http://d/_ping | awk -F': ' 'tolower($1)=="libpod-api-version" {print $2}' | tr -d '\r')
case "$version" in
  5.*) ;;
  *) die "the service on $sock is Podman ${version:-?}, not 5.x" ;;
esac

# --- images -------------------------------------------------------------------------
for img in "$IMAGE" "$BASE_IMAGE"; do
  want=$(podman image inspect --format '{{.Id}}' "$img")
  got=$(api "http://d/v5.0.0/libpod/images/$(printf '%s' "$img" | sed 's|/|%2F|g')/json" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("Id",""))' 2>/dev/null || true)
  if [ "$got" != "$want" ]; then
    log "loading $img into Podman $version"
    reply=$(podman save --format docker-archive "$img" 2>/dev/null |
      api -X POST -H "Content-Type: application/x-tar" -T - http://d/v5.0.0/libpod/images/load) ||
      die "loading $img into Podman 5 failed"
    log "loaded: $reply"
  fi
done

printf 'export CONTAINER_HOST=%q\n' "unix://$sock"
printf 'export CONTAINERS_CONF=%q\n' "$CONF"
printf 'export POD_EXEC_IMAGE=%q\n' "$IMAGE"
if [ -n "$started" ]; then
  printf 'export POD_EXEC_ENV_PODMAN5_CONTAINER=%q\n' "$started"
fi
log "ready: CONTAINER_HOST=unix://$sock (Podman $version) image=$IMAGE"
