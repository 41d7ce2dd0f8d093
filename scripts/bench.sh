#!/usr/bin/env bash
# Reproduces the numbers in docs/BENCHMARKS.md: the same mock engine measured directly and
# through the whole network (client -> proxy -> worker, PoW + RA-TLS + Cocoon framing), side by
# side in one run, for each scenario of the issue. Loopback only; every run is bounded.
#
#   ./scripts/bench.sh            # all scenarios
#   REQUESTS=2000 ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p cocoon >&2
BIN=target/release/cocoon
ENGINE_PORT=${ENGINE_PORT:-18000}
OFFSET=${PORT_OFFSET:-7}            # dev network on 10007/11007.. to stay clear of a running one
REQUESTS=${REQUESTS:-3000}
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# scenario: name, mock tokens, mock delay ms, concurrency, requests, stream flag
run() {
  local name=$1 tokens=$2 delay=$3 conc=$4 requests=$5 stream=$6
  echo "### $name" ; echo
  "$BIN" mock-engine --listen 127.0.0.1:$ENGINE_PORT --tokens "$tokens" --delay-ms "$delay" >"$WORK/engine.log" 2>&1 &
  pids+=($!)
  "$BIN" dev --data-dir "$WORK/dev-$name" --reset --no-chain --engine openai --engine-url http://127.0.0.1:$ENGINE_PORT \
       --port-offset "$OFFSET" >"$WORK/dev.log" 2>&1 &
  local dev=$!
  pids+=($dev)
  for _ in $(seq 120); do grep -q "network ready" "$WORK/dev.log" && break; sleep 0.5; done
  grep -q "network ready" "$WORK/dev.log" || { cat "$WORK/dev.log"; exit 1; }
  "$BIN" bench --url http://127.0.0.1:$((10000 + OFFSET)) --compare http://127.0.0.1:$ENGINE_PORT \
       --model mock --concurrency "$conc" --requests "$requests" --warmup 50 $stream
  echo
  kill "$dev" "${pids[0]}" 2>/dev/null || true
  wait 2>/dev/null || true
  pids=()
}

echo "Machine: $(nproc) cores, $(uname -m); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%F)"
echo
run "c1-nonstream-zero-delay" 16 0 1 "$REQUESTS" ""
run "c32-nonstream-zero-delay" 16 0 32 "$REQUESTS" ""
run "c32-stream-50x2ms" 50 2 32 "$REQUESTS" "--stream"
run "c1-stream-50x2ms" 50 2 1 300 "--stream"
