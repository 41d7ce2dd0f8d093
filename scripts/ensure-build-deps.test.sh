#!/usr/bin/env bash
# Tests scripts/ensure-build-deps.sh's detection on made-up machines: each case builds a root
# directory (the files the script searches for) and a PATH (the commands it finds), with a
# fake `apt-get` first on that PATH that records what it is asked to install. Nothing here
# depends on what this machine has installed: the script looks only under the case's root and
# on the case's PATH. Run by scripts/test.sh (so by .ci/run); prints "N passed, M failed".
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
script="$here/ensure-build-deps.sh"
bash_bin="$(command -v bash)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

passed=0
failed=0
case_dir=""

# A new case: an empty root, and a bin directory holding only the tools the script itself
# uses (never cmake, make, compilers, llvm-config or apt-get unless the case adds them).
new_case() {
  case_dir="$work/$1"
  mkdir -p "$case_dir/root" "$case_dir/bin"
  local tool
  for tool in readlink sort env mktemp rm cat; do ln -s "$(command -v "$tool")" "$case_dir/bin/$tool"; done
}

# Files in the case's root (relative paths; symlinks relative so they stay inside it).
touch_root() { local f; for f in "$@"; do mkdir -p "$case_dir/root/$(dirname "$f")"; : >"$case_dir/root/$f"; done; }
link_root() { mkdir -p "$case_dir/root/$(dirname "$2")"; ln -s "$1" "$case_dir/root/$2"; }

# A command on the case's PATH that prints its arguments' answer.
fake_command() { printf '#!%s\necho "%s"\n' "$bash_bin" "${2:-}" >"$case_dir/bin/$1"; chmod 755 "$case_dir/bin/$1"; }

# A fake apt-get that records each call; with "install-files", it also lays down what the
# packages would (so the script's check after installing succeeds).
fake_apt_get() {
  local mkdir_bin
  mkdir_bin=$(command -v mkdir)
  cat >"$case_dir/bin/apt-get" <<EOF
#!$bash_bin
echo "\$*" >>"$case_dir/apt-get.log"
if [ "${1:-}" = install-files ] && [ "\$1" = install ]; then
  for p in "\$@"; do
    case "\$p" in
      libclang-dev)
        $mkdir_bin -p "$case_dir/root/usr/lib/llvm-14/lib/clang/14.0.6/include"
        : >"$case_dir/root/usr/lib/llvm-14/lib/libclang.so.1"
        : >"$case_dir/root/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h" ;;
      cmake) printf '#!$bash_bin\n' >"$case_dir/bin/cmake"; chmod 755 "$case_dir/bin/cmake" ;;
    esac
  done
fi
EOF
  chmod 755 "$case_dir/bin/apt-get"
}

# The usual build tools, present.
build_tools() { fake_command cmake; fake_command make; fake_command cc; fake_command c++; }
# What this project's machine image ships: LLVM 14 and libclang-cpp, but not libclang.
fresh_image_llvm() {
  fake_command llvm-config /usr/lib/llvm-14
  touch_root usr/lib/llvm-14/lib/libLLVM-14.so.1 usr/lib/llvm-14/lib/libclang-cpp.so.14
  link_root ../../lib/x86_64-linux-gnu/libclang-cpp.so.14 usr/lib/llvm-14/lib/libclang-cpp.so
  touch_root usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
}
libclang_headers() { touch_root usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h; }

# Runs the script for the current case; sets $rc, $out, $installs (the `install` calls).
run_script() {
  out=$(env -i PATH="$case_dir/bin" HOME="$work" "$@" "$bash_bin" "$script" --root "$case_dir/root" --apt-get apt-get ${SCRIPT_ARGS:-} 2>&1)
  rc=$?
  installs=$(grep '^install' "$case_dir/apt-get.log" 2>/dev/null | tr '\n' ' ')
}

check() { # description, condition...
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok   $current: $what"
  else
    failed=$((failed + 1))
    echo "FAIL $current: $what"
    echo "     exit $rc; apt-get: ${installs:-none}"
    printf '%s\n' "$out" | sed 's/^/     | /'
  fi
}
requested() { [[ " $installs " == *" $1 "* ]]; }
not_requested() { ! requested "$1"; }
no_install() { [ -z "$installs" ]; }
exit_is() { [ "$rc" -eq "$1" ]; }
says() { [[ "$out" == *"$1"* ]]; }

# 1. The fresh machine of the bug report: libclang-cpp.so.14 present, libclang absent.
current="libclang-cpp is not libclang"
new_case c1; build_tools; fresh_image_llvm; fake_apt_get
run_script
check "libclang-dev requested" requested libclang-dev
check "nothing else requested" [ "$(echo $installs)" = "update -qq install -y -qq --no-install-recommends libclang-dev" -o "$(echo $installs)" = "install -y -qq --no-install-recommends libclang-dev" ]
check "fails when apt-get installed nothing" exit_is 1
check "says what is still missing" says "still missing after apt-get install: libclang-dev"

