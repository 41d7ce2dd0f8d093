#!/usr/bin/env bash
# Finds the system dependencies of the build (and, with --tests, of the tests) the way each
# consumer looks for them, prints one line per dependency (found where, or missing), and
# installs what is missing with apt-get (as root, or through a password-less sudo). When it
# cannot install (not root and no usable sudo, or no apt-get), it stops before cargo starts
# with a message that names the packages to install.
#
#   cmake           the `cmake` crate runs `$CMAKE` or `cmake` from PATH   -> apt `cmake`
#   make            cmake's default generator on Linux (Unix Makefiles)     -> apt `make`
#   C/C++ compiler  the `cc` crate runs `$CC`/`$CXX`, else `cc`/`c++`        -> apt `g++`
#   libclang        bindgen's clang-sys (runtime loading): `LIBCLANG_PATH` alone when set, else
#                   `llvm-config --prefix`/{bin,lib,lib64}, LD_LIBRARY_PATH, LIBRARY_PATH and
#                   /usr/local/llvm*/lib*, /usr/local/lib*{,/*,/*/*}, /usr/lib*{,/*,/*/*}, for
#                   libclang.so, libclang-*.so, libclang.so.*, libclang-*.so.*, never a name
#                   containing "-cpp." (libclang-cpp.so.N is another library); plus clang's
#                   builtin headers (stddef.h) beside the library, without which bindgen cannot
#                   parse llama.cpp's headers                                -> apt `libclang-dev`
#   libfaketime     (--tests) tests/e2e/clock_skew.rs's paths              -> apt `faketime`
#
# Usage: ensure-build-deps.sh [--tests] [--root DIR --apt-get CMD]
#   --tests        also the test-only dependencies (libfaketime)
#   --root DIR     look for files under DIR instead of / (commands still come from PATH), and
#                  install nothing unless --apt-get names the command to run instead of apt-get;
#                  for scripts/ensure-build-deps.test.sh, which passes a fake that records.
# Run by scripts/dev.sh, scripts/test.sh (with --tests) and .ci/run.
set -euo pipefail
shopt -s nullglob

tests=0
root=""
apt_get=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) tests=1 ;;
    --root) root="${2:?--root needs a directory}"; shift ;;
    --apt-get) apt_get="${2:?--apt-get needs a command}"; shift ;;
    *) echo "ensure-build-deps: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
root="${root%/}"

say() { printf '  %-15s %s\n' "$1" "$2" >&2; }
need=()      # apt packages to install
problems=()  # things apt cannot fix

# ---- commands, looked up in PATH as their consumers do --------------------------------------
check_command() { # label, command (maybe from an env var), apt package
  local label=$1 cmd=$2 pkg=$3 found
  if found=$(command -v "$cmd" 2>/dev/null); then
    say "$label" "found $found"
  else
    say "$label" "missing: '$cmd' is not on PATH -> apt package $pkg"
    need+=("$pkg")
  fi
}

# ---- libclang, searched as clang-sys 1.9 does ----------------------------------------------
# Prints the first libclang shared library clang-sys would accept, under $root.
libclang_candidates_in() { # directory (already under $root)
  local d=$1 f name
  for f in "$d"/libclang.so "$d"/libclang-*.so "$d"/libclang.so.* "$d"/libclang-*.so.*; do
    name=${f##*/}
    case "$name" in *-cpp.*) continue ;; esac
    [ -e "$f" ] && printf '%s\n' "$f"
  done
  return 0
}

find_libclang() {
  local dirs=() d p prefix llvm_config
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    # clang-sys searches only LIBCLANG_PATH when it is set: a file, or a directory.
    p="$root$LIBCLANG_PATH"
    if [ -f "$p" ]; then
      case "${p##*/}" in
        *-cpp.*) ;;
        libclang.so | libclang-*.so | libclang.so.* | libclang-*.so.*) printf '%s\n' "$p"; return 0 ;;
      esac
    fi
    libclang_candidates_in "$p"
    return 0
  fi
  llvm_config="${LLVM_CONFIG_PATH:-llvm-config}"
  if command -v "$llvm_config" >/dev/null 2>&1 && prefix=$("$llvm_config" --prefix 2>/dev/null); then
    prefix=${prefix%%$'\n'*}
    dirs+=("$root$prefix/bin" "$root$prefix/lib" "$root$prefix/lib64")
  fi
  local IFS=:
  for p in ${LD_LIBRARY_PATH:-} ${LIBRARY_PATH:-}; do [ -n "$p" ] && dirs+=("$root$p"); done
  unset IFS
  for d in "$root"/usr/local/llvm*/lib* "$root"/usr/local/lib*/*/* "$root"/usr/local/lib*/* \
    "$root"/usr/local/lib* "$root"/usr/lib*/*/* "$root"/usr/lib*/* "$root"/usr/lib*; do
    [ -d "$d" ] && dirs+=("$d")
  done
  for d in "${dirs[@]}"; do libclang_candidates_in "$d"; done
}

