#!/usr/bin/env bash
# Time to a summary of a Telegram export (docs/BENCHMARKS.md, "cocoon summarize (issue 18)"):
# `cocoon summarize` on a synthetic 2000-message export, through the network (client → proxy →
# worker → `cocoon mock-engine`, `cocoon dev --setup-only --no-chain --engine openai`) and
# against the same mock engine directly (its own OpenAI API), in the same run, ROUNDS times
# each, alternating. Loopback only.
#
#   ./scripts/bench-summarize.sh                        # MESSAGES=2000 ROUNDS=3 TOKENS=64
#   BUILD=1 ./scripts/bench-summarize.sh                # (re)build the release binary first
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/cocoon}
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$BIN" ]; then cargo build --release -p cocoon >&2; fi
OFF=${PORT_OFFSET:-170}
ENGINE_PORT=${ENGINE_PORT:-18170}
MESSAGES=${MESSAGES:-2000}
ROUNDS=${ROUNDS:-3}
TOKENS=${TOKENS:-64}          # completion tokens of each mock answer
DELAY_MS=${DELAY_MS:-0}       # mock delay between tokens
CLIENT=http://127.0.0.1:$((10000 + OFF))
ENGINE=http://127.0.0.1:$ENGINE_PORT
WORK=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 - "$MESSAGES" >"$WORK/result.json" <<'PY'
import json, sys
n = int(sys.argv[1])
topics = ["the release", "lunch", "the budget", "a bug in the parser", "holidays", "the demo"]
msgs = [{"id": i, "type": "message", "date": "2024-01-31T00:00:00",
         "date_unixtime": str(1706659200 + 45 * i), "from": f"user{i % 9}",
         "text": f"message {i}: what do we do about {topics[i % len(topics)]}? I think we should wait"}
        for i in range(n)]
json.dump({"name": "Bench", "type": "private_group", "id": 1, "messages": msgs}, sys.stdout)
PY

"$BIN" mock-engine --listen 127.0.0.1:$ENGINE_PORT --tokens "$TOKENS" --delay-ms "$DELAY_MS" \
  >"$WORK/engine.log" 2>&1 &
pids+=($!)
d="$WORK/net"
"$BIN" dev --setup-only --reset --no-chain --engine openai --engine-url "$ENGINE" \
  --model mock --workers 1 --pow-difficulty 1 --port-offset "$OFF" --data-dir "$d" >/dev/null
"$BIN" proxy --config "$d/proxy.toml" >"$d/proxy.log" 2>&1 &
pids+=($!)
sleep 0.5
"$BIN" worker --config "$d/worker-0.toml" >"$d/worker.log" 2>&1 &
pids+=($!)
"$BIN" client --config "$d/client.toml" >"$d/client.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
  curl -s -m 2 "$CLIENT/v1/models" | grep -q '"workers":\[{' && break
  sleep 0.25
done

# Seconds of one run against $1 (the summary to /dev/null; the run's own report to stderr).
run() {
  local start end
  start=$(date +%s.%N)
  "$BIN" summarize "$WORK/result.json" --client "$1" --model mock >/dev/null 2>"$WORK/last.err" ||
    { cat "$WORK/last.err" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

echo "Machine: $(nproc) cores, $(uname -m); load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u '+%F %H:%M UTC')"
echo "Export: $MESSAGES messages; mock engine: $TOKENS tokens an answer, ${DELAY_MS} ms between tokens"
run "$ENGINE" >/dev/null   # warm-up
head -n 1 "$WORK/last.err"
echo
echo "| round | through the network (s) | engine directly (s) | ratio |"
echo "|---|---:|---:|---:|"
for r in $(seq "$ROUNDS"); do
  net=$(run "$CLIENT"); report=$(tail -n 1 "$WORK/last.err")
  direct=$(run "$ENGINE")
  printf '| %s | %.2f | %.2f | %.2f |\n' "$r" "$net" "$direct" "$(echo "$net / $direct" | bc -l)"
done
echo
echo "through the network, last run: $report"