# 1b. The same with clang's builtin headers installed (libclang-common-14-dev): libclang-cpp still does not count.
new_case c1b; build_tools; fresh_image_llvm; libclang_headers; fake_apt_get
run_script
check "with headers present, libclang-dev still requested" requested libclang-dev

# 2. Same machine, and apt-get really lays down the files: success.
current="install then re-check"
new_case c2; build_tools; fresh_image_llvm; fake_apt_get install-files
run_script
check "libclang-dev requested" requested libclang-dev
check "exit 0 after installing" exit_is 0
check "the re-check found it" says "found /usr/lib/llvm-14/lib/libclang.so.1"

# 3. libclang present only as Debian's libclang-14.so.1 link in the multiarch dir, headers beside the real file.
current="versioned libclang via link"
new_case c3; build_tools; fresh_image_llvm; rm "$case_dir/bin/llvm-config"; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang-14.so.14.0.6; libclang_headers
link_root ../llvm-14/lib/libclang-14.so.14.0.6 usr/lib/x86_64-linux-gnu/libclang-14.so.1
run_script
check "nothing installed" no_install
check "exit 0" exit_is 0
check "names the library and its headers" says "found /usr/lib/llvm-14/lib/libclang-14.so.14.0.6 (builtin headers /usr/lib/llvm-14/lib/clang/14.0.6/include)"

# 4. libclang present without clang's builtin headers (libclang1-14 alone): bindgen would fail on stddef.h.
current="libclang without headers"
new_case c4; build_tools; fresh_image_llvm; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang.so.1
run_script
check "libclang-dev requested" requested libclang-dev
check "says the headers are missing" says "not clang's builtin headers"

# 5. LIBCLANG_PATH is the only place bindgen looks when set.
current="LIBCLANG_PATH"
new_case c5; build_tools; fake_apt_get
touch_root opt/llvm/lib/libclang.so opt/llvm/lib/clang/18/include/stddef.h
run_script LIBCLANG_PATH=/opt/llvm/lib
check "a good LIBCLANG_PATH is used, nothing installed" no_install
check "exit 0" exit_is 0
new_case c5b; build_tools; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang.so.1; libclang_headers
run_script LIBCLANG_PATH=/opt/nothing
check "a wrong LIBCLANG_PATH stops with a message, though the system has libclang" exit_is 1
check "the message names LIBCLANG_PATH" says "LIBCLANG_PATH=/opt/nothing has no libclang"
check "nothing installed (apt cannot fix it)" no_install

# 6. cmake missing (everything else present).
current="missing cmake"
new_case c6; fake_command make; fake_command cc; fake_command c++; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang.so.1; libclang_headers
run_script
check "cmake requested" requested cmake
check "libclang not requested" not_requested libclang-dev
check "one line per dependency" says "cmake           missing"
new_case c6b; build_tools; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang.so.1; libclang_headers
run_script CMAKE=/opt/cmake/bin/cmake
check "\$CMAKE is what the cmake crate runs: requested when it is missing" requested cmake

# 7. The C++ compiler, and libfaketime only with --tests.
current="compiler and libfaketime"
new_case c7; fake_command cmake; fake_command make; fake_command cc; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang.so.1; libclang_headers
SCRIPT_ARGS=--tests run_script
check "g++ requested" requested g++
check "faketime requested with --tests" requested faketime
new_case c7b; build_tools; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang.so.1 usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1; libclang_headers
SCRIPT_ARGS=--tests run_script
check "everything present: nothing installed" no_install
check "everything present: exit 0" exit_is 0
new_case c7c; build_tools; fake_apt_get
touch_root usr/lib/llvm-14/lib/libclang.so.1; libclang_headers
run_script
check "libfaketime not checked without --tests" not_requested faketime

# 8. No apt-get: stop before anything, naming the packages.
current="not Debian"
new_case c8; fake_command make; fake_command cc; fake_command c++; fresh_image_llvm
run_script
check "exit 1" exit_is 1
check "names the package" says "apt-get install cmake libclang-dev"
check "says why" says "not a Debian/Ubuntu system"

# 9. Not root and no sudo: stop, naming the packages (as root, drop to nobody for this case).
current="not root"
new_case c9; build_tools; fresh_image_llvm; fake_apt_get
chmod -R a+rX "$case_dir"
if [ "$EUID" -eq 0 ]; then
  if command -v setpriv >/dev/null 2>&1; then
    run_script "$(command -v setpriv)" --reuid=65534 --regid=65534 --clear-groups
  else
    rc=skip
  fi
else
  run_script
fi
if [ "$rc" = skip ]; then
  echo "SKIP $current: running as root without setpriv"
else
  check "exit 1" exit_is 1
  check "apt-get never called" no_install
  check "says root is needed and names the package" says "needs root"
  check "names the package" says "apt-get install libclang-dev"
fi

echo "ensure-build-deps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
