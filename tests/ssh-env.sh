#!/usr/bin/env bash
# What tests/ssh_remote.rs needs for CONTAINER_HOST=ssh://: OpenSSH's client
# and server binaries (Debian openssh-client, openssh-server) and sshd's
# privilege-separation directory. The test runs its own sshd (a free
# loopback port, its own host key and config in a temporary directory);
# nothing here starts or configures the system's sshd. Idempotent: a no-op
# when both are installed. Run as root.
set -euo pipefail
log() { printf 'ssh-env: %s\n' "$*" >&2; }

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
  [ "$(id -u)" = 0 ] || { log "error: openssh-server/openssh-client missing; run as root to install"; exit 1; }
  # Installing openssh-server would start the system's sshd on port 22;
  # a policy-rc.d that says no keeps it stopped (unless one is there).
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  log "installing openssh-server openssh-client"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends openssh-server openssh-client >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends openssh-server openssh-client >/dev/null; }
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
install -d -m 755 /run/sshd
log "ok: $(ssh -V 2>&1)"
