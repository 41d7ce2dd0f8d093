#!/usr/bin/env bash
# A multi-host test network on one machine: one network namespace per node, each with its own
# address in 10.77.0.0/24 on a veth link to a bridge that lives in a namespace of its own. The
# root namespace is not on the bridge, so traffic flows only between these namespaces.
#
#   net.sh up   [PREFIX]   create (after removing any leftovers with the same PREFIX)
#   net.sh down [PREFIX]   remove every namespace named PREFIX-* (idempotent)
#   net.sh list [PREFIX]   print "name address" for each node
#   net.sh check           exit 0 when namespaces can be made here, 77 (skip) when not
#   net.sh gc              remove the namespaces of test runs that died (names cn<PID>-*
#                          whose PID is gone), killing what still runs in them
#
# PREFIX defaults to "cn" (namespaces cn-sw, cn-p0 ...); tests pass a unique one.
# Nodes (namespace suffix, address): ch .5 (the local TON chain), p0 .11, p1 .12 (proxies),
# w0..w3 .21-.24 (workers, each with its mock engine on the namespace's own 127.0.0.1), c0 .31,
# c1 .32 (clients).
# Inside every node namespace: `lo` up and `eth0` (10.77.0.X/24). In PREFIX-sw: bridge `br0` and
# one port `v-NODE` per node; `ip -n PREFIX-sw link set v-w3 down` partitions worker w3.
# Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN); without it `up` and `check` exit 77 with a message.
set -euo pipefail

NODES=(ch:5 p0:11 p1:12 w0:21 w1:22 w2:23 w3:24 c0:31 c1:32)
SUBNET=10.77.0

cmd=${1:-}
prefix=${2:-cn}
case "$prefix" in
  *[!a-zA-Z0-9_]* | "") echo "net.sh: bad prefix '$prefix'" >&2; exit 2 ;;
esac

namespaces() {
  # `ip netns list` prints "name (id: N)" or "name"; keep our prefix only.
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-" || true
}

down() {
  local ns
  for ns in $(namespaces); do
    # Processes still inside would keep the namespace's stack alive after `del`.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
}

gc() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^cn[0-9]+-' || true); do
    pid=${ns#cn}
    pid=${pid%%-*}
    if [ ! -d "/proc/$pid" ]; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

check() {
  if ! command -v ip >/dev/null 2>&1; then
    echo "SKIP: iproute2 ('ip') is not installed" >&2
    exit 77
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "SKIP: network namespaces need root (running as uid $(id -u))" >&2
    exit 77
  fi
  local probe="${prefix}-probe$$"
  if ! ip netns add "$probe" 2>/tmp/netns-check.$$; then
    echo "SKIP: 'ip netns add' is not permitted here: $(cat /tmp/netns-check.$$)" >&2
    rm -f /tmp/netns-check.$$
    exit 77
  fi
  rm -f /tmp/netns-check.$$
  if ! ip -n "$probe" link add br-probe type bridge 2>/dev/null; then
    ip netns del "$probe" 2>/dev/null || true
    echo "SKIP: bridges cannot be created in a namespace here" >&2
    exit 77
  fi
  ip netns del "$probe"
}

up() {
  check
  down
  # Half-built networks are removed: on any failure below, tear down what exists.
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "net.sh: setup failed, cleaning up" >&2; down; fi' EXIT
  local sw="${prefix}-sw"
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  local entry node host ns
  for entry in "${NODES[@]}"; do
    node=${entry%%:*}
    host=${entry##*:}
    ns="${prefix}-${node}"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Both ends are created directly in their namespaces: nothing appears in the root one.
    ip link add eth0 netns "$ns" type veth peer name "v-${node}" netns "$sw"
    ip -n "$sw" link set "v-${node}" master br0
    ip -n "$sw" link set "v-${node}" up
    ip -n "$ns" addr add "${SUBNET}.${host}/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  trap - EXIT
}

list() {
  local entry
  for entry in "${NODES[@]}"; do
    echo "${prefix}-${entry%%:*} ${SUBNET}.${entry##*:}"
  done
}

case "$cmd" in
  up) up ;;
  down) down ;;
  list) list ;;
  check) check ;;
  gc) gc ;;
  *) echo "usage: $0 up|down|list|check|gc [PREFIX]" >&2; exit 2 ;;
esac
