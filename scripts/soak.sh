#!/usr/bin/env bash
# A bounded soak run: a network on 127.0.0.1 (1 proxy, 2 workers with the mock engine, 1 client,
# each its own `cocoon` process) under sustained concurrent load from `cocoon bench`, sampling
# every 10 s the RSS and open file descriptors of each role's process (from /proc) into a CSV.
# Fails when a process dies, when requests fail, or when a role grows past the bound after
# warm-up. Stops by itself.
#
#   scripts/soak.sh [--minutes N] [--concurrency C] [--payments] [--out DIR]
#     --minutes N      load duration (default 10)
#     --concurrency C  requests in flight (default 32)
#     --payments       pay on the local chain (`cocoon chain`, sampled as a role too): the
#                      proxy's ledger grows on disk, anchors and charges run every 2 s; at the
#                      end the ledger must equal the chain
#     --out DIR        where configs, logs and soak.csv go (default target/soak/<timestamp>)
#
# Bound (after warm-up = the first 30 s, or a quarter of a shorter run): for every role, the mean
# of the last 3 samples may exceed the first sample after warm-up by at most
# max(SOAK_RSS_MB=64 MiB, 50 %) of RSS and SOAK_FDS=64 descriptors. Builds `cocoon` (debug) when
# target/debug/cocoon is missing; COCOON_BIN picks another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
conc=32
out=""
payments=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --payments) payments=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$minutes$conc" in *[!0-9]*) echo "--minutes and --concurrency take whole numbers" >&2; exit 2 ;; esac
[ "$minutes" -ge 1 ] || { echo "--minutes must be at least 1" >&2; exit 2; }

bin=${COCOON_BIN:-target/debug/cocoon}
if [ ! -x "$bin" ]; then
  cargo build -p cocoon
