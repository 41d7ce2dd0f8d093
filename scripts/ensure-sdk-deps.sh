#!/usr/bin/env bash
# Installs what the SDK compatibility tests (tests/sdk, run by tests/e2e/sdk.rs) need, at the
# versions pinned there: the official `openai` Python package and `jsonschema` in
# tests/sdk/.venv (from PyPI), the official `openai` Node package and `ajv` in
# tests/sdk/node_modules (from the npm registry, as package-lock.json says). Python's `venv`
# module comes from apt's python3-venv when it is missing (as root or through a password-less
# sudo; otherwise it stops and names the package). Quiet and quick when all is there already.
set -euo pipefail
cd "$(dirname "$0")/../tests/sdk"

py=${PYTHON:-python3}

# python3 and its venv module (Debian splits it out: python3-venv), from apt when missing.
apt_install_python() {
  echo "sdk deps: python3 cannot make a venv -> apt packages python3 python3-venv" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then sudo=(sudo -n); else
      echo "sdk deps: not root and no password-less sudo; run: apt-get install python3 python3-venv" >&2
      exit 1
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "sdk deps: no apt-get; install python3 with its venv module" >&2; exit 1; }
  local log
  log=$(mktemp)
  if ! { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  py=python3
}

make_venv() {
  rm -rf .venv
  command -v "$py" >/dev/null 2>&1 && "$py" -m venv .venv >/dev/null 2>&1
}

# The venv is (re)built when requirements.txt changed since it was made, or it is missing.
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/requirements.txt; then
  echo "sdk deps: Python venv with $(tr '\n' ' ' <requirements.txt)(PyPI)" >&2
  if ! make_venv; then
    apt_install_python
    make_venv || { echo "sdk deps: '$py -m venv' still fails after installing python3-venv" >&2; exit 1; }
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/requirements.txt
fi

command -v npm >/dev/null 2>&1 || { echo "sdk deps: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -d node_modules/openai ] || ! cmp -s package-lock.json node_modules/.package-lock.json.copy; then
  echo "sdk deps: Node packages from package-lock.json (npm registry)" >&2
  npm ci --no-audit --no-fund --silent
  cp package-lock.json node_modules/.package-lock.json.copy
fi
echo "sdk deps: python $(.venv/bin/python -c 'import openai; print("openai", openai.__version__)'), node $(node -p 'require("./node_modules/openai/package.json").version' | sed 's/^/openai /')" >&2
