#!/usr/bin/env bash
# Issue 7's benchmark figures (docs/BENCHMARKS.md, "Proof under stress"), each against its baseline
# in the same run, on 127.0.0.1 only, every step bounded:
#   1. sustained req/s and p99 TTFT at concurrency 1/32/256, streamed (mock 50 tokens x 2 ms),
#      through the network (client -> proxy -> worker) vs the same mock engine directly;
#   2. proxy memory per idle connection: proxy VmRSS before/after N idle attested sessions
#      (crates/bench/examples/idle_conns.rs), baseline = the same interval with 0 sessions;
#   3. proxy memory per active stream: proxy VmRSS with M streams in flight (mock 1000 x 50 ms)
#      minus the idle proxy's, baseline = the idle proxy sampled twice;
#   4. recovery after `kill -9` of a proxy: (a) one proxy, restarted at once; (b) two proxies,
#      the one that served the last request is killed (client failover). REPEAT times each;
#   5. the peak number of concurrent streams one proxy holds: PEAK_STEPS streams at once (mock
#      40 tokens x 1 s), each step held until the proxy runs them all, with the proxy's VmRSS and
#      open descriptors at that moment against the idle proxy's.
# Every network is a fresh `cocoon dev --setup-only --engine openai --no-chain` data dir whose
# configs are edited (worker max_active_requests raised for c=256, low PoW), each role its own
# process started with `--config`.
#
#   ./scripts/bench-stress.sh                  # defaults below
#   IDLE_CONNS=2000 STREAMS=300 ./scripts/bench-stress.sh
#   BUILD=1 ./scripts/bench-stress.sh          # (re)build the release binaries first
#   PARTS="5" PEAK_STEPS="1000 4000" ./scripts/bench-stress.sh   # only some parts
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/cocoon
IDLE=target/release/examples/idle_conns
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$BIN" ]; then cargo build --release -p cocoon >&2; fi
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$IDLE" ]; then
  cargo build --release -p cocoon-bench --example idle_conns >&2
fi

OFF=${PORT_OFFSET:-310}                 # client HTTP on 10000+OFF, proxy on 11000+OFF..
ENGINE_PORT=${ENGINE_PORT:-18310}
REQ_C1=${REQ_C1:-200}                   # c=1 streams take ~0.1 s: 200 is ~20 s per side
REQ_C32=${REQ_C32:-5000}
REQ_C256=${REQ_C256:-10000}
IDLE_CONNS=${IDLE_CONNS:-1000}
STREAMS=${STREAMS:-200}
REPEAT=${REPEAT:-3}
PARTS=${PARTS:-1 2 3 4 5}
PEAK_STEPS=${PEAK_STEPS:-1000 2000 4000 8000 16000}
# Requests a worker takes at once and a proxy per client: raised past the defaults (60, 1000)
# so that c=256 and the peak steps measure the network, not these caps.
WORKER_MAX_ACTIVE=${WORKER_MAX_ACTIVE:-1000}
PROXY_MAX_PER_CLIENT=${PROXY_MAX_PER_CLIENT:-1000}
WORK=$(mktemp -d)
CLIENT_URL=http://127.0.0.1:$((10000 + OFF))

