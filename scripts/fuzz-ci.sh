#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ under libFuzzer, time-boxed, from its committed seed
# corpus, and fails when any target finds a crash (a panic, an abort, a leak or a timeout).
#
#   scripts/fuzz-ci.sh [SECONDS_PER_TARGET]      default 20
#   FUZZ_TARGETS="frames ton_boc" scripts/fuzz-ci.sh 60    only these targets
#
# - cargo-fuzz is installed at a pinned version into target/tools (project-local, not ~/.cargo),
#   the same way here and in CI.
# - There is no nightly toolchain: RUSTC_BOOTSTRAP=1 lets the stable compiler take the -Z flags
#   cargo-fuzz passes (sanitizer, coverage instrumentation).
# - Seeds: fuzz/corpus/<target>/ (committed, read only here). What libFuzzer learns goes to
#   target/fuzz-work/corpus/<target>/ (kept between local runs, never committed); reproducers of
#   crashes go to target/fuzz-work/artifacts/<target>/. Commit a reproducer as a regression test
#   in the crate that owns the parser once it is fixed (see fuzz/artifacts-found/README.md).
# - A summary (target, seconds, execs, result) is printed and written to
#   target/fuzz-work/summary.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac

CARGO_FUZZ_VERSION=0.13.1
tools="$PWD/target/tools"
work="$PWD/target/fuzz-work"
# AddressSanitizer also checks the unsafe code of dependencies; FUZZ_SANITIZER=none builds faster.
sanitizer=${FUZZ_SANITIZER:-address}

if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$tools"
fi
export RUSTC_BOOTSTRAP=1
fuzz() { "$tools/bin/cargo-fuzz" "$@"; }
flags=(-O --debug-assertions --sanitizer "$sanitizer")

targets=${FUZZ_TARGETS:-$(fuzz list)}
echo "== building fuzz targets ($sanitizer sanitizer): $(echo $targets)"
t0=$(date +%s)
fuzz build "${flags[@]}"
echo "== build took $(( $(date +%s) - t0 ))s"

mkdir -p "$work"
summary="$work/summary.tsv"
printf 'target\tseconds\texecs\tcorpus\tresult\n' >"$summary"
failed=()
for t in $targets; do
  seeds="fuzz/corpus/$t"
  if [ ! -d "$seeds" ]; then
    echo "no seed corpus $seeds for target $t" >&2
    failed+=("$t (no corpus)")
    continue
  fi
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  log="$work/$t.log"
  echo "== fuzzing $t for ${secs}s"
  start=$(date +%s)
  rc=0
  # The scratch corpus comes first: libFuzzer writes new inputs there, never into the seeds.
  fuzz run "${flags[@]}" "$t" "$work/corpus/$t" "$seeds" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  units=$(find "$work/corpus/$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc)"
    failed+=("$t")
    echo "---- $t: last lines of $log" >&2
    tail -n 40 "$log" >&2
    ls -l "$work/artifacts/$t/" >&2 || true
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$took" "${execs:-?}" "$units" "$result" | tee -a "$summary"
done

echo "== fuzz summary (target, seconds, execs, corpus units, result)"
column -t -s $'\t' "$summary" 2>/dev/null || cat "$summary"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (reproducers under $work/artifacts/)" >&2
  exit 1
fi
