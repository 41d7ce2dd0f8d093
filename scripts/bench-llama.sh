#!/usr/bin/env bash
# Reproduces the embedded-engine figures in docs/BENCHMARKS.md, in one run on one machine:
#  1. the engine alone vs a minimal direct llama.cpp decode loop on the same model (release);
#  2. the same model through the whole network (client -> proxy -> worker) with `cocoon bench`,
#     one stream and four concurrent streams (TTFT = prefill, ITL = decode step).
# Loopback only; bounded request counts.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-build-deps.sh
cargo build --release -p cocoon >&2
BIN=target/release/cocoon
OFFSET=${PORT_OFFSET:-7}
WORK=$(mktemp -d)
dev=""
cleanup() { [ -n "$dev" ] && kill "$dev" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN" model fetch >&2

echo "Machine: $(nproc) cores, $(uname -m); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u +%F)"
echo
echo "### engine alone vs direct llama.cpp loop (64 tokens, greedy, best of 3)"
echo
echo '```'
cargo test --release -q -p cocoon-engine --features llama -- --ignored --nocapture measure_throughput 2>/dev/null | grep -E "tok/s"
echo '```'
echo

"$BIN" dev --data-dir "$WORK/dev" --no-chain --port-offset "$OFFSET" >"$WORK/dev.log" 2>&1 &
dev=$!
for _ in $(seq 240); do grep -q "network ready" "$WORK/dev.log" && break; sleep 0.5; done
grep -q "network ready" "$WORK/dev.log" || { cat "$WORK/dev.log"; exit 1; }
URL=http://127.0.0.1:$((10000 + OFFSET))
for c in 1 4; do
  echo "### through the network, $c concurrent stream(s), 64 tokens each"
  echo
  "$BIN" bench --url "$URL" --model SmolLM2-135M-Instruct --stream --max-tokens 64 \
      --prompt "Once upon a time" --concurrency "$c" --requests $((6 * c)) --warmup 1
  echo
done
