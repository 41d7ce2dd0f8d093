#!/usr/bin/env bash
# Installs, with apt-get, the system packages the build and the tests need when they are
# missing: cmake, libclang and a C++ compiler for llama.cpp (the embedded engine), and
# libfaketime for the end-to-end test that runs whole nodes under a skewed clock
# (tests/e2e/clock_skew.rs). Runs as root or
# through sudo; does nothing when everything is there. Sourced or run by scripts/dev.sh,
# scripts/test.sh and .ci/run.
set -euo pipefail
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/*/libclang*.so* >/dev/null 2>&1; then
  need+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need+=(g++)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing build and test tools: ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
