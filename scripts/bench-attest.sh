#!/usr/bin/env bash
# Attestation benchmarks (docs/BENCHMARKS.md, issue "Hardware attestation"), each against its
# baseline in the same run, printed as markdown:
#  1. quote verification, cold (full dcap-qvl + our checks) vs through the verdict cache, on the
#     real TDX sample quote + collateral the tests use; SEV-SNP cold vs cached; the dev network's
#     software evidence as a reference row  (crates/attest/examples/verify_bench.rs);
#  2. RA-TLS handshakes/s over 127.0.0.1 through the roles' dial/serve path, insecure-software
#     evidence and no evidence, PoW off vs PoW 20  (crates/ratls/examples/handshake_bench.rs).
# Loopback only; bounded (about two minutes after the build).
#
#   ./scripts/bench-attest.sh
#   VERIFY_SECS=3 DIALERS="8 1" HS_SECS=5 POW_SECS=15 POW=20 ./scripts/bench-attest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VERIFY_SECS=${VERIFY_SECS:-3}
DIALERS=${DIALERS:-"8 1"}           # one handshake table per dialer count
HS_SECS=${HS_SECS:-5}
POW_SECS=${POW_SECS:-15}
POW=${POW:-20}
# Release build of these two crates' examples only (never the whole workspace).
cargo build --release -p cocoon-attest -p cocoon-ratls --examples >&2

echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//' || echo '?')), $(uname -m), load average before the run $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(date -u '+%F %H:%M') UTC"
echo
target/release/examples/verify_bench --secs "$VERIFY_SECS"
for n in $DIALERS; do
  echo
  target/release/examples/handshake_bench --dialers "$n" --secs "$HS_SECS" \
      --pow-secs "$POW_SECS" --pow-difficulty "$POW"
done
echo
echo "Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') (the machine is shared; see docs/BENCHMARKS.md)."