pids=()        # every process we started, for cleanup
cleanup() {
  local p
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

part() { [[ " $PARTS " == *" $1 "* ]]; }
now() { date +%s.%N; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# stops one process we started (and forgets it); kill9 does it with SIGKILL
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget "$1"; }
kill9() { kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget "$1"; }
forget() {
  local i
  for i in "${!pids[@]}"; do if [ "${pids[$i]}" = "$1" ]; then unset 'pids[i]'; fi; done
}

engine() { # tokens delay_ms
  "$BIN" mock-engine --listen 127.0.0.1:$ENGINE_PORT --tokens "$1" --delay-ms "$2" >"$WORK/engine.log" 2>&1 &
  ENGINE_PID=$!
  pids+=("$ENGINE_PID")
  for _ in $(seq 50); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$ENGINE_PORT/v1/models" && return 0; sleep 0.1; done
  echo "mock engine did not start" >&2; exit 1
}

# A fresh network in $WORK/$1 with $2 proxies (1 or 2), 1 worker, 1 client. Sets NET, PROXY_PIDS,
# WORKER_PID, CLIENT_PID.
net() {
  local name=$1 nproxies=$2 d="$WORK/$1"
  NET=$d
  "$BIN" dev --setup-only --reset --no-chain --engine openai --engine-url http://127.0.0.1:$ENGINE_PORT \
    --model mock --workers 1 --pow-difficulty 1 --port-offset "$OFF" --data-dir "$d" >/dev/null
  # c=256 needs more than the worker's default 60 requests at once; the client has no cap of
  # its own.
  sed -i "s/^max_active_requests = .*/max_active_requests = $WORKER_MAX_ACTIVE/" "$d/worker-0.toml"
  sed -i "s/^max_requests_per_client = .*/max_requests_per_client = $PROXY_MAX_PER_CLIENT/" "$d/proxy.toml"
  if [ "$nproxies" = 2 ]; then
    local p1=$((OFF + 50))
    sed -e "s/127.0.0.1:$((11000 + OFF))\"/127.0.0.1:$((11000 + p1))\"/" \
        -e "s/127.0.0.1:$((11001 + OFF))\"/127.0.0.1:$((11001 + p1))\"/" \
        -e "s/127.0.0.1:$((11002 + OFF))\"/127.0.0.1:$((11002 + p1))\"/" \
        -e "s/proxy-ledger/proxy-1-ledger/; s/proxy-payment/proxy-1-payment/" \
        "$d/proxy.toml" >"$d/proxy-1.toml"
    sed -i "s/^proxies = .*/proxies = [\"127.0.0.1:$((11002 + OFF))\", \"127.0.0.1:$((11002 + p1))\"]/" "$d/client.toml"
    sed -i "s/^proxies = .*/proxies = [\"127.0.0.1:$((11001 + OFF))\", \"127.0.0.1:$((11001 + p1))\"]/" "$d/worker-0.toml"
  fi
  PROXY_PIDS=()
  start_proxy 0
  [ "$nproxies" = 2 ] && start_proxy 1
  sleep 0.5
  "$BIN" worker --config "$d/worker-0.toml" >"$d/worker.log" 2>&1 &
  WORKER_PID=$!; pids+=("$WORKER_PID")
  "$BIN" client --config "$d/client.toml" >"$d/client.log" 2>&1 &
  CLIENT_PID=$!; pids+=("$CLIENT_PID")
  for _ in $(seq 240); do
    [ "$(proxies_ready)" -ge "$nproxies" ] && chat_ok && return 0
    sleep 0.25
  done
  echo "network $name did not come up" >&2; tail -n 20 "$d"/*.log >&2; exit 1
}
start_proxy() { # index
  local cfg=$NET/proxy.toml
  [ "$1" = 1 ] && cfg=$NET/proxy-1.toml
  "$BIN" proxy --config "$cfg" >>"$NET/proxy-$1.log" 2>&1 &
  PROXY_PIDS[$1]=$!; pids+=("$!")
}
net_down() {
  local p
  for p in "$CLIENT_PID" "$WORKER_PID" "${PROXY_PIDS[@]}" "$ENGINE_PID"; do stop "$p"; done
}
proxies_ready() {
  local n
  n=$(curl -s -m 2 "$CLIENT_URL/jsonstats" 2>/dev/null | python3 -c 'import json,sys
try: print(sum(1 for v in json.load(sys.stdin)["proxies"].values() if v.get("ready")))
except Exception: print(0)' 2>/dev/null) || true
  echo "${n:-0}"
}
chat_ok() { # one short non-streamed completion through the client; true on HTTP 200
  [ "$(curl -s -o /dev/null -w '%{http_code}' -m "${1:-5}" "$CLIENT_URL/v1/chat/completions" \
        -H 'content-type: application/json' \
        -d '{"model":"mock","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}')" = 200 ]
}
# queries the proxy with stats port $1 has served (its /jsonstats), to tell which one serves
proxy_requests() {
  local n
  n=$(curl -s -m 2 "http://127.0.0.1:$1/jsonstats" 2>/dev/null | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["queries"]["total"])
except Exception: print(0)' 2>/dev/null) || true
  echo "${n:-0}"
}
# the proxy's view (stats port $1): "key=value" for the fields printed below
proxy_view() {
  curl -s -m 2 "http://127.0.0.1:$1/jsonstats" | python3 -c 'import json,sys
try:
    d=json.load(sys.stdin); c=d["connections"]
    print(f"client sessions established {c['"'"'clients'"'"']['"'"'established'"'"']}, queries running {d['"'"'queries'"'"']['"'"'running'"'"']}, worker capacity {[w['"'"'capacity'"'"'] for w in d['"'"'workers'"'"']]}")
except Exception as e: print(f"(no stats: {e})")' 2>/dev/null || echo "(no stats)"
}
stats() { # label values...: median and max with 3 decimals
  python3 -c 'import sys,statistics as s
v=[float(x) for x in sys.argv[2:]]
each=" ".join("%.3f" % x for x in v)
print("| %s | %d | %.3f | %.3f | %s |" % (sys.argv[1], len(v), s.median(v), max(v), each))' "$@"
}

echo "Machine: $(nproc) cores, $(uname -m), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u '+%F %H:%M UTC')"
echo

# --- 1. throughput and TTFT -------------------------------------------------------------------
if part 1; then
engine 50 2
net tput 1
for point in "1 $REQ_C1" "32 $REQ_C32" "256 $REQ_C256"; do
  set -- $point
  echo "### 1. streamed, mock 50 tokens x 2 ms, concurrency $1, $2 requests per side"
  echo
  "$BIN" bench --url "$CLIENT_URL" --compare "http://127.0.0.1:$ENGINE_PORT" --model mock --stream \
    --concurrency "$1" --requests "$2" --warmup $(( $1 * 4 > 50 ? $1 * 4 : 50 )) --timeout-secs 300 2>&1 | grep -v 'bench finished'  # its tracing lines
  echo
done
net_down

fi

# --- 2. proxy memory per idle connection ------------------------------------------------------
if part 2; then
echo "### 2. proxy memory per idle attested session ($IDLE_CONNS sessions, PoW difficulty 1)"
echo
engine 16 0
net idle 1
PP=${PROXY_PIDS[0]}
sleep 5
r0=$(rss_kb "$PP"); sleep 10; r1=$(rss_kb "$PP")      # baseline: the same 10 s, 0 sessions
"$IDLE" "$NET/client.toml" "127.0.0.1:$((11002 + OFF))" "$IDLE_CONNS" 300 >"$WORK/idle.out" 2>"$WORK/idle.err" &
ip=$!; pids+=("$ip")
for _ in $(seq 1200); do grep -q '^ready' "$WORK/idle.out" && break; sleep 0.25; done
ready=$(sed -n 's/^ready \([0-9]*\).*/\1/p' "$WORK/idle.out")
sleep 10                                            # let the handshakes' buffers settle
r2=$(rss_kb "$PP")
view=$(proxy_view $((11000 + OFF)))
ok_after=$(chat_ok 10 && echo yes || echo no)
stop "$ip"
echo '```'
echo "proxy VmRSS idle, 0 sessions:        $r0 kB -> $r1 kB after 10 s (noise $((r1 - r0)) kB)"
echo "idle_conns: $(head -n1 "$WORK/idle.out")"
echo "proxy stats: $view"
echo "proxy VmRSS with $ready idle sessions: $r2 kB (+$((r2 - r1)) kB; client chat still ok: $ok_after)"
echo "=> $(( (r2 - r1) * 1024 / (ready > 0 ? ready : 1) )) bytes (~$(( (r2 - r1) / (ready > 0 ? ready : 1) )) KiB) per idle session; baseline noise $(( (r1 - r0) * 1024 / (ready > 0 ? ready : 1) )) bytes per session-equivalent"
echo '```'
echo
net_down

fi

# --- 3. proxy memory per active stream --------------------------------------------------------
if part 3; then
echo "### 3. proxy memory per active stream ($STREAMS streams, mock 1000 tokens x 50 ms)"
echo
engine 1000 50
net streams 1
PP=${PROXY_PIDS[0]}
sleep 5
r0=$(rss_kb "$PP"); sleep 10; r1=$(rss_kb "$PP")
"$BIN" bench --url "$CLIENT_URL" --model mock --stream --concurrency "$STREAMS" --requests "$STREAMS" \
  --warmup 0 --timeout-secs 120 >"$WORK/streams.out" 2>&1 &
bp=$!; pids+=("$bp")
# all streams open after a few seconds; each lasts ~50 s: sample at 10/20/30/40 s into them
samples=()
for t in 10 20 30 40; do
  sleep 10
  r=$(rss_kb "$PP")
  samples+=("at ${t} s: $r kB (+$((r - r1)) kB, $(( (r - r1) / STREAMS )) KiB per stream)")
  if [ "$t" = 20 ]; then
    view=$(proxy_view $((11000 + OFF)))
    inflight=$(ss -Htn state established "( sport = :$((10000 + OFF)) )" | wc -l)
  fi
done
stop "$bp"
echo '```'
echo "proxy VmRSS idle:                    $r0 kB -> $r1 kB after 10 s (noise $((r1 - r0)) kB, $(( (r1 - r0) / STREAMS )) KiB per stream-equivalent)"
echo "at 20 s, HTTP connections open at the client: $inflight; proxy stats: $view"
for x in "${samples[@]}"; do echo "proxy VmRSS with $STREAMS streams $x"; done
echo '```'
echo
net_down

fi

# --- 4. recovery after kill -9 of a proxy -----------------------------------------------------
if part 4; then
echo "### 4. recovery after kill -9 of a proxy (seconds from the kill to the first chat completion that succeeds; $REPEAT runs)"
echo
engine 16 0
net rec1 1
a=()
for _ in $(seq "$REPEAT"); do
  sleep 3
  t0=$(now)
  kill9 "${PROXY_PIDS[0]}"
  start_proxy 0                                       # restarted at once, same config and ports
  tries=0
  until chat_ok 5; do tries=$((tries + 1)); [ "$tries" -gt 1200 ] && { echo "no recovery" >&2; exit 1; }; sleep 0.05; done
  a+=("$(python3 -c "print($(now) - $t0)")")
done
net_down
engine 16 0
net rec2 2
b=(); fails=(); victims=()
for _ in $(seq "$REPEAT"); do
  for _ in $(seq 120); do [ "$(proxies_ready)" -ge 2 ] && break; sleep 0.25; done
  sleep 3                                             # the worker's link to the restarted proxy too
  # kill the proxy that served the last request
  s0=$(proxy_requests $((11000 + OFF))); chat_ok 5 || true; s1=$(proxy_requests $((11000 + OFF)))
  victim=1; [ "$s1" != "$s0" ] && victim=0
  t0=$(now)
  kill9 "${PROXY_PIDS[$victim]}"
  tries=0
  until chat_ok 5; do tries=$((tries + 1)); [ "$tries" -gt 1200 ] && { echo "no failover" >&2; exit 1; }; sleep 0.05; done
  b+=("$(python3 -c "print($(now) - $t0)")"); fails+=("$tries"); victims+=("proxy-$victim")
  start_proxy "$victim"
done
net_down
echo "| scenario | runs | median s | max s | each run s |"
echo "|---|---|---|---|---|"
stats "(a) one proxy, killed and restarted at once" "${a[@]}"
stats "(b) two proxies, the serving one killed (failover)" "${b[@]}"
echo
echo "(b) per run: proxy killed ${victims[*]}; failed attempts before the first success ${fails[*]}"
fi

# --- 5. peak concurrent streams one proxy holds -----------------------------------------------
if part 5; then
echo "### 5. peak concurrent streams at one proxy (mock 40 tokens x 1 s, steps: $PEAK_STEPS)"
echo
top=0
for s in $PEAK_STEPS; do top=$(( s > top ? s : top )); done
WORKER_MAX_ACTIVE=$((top + 100)) PROXY_MAX_PER_CLIENT=$((top + 100))
# the bench, the client, the worker and the engine each hold one socket per stream
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "descriptor limit per process: $(ulimit -n)"
engine 40 1000
net peak 1
PP=${PROXY_PIDS[0]}
echo
echo "| streams sent | held at once by the proxy | seconds to hold them all | proxy VmRSS idle → held (kB) | per stream | proxy fds idle → held | completed / failed |"
echo "|---:|---:|---:|---|---:|---|---|"
peak_held=0
for m in $PEAK_STEPS; do
  sleep 3
  r0=$(rss_kb "$PP"); f0=$(ls "/proc/$PP/fd" | wc -l)
  t0=$(now)
  "$BIN" bench --url "$CLIENT_URL" --model mock --stream --concurrency "$m" --requests "$m" \
    --warmup 0 --timeout-secs 300 >"$WORK/peak-$m.out" 2>&1 &
  bp=$!; pids+=("$bp")
  max=0; r1=$r0; f1=$f0; held_s="-"
  # each stream lasts ~40 s: wait up to 35 s for the proxy to run all of them at once
  for _ in $(seq 140); do
    run=$(curl -s -m 2 "http://127.0.0.1:$((11000 + OFF))/jsonstats" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["queries"]["running"])
except Exception: print(0)' 2>/dev/null || echo 0)
    if [ "$run" -gt "$max" ]; then
      max=$run; r1=$(rss_kb "$PP"); f1=$(ls "/proc/$PP/fd" | wc -l)
    fi
    if [ "$run" -ge "$m" ]; then held_s=$(python3 -c "print('%.1f' % ($(now) - $t0))"); break; fi
    sleep 0.25
  done
  wait "$bp" || true; forget "$bp"
  okfail=$(grep -m1 '^| requests ok / failed' "$WORK/peak-$m.out" | awk -F'|' '{gsub(/ /, "", $3); print $3}' || true)
  if [ -z "$okfail" ]; then
    echo "(the bench at $m streams printed no result; its last lines:)"; tail -n 5 "$WORK/peak-$m.out" | sed 's/^/    /'
  fi
  per=$(( max > 0 ? (r1 - r0) * 1024 / max : 0 ))
  echo "| $m | $max | $held_s | $r0 → $r1 (+$((r1 - r0))) | $((per / 1024)).$(( (per % 1024) * 10 / 1024 )) KiB | $f0 → $f1 | ${okfail:-?} |"
  if [ "$max" -ge "$m" ] && [ "${okfail#*/}" = 0 ]; then peak_held=$m; else break; fi
done
echo
echo "peak held with every stream completed: $peak_held (steps stop at the first that fails or is not held at once)"
net_down
fi
