#!/usr/bin/env bash
# A rootless Podman API service: a non-root user's own Podman, for the tests
# that run the server against it (tests/rootless.rs). Run as root, after
# tests/podman-env.sh (whose session image it copies):
#   eval "$(tests/podman-env.sh)" && eval "$(tests/rootless-env.sh)"
#
# - creates the user $POD_EXEC_ROOTLESS_USER (default pod-exec-rootless) with
#   /etc/subuid and /etc/subgid ranges, and its XDG_RUNTIME_DIR
#   (/run/user/UID), when missing;
# - writes its ~/.config/containers/containers.conf (runc, the ulimits this
#   machine allows, cgroupfs and file events: no systemd user session here)
#   and storage.conf (overlay);
# - lets it open /dev/net/tun (an ACL for that user only) so slirp4netns
#   gives its sandboxes the default network;
# - starts `podman system service` as that user on its default socket,
#   unix://$XDG_RUNTIME_DIR/podman/podman.sock, unless one answers there;
# - loads the session image into the user's store (POST /libpod/images/load)
#   when its id differs from the local one.
#
# Only `export` lines go to stdout: POD_EXEC_ROOTLESS_HOST (the socket),
# POD_EXEC_ROOTLESS_USER, and POD_EXEC_ROOTLESS_SERVICE_PID when this run
# started the service (the caller stops exactly that process).
set -euo pipefail

log() { printf 'rootless-env: %s\n' "$*" >&2; }
die() { printf 'rootless-env: error: %s\n' "$*" >&2; exit 1; }

# The podman CLI below is the local one: CONTAINER_HOST would make it a
# remote client of whatever service that names (in tests/run.sh, at times
# the Podman 5 this script serves).
unset CONTAINER_HOST
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USER_NAME=${POD_EXEC_ROOTLESS_USER:-pod-exec-rootless}
IMAGE=${POD_EXEC_IMAGE:-localhost/pod_exec_mcp_base:latest}
# Subordinate ids: away from the rootful sandboxes' default map
# (1000000000:65536) and from useradd's automatic ranges.
SUB_START=${POD_EXEC_ROOTLESS_SUBIDS:-300000000}
SUB_COUNT=65536
[ "$(id -u)" = 0 ] || die "run as root (it creates the user and starts its service)"

if ! id -u "$USER_NAME" >/dev/null 2>&1; then
  log "creating user $USER_NAME"
  useradd --create-home --shell /bin/sh --comment "pod_exec_mcp rootless tests" "$USER_NAME"
fi
uid=$(id -u "$USER_NAME")
gid=$(id -g "$USER_NAME")
home=$(getent passwd "$USER_NAME" | cut -d: -f6)
for f in /etc/subuid /etc/subgid; do
  grep -q "^$USER_NAME:" "$f" 2>/dev/null || echo "$USER_NAME:$SUB_START:$SUB_COUNT" >>"$f"
done
runtime=/run/user/$uid
install -d -o "$uid" -g "$gid" -m 700 "$runtime" "$runtime/podman"

conf_dir=$home/.config/containers
conf_text='# Written by tests/rootless-env.sh.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
exit_command_delay = 5
'
if [ "$(cat "$conf_dir/containers.conf" 2>/dev/null || true)" != "$(printf '%s' "$conf_text")" ]; then
  install -d -o "$uid" -g "$gid" "$home/.config" "$conf_dir"
  printf '%s' "$conf_text" >"$conf_dir/containers.conf"
  chown "$uid:$gid" "$conf_dir/containers.conf"
fi

# overlay, not vfs: rootless Podman 4.3 falls back to vfs here, which copies
# the whole image for every container (9 s per create and per remove).
storage_text='# Written by tests/rootless-env.sh.
[storage]
driver = "overlay"
'
if [ "$(cat "$conf_dir/storage.conf" 2>/dev/null || true)" != "$(printf '%s' "$storage_text")" ]; then
  printf '%s' "$storage_text" >"$conf_dir/storage.conf"
  chown "$uid:$gid" "$conf_dir/storage.conf"
fi
store=$home/.local/share/containers/storage
if [ -d "$store/vfs" ] && ! curl -fsS --max-time 2 --unix-socket "$runtime/podman/podman.sock" http://d/_ping >/dev/null 2>&1; then
  # A store this script made with the old driver (the user is this test
  # setup's own): podman refuses to switch drivers over it.
  log "removing $USER_NAME's vfs image store"
  rm -rf "$store"
fi

if [ -c /dev/net/tun ]; then
  if ! command -v setfacl >/dev/null 2>&1; then
    log "installing acl (setfacl)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq acl >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq acl >&2; }
  fi
  setfacl -m "u:$USER_NAME:rw" /dev/net/tun
fi

sock=$runtime/podman/podman.sock
host=unix://$sock
ping() { curl -fsS --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }
api() { curl -fsS --max-time 600 --unix-socket "$sock" "$@"; }
started_pid=
if ! ping; then
  log "starting $USER_NAME's podman system service on $host"
  logfile=$runtime/podman-service.log
  # From the user's runtime dir (conmon writes `oom` files into the
  # service's working directory), every descriptor redirected.
  (cd "$runtime" && exec setsid env -i HOME="$home" USER="$USER_NAME" LOGNAME="$USER_NAME" \
    PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="$runtime" \
    setpriv --reuid "$uid" --regid "$gid" --init-groups \
    podman system service --time=0 "$host" </dev/null >"$logfile" 2>&1) &
  started_pid=$!
  for _ in $(seq 1 100); do
    ping && break
    kill -0 "$started_pid" 2>/dev/null || die "the rootless service exited: $(tail -3 "$logfile")"
    sleep 0.1
  done
  ping || die "the rootless service did not answer on $sock within 10 s: $(tail -3 "$logfile")"
fi
rootless=$(api http://d/v4.0.0/libpod/info | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"]["security"]["rootless"])')
[ "$rootless" = True ] || die "the service on $sock is not rootless"

want=$(podman image inspect --format '{{.Id}}' "$IMAGE")
got=$(api "http://d/v4.0.0/libpod/images/$(printf '%s' "$IMAGE" | sed 's|/|%2F|g')/json" 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("Id",""))' 2>/dev/null || true)
if [ "$got" != "$want" ]; then
  log "loading $IMAGE into $USER_NAME's Podman"
  podman save --format docker-archive "$IMAGE" 2>/dev/null |
    api -X POST -H "Content-Type: application/x-tar" -T - http://d/v4.0.0/libpod/images/load >&2 ||
    die "loading $IMAGE failed"
  echo >&2
fi

printf 'export POD_EXEC_ROOTLESS_HOST=%q\n' "$host"
printf 'export POD_EXEC_ROOTLESS_USER=%q\n' "$USER_NAME"
if [ -n "$started_pid" ]; then
  printf 'export POD_EXEC_ROOTLESS_SERVICE_PID=%q\n' "$started_pid"
fi
log "ready: $USER_NAME's Podman at $host"