fi
out=${out:-target/soak/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rss_mb=${SOAK_RSS_MB:-64}
fds_max=${SOAK_FDS:-64}

# Ports: a free offset so a soak can run beside a dev network or tests.
offset=$(( 2000 + RANDOM % 15000 ))
chain_flag=(--no-chain)
[ "$payments" = 1 ] && chain_flag=()
"$bin" dev --setup-only --reset --engine mock "${chain_flag[@]}" --workers 2 --mock-tokens 16 \
  --mock-delay-ms 5 --pow-difficulty 4 --port-offset "$offset" --data-dir "$out" >/dev/null
client_url="http://127.0.0.1:$(( 10000 + offset ))"

pids=()
roles=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
start_role() { # role config
  "$bin" "${1%%-*}" --config "$out/$2" >"$out/$1.log" 2>&1 &
  pids+=($!)
  roles+=("$1")
}
if [ "$payments" = 1 ]; then
  "$bin" chain --data-dir "$out/chain" --listen "127.0.0.1:$(( 8081 + offset ))" >"$out/chain.log" 2>&1 &
  pids+=($!)
  roles+=(chain)
  sleep 1
fi
start_role proxy proxy.toml
sleep 1
start_role worker-0 worker-0.toml
start_role worker-1 worker-1.toml
start_role client client.toml

# Ready when the client lists both workers.
ready=0
for _ in $(seq 1 120); do
  n=$(curl -s -m 2 "$client_url/v1/models" | python3 -c 'import json,sys
try: print(sum(len(m.get("workers", [])) for m in json.load(sys.stdin)["data"]))
except Exception: print(0)' || echo 0)
  if [ "$n" -ge 2 ]; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || { echo "network did not come up; logs in $out" >&2; tail -n 20 "$out"/*.log >&2; exit 1; }

csv="$out/soak.csv"
echo "t_s,role,pid,rss_kb,fds" >"$csv"
sample() { # t
  local i pid rss fds
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    if [ ! -d "/proc/$pid" ]; then
      echo "${roles[$i]} (pid $pid) died; logs in $out" >&2
      return 1
    fi
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    echo "$1,${roles[$i]},$pid,$rss,$fds" >>"$csv"
  done
}

duration=$(( minutes * 60 ))
echo "== soak: $minutes min at concurrency $conc through $client_url (out: $out)"
# Load: back-to-back bench runs of conc*40 requests each until the time is up (each run is
# bounded by its request count and its own time limit; the last one may end a little late).
(
  end=$(( $(date +%s) + duration ))
  run=0
  while [ "$(date +%s)" -lt "$end" ]; do
    "$bin" bench --url "$client_url" --model mock --concurrency "$conc" \
      --requests $(( conc * 40 )) --warmup 0 --timeout-secs 300 \
      >"$out/bench-$(printf %04d $run).txt" 2>&1 || true
    run=$(( run + 1 ))
  done
) &
load=$!
t0=$(date +%s)
while kill -0 "$load" 2>/dev/null; do
  sample $(( $(date +%s) - t0 )) || { kill "$load" 2>/dev/null; exit 1; }
  sleep 10
done
wait "$load" || true
sample $(( $(date +%s) - t0 ))

# Requests: the sum of every bench run's "requests ok / failed" row.
read -r ok failed < <(cat "$out"/bench-*.txt | sed -n 's/^| requests ok \/ failed | \([0-9]*\) \/ \([0-9]*\) |$/\1 \2/p' |
  awk '{o += $1; f += $2} END {print o + 0, f + 0}')
runs=$(ls "$out"/bench-*.txt | wc -l)
echo "== requests: $ok ok, $failed failed in $runs bench runs ($(( ok / duration )) req/s on average)"
echo "== last bench run"
tail -n 15 "$(ls "$out"/bench-*.txt | tail -n 1)"
warm=$(( duration / 4 < 30 ? duration / 4 : 30 ))
echo "== growth per role after ${warm}s warm-up (bound: max(${rss_mb} MiB, 50%) RSS, ${fds_max} fds)"
python3 - "$csv" "$warm" "$rss_mb" "$fds_max" <<'PY'
import csv, sys
path, warm, rss_mb, fds_max = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = list(csv.DictReader(open(path)))
roles = sorted({r["role"] for r in rows})
bad = []
for role in roles:
    rs = [r for r in rows if r["role"] == role]
    after = [r for r in rs if int(r["t_s"]) >= warm] or rs
    base = after[0]
    tail = after[-3:]
    rss0, fd0 = int(base["rss_kb"]), int(base["fds"])
    rss1 = sum(int(r["rss_kb"]) for r in tail) / len(tail)
    fd1 = sum(int(r["fds"]) for r in tail) / len(tail)
    peak = max(int(r["rss_kb"]) for r in rs)
    grow_kb = rss1 - rss0
    limit_kb = max(rss_mb * 1024, rss0 * 0.5)
    ok = grow_kb <= limit_kb and fd1 - fd0 <= fds_max
    print(f"{role:9} rss {rss0/1024:7.1f} -> {rss1/1024:7.1f} MiB (peak {peak/1024:.1f}), "
          f"fds {fd0} -> {fd1:.0f}, samples {len(rs)}: {'ok' if ok else 'GROWTH'}")
    if not ok:
        bad.append(role)
if bad:
    print("grew past the bound: " + ", ".join(bad))
    sys.exit(1)
PY
if [ "$payments" = 1 ]; then
  # Once the load stops, the ledger must reach the chain: every client token charged on chain
  # and every worker token paid (anchors and charges run every 2 s on the dev network).
  settled=""
  for _ in $(seq 1 60); do
    view=$("$bin" proxy status --config "$out/proxy.toml" --json 2>/dev/null | python3 -c 'import json,sys
p = json.load(sys.stdin)["payments"]
c = sum(x["tokens_db"] for x in p["clients"]); cc = sum(x["tokens_charged_onchain"] for x in p["clients"])
w = sum(x["tokens_db"] for x in p["workers"]); wp = sum(x["tokens_paid_onchain"] for x in p["workers"])
seqno, halted = p.get("ledger_seqno"), p["halted"]
ok = halted is None and c == cc and w == wp and c > 0
print(("ok " if ok else "no ") + f"ledger {c} client tokens, {cc} charged on chain; {w} worker tokens, {wp} paid on chain; ledger seqno {seqno}; halted {halted}")' 2>&1 || true)
    case "$view" in ok*) settled=${view#ok }; break ;; esac
    sleep 1
  done
  if [ -z "$settled" ]; then
    echo "the ledger did not reach the chain within 60 s after the load: $view; logs in $out" >&2
    exit 1
  fi
  echo "== payments: $settled; ledger file $(du -h "$out"/proxy-ledger.sqlite* | awk '{print $1}' | paste -sd+ -)"
fi
if [ "$failed" -gt 0 ] || [ "$ok" -eq 0 ]; then
  echo "requests failed during the soak ($failed failed, $ok ok); see $out/bench-*.txt" >&2
  exit 1
fi
echo "== soak passed; samples in $csv"
