#!/usr/bin/env bash
# Runs the local Cocoon network on the embedded defaults: a local TON chain with a root
# contract, a proxy, a worker serving SmolLM2-135M-Instruct with the embedded llama.cpp engine
# (the model is fetched and sha256-checked on first use), and a client on 127.0.0.1:10000.
# Extra arguments go to `cocoon dev` (e.g. --engine mock, --workers 2, --data-dir DIR).
#
# On a fresh Debian/Ubuntu machine the first run installs the C/C++ build tools llama.cpp
# needs (cmake, make, a C++ compiler, libclang) with apt-get when they are missing (as root,
# or through a password-less sudo; otherwise it stops and names the packages), then builds
# in release mode (about 10 minutes on 2 cores the first time).
set -euo pipefail
# What `cocoon dev` prints (paths, commands) is written for the directory you ran this from.
export COCOON_DEV_CALLER_DIR="$PWD"
cd "$(dirname "$0")/.."

./scripts/ensure-build-deps.sh

exec cargo run --release -p cocoon -- dev "$@"
