#!/usr/bin/env bash
# The sealed path vs the clear path, side by side in one run (docs/BENCHMARKS.md, "Sealed path
# (issue 15)"): for each scenario one network (`cocoon dev --setup-only --engine openai
# --no-chain`: 1 proxy, 1 worker, each its own process, in front of `cocoon mock-engine`) with
# TWO clients on the same proxy: one with `[privacy] sealed = "preferred"` (every request sealed
# to the attested worker; checked below through `X-Cocoon-Path`), one with `sealed = "off"`
# (Cocoon's clear path). `cocoon bench` loads the sealed client ("through") and compares it with
# the clear one ("direct"; it runs first). Then the client's worker verification, cold vs cached
# (an #[ignore]d micro-benchmark in crates/client/src/sealing.rs). Loopback only; bounded.
#
#   ./scripts/bench-sealed.sh                 # REQUESTS=5000, ROUNDS=3
#   BUILD=1 ./scripts/bench-sealed.sh         # (re)build the release binary first
#   BIN=target/debug/cocoon REQUESTS=200 ROUNDS=1 VERIFY=0 ./scripts/bench-sealed.sh   # a dry run
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/cocoon}
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$BIN" ]; then cargo build --release -p cocoon >&2; fi
OFF=${PORT_OFFSET:-160}                  # sealed client on 10000+OFF, clear one on 10001+OFF
ENGINE_PORT=${ENGINE_PORT:-18160}
REQUESTS=${REQUESTS:-5000}
ROUNDS=${ROUNDS:-3}
SEALED=http://127.0.0.1:$((10000 + OFF))
CLEAR=http://127.0.0.1:$((10001 + OFF))
WORK=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The X-Cocoon-Path of one short completion through the client at $1 (empty when it fails).
path_of() {
  curl -s -m 5 -o /dev/null -D - "$1/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"mock","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}' |
    tr -d '\r' | awk -F': ' 'tolower($1) == "x-cocoon-path" {print $2}'
}

# scenario: name, mock tokens, mock delay (ms), concurrency, requests, stream flag
scenario() {
  local name=$1 tokens=$2 delay=$3 conc=$4 requests=$5 stream=$6 d="$WORK/$1"
  "$BIN" mock-engine --listen 127.0.0.1:$ENGINE_PORT --tokens "$tokens" --delay-ms "$delay" \
    >"$WORK/engine-$name.log" 2>&1 &
  pids+=($!)
  "$BIN" dev --setup-only --reset --no-chain --engine openai --engine-url http://127.0.0.1:$ENGINE_PORT \
    --model mock --workers 1 --pow-difficulty 1 --port-offset "$OFF" --data-dir "$d" >/dev/null
  # c=32 stays under the worker's default of 60 requests at once.
  sed -i 's/^\[privacy\]$/[privacy]\nsealed = "preferred"/' "$d/client.toml"
  sed -e "s/^http_listen = .*/http_listen = \"127.0.0.1:$((10001 + OFF))\"/" \
      -e 's/^sealed = "preferred"$/sealed = "off"/' "$d/client.toml" >"$d/client-clear.toml"
  "$BIN" proxy --config "$d/proxy.toml" >"$d/proxy.log" 2>&1 &
  pids+=($!)
  sleep 0.5
  "$BIN" worker --config "$d/worker-0.toml" >"$d/worker.log" 2>&1 &
  pids+=($!)
  "$BIN" client --config "$d/client.toml" >"$d/client.log" 2>&1 &
  pids+=($!)
  "$BIN" client --config "$d/client-clear.toml" >"$d/client-clear.log" 2>&1 &
  pids+=($!)
  local s="" c=""
  for _ in $(seq 120); do
    s=$(path_of "$SEALED" || true); c=$(path_of "$CLEAR" || true)
    [ "$s" = sealed ] && [ "$c" = clear ] && break
    sleep 0.25
  done
  if [ "$s" != sealed ] || [ "$c" != clear ]; then
    echo "network $name: X-Cocoon-Path sealed client '$s', clear client '$c'" >&2
    tail -n 20 "$d"/*.log >&2; exit 1
  fi
  for round in $(seq "$ROUNDS"); do
    echo "### $name: sealed (through) vs clear (direct), c=$conc, round $round of $ROUNDS"
    echo
    "$BIN" bench --url "$SEALED" --compare "$CLEAR" --model mock --concurrency "$conc" \
      --requests "$requests" --warmup 100 $stream 2>/dev/null
    echo
  done
  echo "sealed path after the runs: X-Cocoon-Path $(path_of "$SEALED") / $(path_of "$CLEAR")"
  echo
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

echo "Machine: $(nproc) cores, $(uname -m); load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u '+%F %H:%M UTC')"
echo
scenario "c1-stream-zero-delay" 16 0 1 "$REQUESTS" "--stream"
scenario "c32-nonstream-zero-delay" 16 0 32 "$REQUESTS" ""
scenario "c32-stream-50x2ms" 50 2 32 $((REQUESTS / 5)) "--stream"
[ "${VERIFY:-1}" = 1 ] || exit 0
echo "### client-side worker verification (WorkerVerifier::verify), cold vs cached"
echo
cargo test -q --release -p cocoon-client --lib sealing::tests::bench_verify -- --ignored --nocapture 2>/dev/null |
  grep '^|'