# clang's builtin headers, which libclang finds relative to its own location.
builtin_headers_for() { # library path
  local lib=$1 real dir h
  real=$(readlink -f "$lib" 2>/dev/null || printf '%s' "$lib")
  for dir in "${lib%/*}" "${real%/*}"; do
    for h in "$dir"/clang/*/include/stddef.h; do printf '%s\n' "${h%/stddef.h}"; return 0; done
  done
  return 1
}

check_libclang() {
  local libs lib headers
  libs=$(find_libclang)
  if [ -z "$libs" ]; then
    if [ -n "${LIBCLANG_PATH:-}" ]; then
      say libclang "missing: LIBCLANG_PATH=$LIBCLANG_PATH holds no libclang (bindgen looks nowhere else)"
      problems+=("LIBCLANG_PATH=$LIBCLANG_PATH has no libclang.so*: point it at a directory that has one, or unset it")
    else
      say libclang "missing: no libclang.so* where bindgen looks -> apt package libclang-dev"
      need+=(libclang-dev)
    fi
    return 0
  fi
  for lib in $libs; do
    if headers=$(builtin_headers_for "$lib"); then
      say libclang "found ${lib#"$root"} (builtin headers ${headers#"$root"})"
      return 0
    fi
  done
  lib=${libs%%$'\n'*}
  say libclang "found ${lib#"$root"}, but not clang's builtin headers (clang/*/include/stddef.h) -> apt package libclang-dev"
  need+=(libclang-dev)
}

# ---- libfaketime, where tests/e2e/clock_skew.rs looks ------------------------------------
check_libfaketime() {
  local f
  for f in "$root"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 \
    "$root"/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 \
    "$root"/usr/lib/faketime/libfaketime.so.1 "$root"/usr/local/lib/faketime/libfaketime.so.1; do
    if [ -e "$f" ]; then say libfaketime "found ${f#"$root"}"; return 0; fi
  done
  say libfaketime "missing -> apt package faketime"
  need+=(faketime)
}

check_all() {
  need=()
  problems=()
  check_command cmake "${CMAKE:-cmake}" cmake
  check_command make make make
  check_command "C compiler" "${CC:-cc}" gcc
  check_command "C++ compiler" "${CXX:-c++}" g++
  check_libclang
  [ "$tests" -eq 0 ] || check_libfaketime
}

fail() {
  echo "ensure-build-deps: $*" >&2
  exit 1
}

echo "system dependencies:" >&2
check_all
[ ${#problems[@]} -eq 0 ] || fail "${problems[*]}"
[ ${#need[@]} -gt 0 ] || exit 0

# Deduplicate (two checks may ask for the same package).
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
manual="install them, then run this again: apt-get install ${need[*]}"
if [ -n "$root" ] && [ -z "$apt_get" ]; then
  fail "missing ${need[*]} under --root $root (installing nothing: no --apt-get given)"
fi
apt_get=${apt_get:-apt-get}
command -v "$apt_get" >/dev/null 2>&1 || fail "missing ${need[*]}, and this is not a Debian/Ubuntu system (no apt-get); $manual (or your system's equivalents)"
sudo=()
if [ "$EUID" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    fail "missing ${need[*]}, and installing needs root (not root, no password-less sudo); $manual"
  fi
fi
echo "installing with apt-get: ${need[*]} (about a minute)" >&2
# apt's and dpkg's chatter goes to a log, shown only when something fails.
apt_log=$(mktemp)
trap 'rm -f "$apt_log"' EXIT
if ! { "${sudo[@]}" "$apt_get" update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$apt_get" install -y -qq --no-install-recommends "${need[@]}"; } >"$apt_log" 2>&1; then
  cat "$apt_log" >&2
  fail "apt-get could not install ${need[*]} (its output is above)"
fi

echo "system dependencies after installing:" >&2
check_all
[ ${#problems[@]} -eq 0 ] || fail "${problems[*]}"
[ ${#need[@]} -eq 0 ] || fail "still missing after apt-get install: ${need[*]}"
