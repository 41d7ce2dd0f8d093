#!/usr/bin/env bash
# Payments on vs off, side by side in one run (docs/BENCHMARKS.md, issue "Payments end to end"):
# for each scenario two dev networks share one mock engine; one pays through the local chain
# (SQLite ledger with synchronous=FULL and group commit, anchors, on-chain charges and payouts;
# every final answer waits for its charge to be durable), the other runs on configured credit.
# `cocoon bench` loads the first ("through") and compares with the second ("direct").
# Then the ledger's own benchmark: accounted requests/s, durable vs not, at 256 tasks and at 1,
# each after the disk's fsync floor measured in the same directory.
#
#   ./scripts/bench-payments.sh            # REQUESTS=10000, ROUNDS=3 (pairs per concurrency)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p cocoon >&2
BIN=target/release/cocoon
ENGINE_PORT=${ENGINE_PORT:-18100}
ON=${OFFSET_ON:-21}
OFF=${OFFSET_OFF:-41}
REQUESTS=${REQUESTS:-10000}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

start_net() {
  local name=$1 offset=$2; shift 2
  "$BIN" dev --data-dir "$WORK/$name" --reset --engine openai --engine-url http://127.0.0.1:$ENGINE_PORT \
       --model mock --workers 1 --port-offset "$offset" "$@" >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 240); do grep -q "network ready" "$WORK/$name.log" && return 0; sleep 0.5; done
  cat "$WORK/$name.log"; exit 1
}

# scenario: name, mock delay per token (ms), concurrency list
scenario() {
  local name=$1 delay=$2 conc=$3
  "$BIN" mock-engine --listen 127.0.0.1:$ENGINE_PORT --tokens 16 --delay-ms "$delay" >"$WORK/engine.log" 2>&1 &
  pids+=($!)
  start_net "paid-$name" "$ON"
  start_net "free-$name" "$OFF" --no-chain
  for c in $conc; do
    # Single runs differ by ±5 % here: ROUNDS pairs, each printed; read the median.
    for round in $(seq "$ROUNDS"); do
      echo "### $name, c$c, non-streamed: payments on (through) vs off (direct), round $round of $ROUNDS"
      echo
      "$BIN" bench --url http://127.0.0.1:$((10000 + ON)) --compare http://127.0.0.1:$((10000 + OFF)) \
           --model mock --concurrency "$c" --requests "$REQUESTS" --warmup 200 2>/dev/null
      echo
    done
  done
  echo "### $name: proxy status after the runs (payments on)"
  echo '```'
  "$BIN" proxy status --data-dir "$WORK/paid-$name" | head -11
  echo '```'
  echo
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

echo "Machine: $(nproc) cores, $(uname -m); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%F)"
echo
scenario "zero-delay mock (16 tokens at once)" 0 "1 32"
REQUESTS=$((REQUESTS / 10)) scenario "mock generating 16 tokens x 5 ms" 5 "32"
echo "### ledger alone: accounted requests/s, durable (synchronous=FULL) vs not (OFF), and the disk's fsync floor"
echo '```'
cargo run -q --release -p cocoon-ledger --example ledger_bench
cargo run -q --release -p cocoon-ledger --example ledger_bench -- --tasks 1 --secs 3 --delay-us 0
echo '```'
