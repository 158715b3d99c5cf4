#!/usr/bin/env bash
# Installs the independent MCP clients that tests/third_party_clients.rs
# runs against the real server:
#   tests/clients/.venv-mcp1   Python SDK "mcp<2"  (1.x)
#   tests/clients/.venv-mcp2   Python SDK "mcp>=2" (2.x)
#   tests/clients/node_modules @modelcontextprotocol/inspector (pinned in
#                              package.json / package-lock.json)
#   tests/clients/inspector2/node_modules  the Inspector 2.x and Node 22
#                              (npm `node` package), pinned likewise
# Idempotent: each install is skipped when already present at the right
# version, so a second run takes seconds. All output goes to stderr.
set -euo pipefail
exec 1>&2
cd "$(dirname "$0")"

fail() { printf 'tests/clients/setup.sh: %s\n' "$*"; exit 1; }
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || fail "$PYTHON not found (need Python >= 3.10 with venv)"

# venv DIR SPEC CHECK: CHECK is a Python expression over `v` (the installed
# mcp version as a tuple of ints) that is true when the version fits.
venv() {
  local dir=$1 spec=$2 check=$3
  local py=$dir/bin/python
  if [ -x "$py" ] && "$py" - "$check" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
s = m.version("mcp")
v = tuple(int(x) for x in s.split(".")[:3] if x.isdigit())
sys.exit(0 if eval(sys.argv[1]) else 1)
PY
  then
    echo "$dir: mcp $("$py" -c 'import importlib.metadata as m; print(m.version("mcp"))') already installed"
    return
  fi
  echo "$dir: installing \"$spec\""
  [ -x "$py" ] || "$PYTHON" -m venv "$dir" || fail "cannot create venv $dir (is python3-venv installed?)"
  "$py" -m pip install --quiet --disable-pip-version-check "$spec" ||
    fail "pip install \"$spec\" into $dir failed"
  "$py" -c 'import mcp.client.session, mcp.client.streamable_http' ||
    fail "$dir: mcp installed but its client modules do not import"
  echo "$dir: mcp $("$py" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
}

venv .venv-mcp1 "mcp<2" 'v < (2,)'
venv .venv-mcp2 "mcp>=2" 'v >= (2,)'

command -v node >/dev/null || fail "node not found (need Node.js and npm for the MCP Inspector)"
command -v npm >/dev/null || fail "npm not found"
want=$(node -p 'require("./package.json").dependencies["@modelcontextprotocol/inspector"]')
have=$(node -p 'try { require("./node_modules/@modelcontextprotocol/inspector/package.json").version } catch { "" }')
if [ "$have" = "$want" ] && [ -x node_modules/.bin/mcp-inspector ]; then
  echo "node_modules: @modelcontextprotocol/inspector $have already installed"
else
  echo "node_modules: installing @modelcontextprotocol/inspector $want"
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error || fail "npm ci failed"
  else
    npm install --no-audit --no-fund --loglevel=error || fail "npm install failed"
  fi
  [ -x node_modules/.bin/mcp-inspector ] || fail "node_modules/.bin/mcp-inspector missing after npm install"
fi
# The Inspector 2.x (protocol eras legacy/modern) needs Node >= 22.19,
# which the npm `node` package provides next to it (the system node stays).
want2=$(node -p 'require("./inspector2/package.json").dependencies["@modelcontextprotocol/inspector"]')
have2=$(node -p 'try { require("./inspector2/node_modules/@modelcontextprotocol/inspector/package.json").version } catch { "" }')
if [ "$have2" = "$want2" ] && [ -x inspector2/node_modules/.bin/mcp-inspector ] && [ -x inspector2/node_modules/.bin/node ]; then
  echo "inspector2/node_modules: @modelcontextprotocol/inspector $have2 already installed"
else
  echo "inspector2/node_modules: installing @modelcontextprotocol/inspector $want2 and node 22"
  # `npm install`, not `npm ci`: the lock is used either way, but npm ci's
  # sync check refuses it (vite's Windows-only optional dependency
  # napi-windows-process-start-time has no entry), on a fresh machine.
  (cd inspector2 && npm install --no-audit --no-fund --loglevel=error) || fail "npm install in inspector2 failed"
  [ -x inspector2/node_modules/.bin/mcp-inspector ] || fail "inspector2: mcp-inspector missing after npm ci"
fi
echo "MCP test clients ready"
