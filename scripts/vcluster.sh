#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A test cluster on one machine: N "hosts" as network namespaces on one Linux bridge.
#
#   vcluster.sh up N [--rate RATE] [--burst SIZE]   create hosts gpvc0..gpvc(N-1)
#   vcluster.sh down                                 remove everything `up` created (idempotent)
#   vcluster.sh exec HOST CMD...                     run CMD in HOST (index or name)
#   vcluster.sh status                               print the hosts file and the qdiscs
#   vcluster.sh agent ADDRESS CMD...                 Open MPI rsh agent (see docs/benchmarks.md)
#
# Layout: host i is namespace gpvc<i> with interface eth0 = 10.249.0.<i+1>/24, joined by a veth
# pair (root side gpvcb<i>) to the bridge gpvcbr0. The bridge has 10.249.0.254/24 so that
# launchers in the root namespace (mpirun, gradpack-run) reach the hosts. --rate puts a tbf on both
# directions of every host link: egress of eth0 (uplink) and egress of gpvcb<i> (downlink).
# No other address is configured and nothing outside 10.249.0.0/24 is touched.
#
# Contract with `gradpack-run --vcluster`: /run/gradpack-vcluster/hosts, one line per host,
# "NAME ADDRESS IFNAME" (e.g. "gpvc0 10.249.0.1 eth0"). The shaping rate, when there is one, is in
# /run/gradpack-vcluster/rate (the tc rate string and bits per second).
#
# A failed `up` removes what it had created. GPVC_TEST_FAIL_AT=i (tests only) makes `up`
# fail right after creating host i.
set -euo pipefail

readonly PREFIX=gpvc
readonly BRIDGE=gpvcbr0
readonly SUBNET=10.249.0
readonly BRIDGE_ADDR=${SUBNET}.254
readonly IFNAME=eth0
readonly STATE_DIR=/run/gradpack-vcluster
readonly MAX_HOSTS=64
readonly MIN_BURST=262144  # 256 KiB: holds a veth GSO super-packet with room to spare.

die() {
  echo "vcluster: $*" >&2
  exit 1
}

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "vcluster: needs root (network namespaces, veth, bridge, tc); run it with sudo" >&2
    exit 77
  fi
  command -v ip >/dev/null || die "the 'ip' command (iproute2) is missing: apt-get install iproute2"
}

# Names of the namespaces this script creates, as they exist now.
our_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}[0-9]+$" | sort -V || true
}

# Root-namespace links this script creates: the bridge and the root side of each veth pair.
our_links() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
    grep -E "^(${BRIDGE}|${PREFIX}b[0-9]+)$" || true
}

# Converts a tc rate ("100mbit", "1gbit", "500kbit", "10mbps", "1000000bit") to bits per second.
rate_to_bps() {
  local rate=${1,,} num unit mult
  [[ $rate =~ ^([0-9]+)([a-z]*)$ ]] || die "bad rate '$1' (use e.g. 100mbit, 1gbit)"
  num=${BASH_REMATCH[1]}
  unit=${BASH_REMATCH[2]}
  case $unit in
    bit) mult=1 ;;
    kbit) mult=1000 ;;
    mbit) mult=1000000 ;;
    gbit) mult=1000000000 ;;
    tbit) mult=1000000000000 ;;
    bps) mult=8 ;;
    kbps) mult=8000 ;;
    mbps) mult=8000000 ;;
    gbps) mult=8000000000 ;;
    *) die "bad rate unit in '$1' (bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps)" ;;
  esac
  [ "$num" -gt 0 ] || die "rate must be positive"
  echo $((num * mult))
}

# Converts a size ("262144", "256kb", "1mb", "512k") to bytes (tc's units: k = 1024).
size_to_bytes() {
  local size=${1,,} num unit
  [[ $size =~ ^([0-9]+)(b|k|kb|m|mb)?$ ]] || die "bad size '$1' (use e.g. 262144, 256kb, 1mb)"
  num=${BASH_REMATCH[1]}
  unit=${BASH_REMATCH[2]}
  case $unit in
    "" | b) echo "$num" ;;
    k | kb) echo $((num * 1024)) ;;
    m | mb) echo $((num * 1024 * 1024)) ;;
  esac
}

# Resolves a host given as an index or a name to its namespace name.
host_ns() {
  local host=$1
  if [[ $host =~ ^[0-9]+$ ]]; then host=${PREFIX}${host}; fi
  [[ $host =~ ^${PREFIX}[0-9]+$ ]] || die "no such host '$1' (an index or a name like ${PREFIX}0)"
  our_namespaces | grep -qx "$host" || die "host '$host' does not exist (vcluster.sh up N first)"
  echo "$host"
}

cmd_down() {
  local ns link
  for ns in $(our_namespaces); do
    # Deleting the namespace destroys its eth0 and with it the veth peer on the bridge.
    ip netns delete "$ns" 2>/dev/null || true
  done
  for link in $(our_links); do
    [ "$link" = "$BRIDGE" ] && continue
    ip link delete "$link" 2>/dev/null || true
  done
  if our_links | grep -qx "$BRIDGE"; then ip link delete "$BRIDGE" type bridge 2>/dev/null || true; fi
  rm -rf "$STATE_DIR"
  local left
  left="$(our_namespaces) $(our_links)"
  [ -z "${left// /}" ] || die "could not remove: $left"
}

cmd_up() {
  [ $# -ge 1 ] || usage
  local n=$1 rate="" burst=""
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --rate) rate=${2:?--rate needs a value}; shift 2 ;;
      --rate=*) rate=${1#--rate=}; shift ;;
      --burst) burst=${2:?--burst needs a value}; shift 2 ;;
      --burst=*) burst=${1#--burst=}; shift ;;
      -h | --help) usage 0 ;;
      *) die "up: unknown option '$1'" ;;
    esac
  done
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt $MAX_HOSTS ]; then
    die "up: N must be 1..$MAX_HOSTS, got '$n'"
  fi
  [ -z "$burst" ] || [ -n "$rate" ] || die "up: --burst needs --rate"

  if [ -n "$(our_namespaces)$(our_links)" ] || [ -e "$STATE_DIR" ]; then
    die "a vcluster already exists ($(our_namespaces | tr '\n' ' ')); run 'vcluster.sh down' first"
  fi
  # The subnet must be ours alone, or traffic for it could leave through another interface.
  if ip -4 route show | grep -qE "^${SUBNET//./\\.}\.0/24 "; then
    die "10.249.0.0/24 is already routed in the root namespace: $(ip -4 route show | grep "^${SUBNET}.0/24")"
  fi

  local bps=0 burst_bytes=0
  if [ -n "$rate" ]; then
    command -v tc >/dev/null || die "the 'tc' command (iproute2) is missing"
    bps=$(rate_to_bps "$rate")
    if [ -n "$burst" ]; then
      burst_bytes=$(size_to_bytes "$burst")
      [ "$burst_bytes" -ge $MIN_BURST ] ||
        echo "vcluster: warning: burst $burst_bytes B < 256 KiB; tbf will run below its rate" >&2
    else
      # 2 ms worth of tokens (256 KiB at 1 Gbit/s), never less than 256 KiB.
      burst_bytes=$((bps / 8 / 500))
      [ "$burst_bytes" -ge $MIN_BURST ] || burst_bytes=$MIN_BURST
    fi
  fi

  # Anything half-built is removed when a step fails.
  trap 'echo "vcluster: up failed; removing what was created" >&2; cmd_down || true' ERR
  set -E

  ip link add "$BRIDGE" type bridge stp_state 0
  sysctl -qw "net.ipv6.conf.${BRIDGE}.disable_ipv6=1" 2>/dev/null || true
  ip addr add "${BRIDGE_ADDR}/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  mkdir -p "$STATE_DIR"
  : >"$STATE_DIR/hosts.tmp"
  local i ns peer addr
  for ((i = 0; i < n; i++)); do
    ns=${PREFIX}${i}
    peer=${PREFIX}b${i}
    addr=${SUBNET}.$((i + 1))
    ip netns add "$ns"
    ip link add "$peer" type veth peer name "$IFNAME" netns "$ns"
    sysctl -qw "net.ipv6.conf.${peer}.disable_ipv6=1" 2>/dev/null || true
    ip link set "$peer" master "$BRIDGE"
    ip link set "$peer" up
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.${IFNAME}.disable_ipv6=1" 2>/dev/null || true
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${addr}/24" dev "$IFNAME"
    ip -n "$ns" link set "$IFNAME" up
    if [ -n "$rate" ]; then
      # latency bounds the queue (it adds no delay): 50 ms of backlog at the shaped rate.
      ip netns exec "$ns" tc qdisc add dev "$IFNAME" root tbf rate "$rate" burst "$burst_bytes" \
        latency 50ms
      tc qdisc add dev "$peer" root tbf rate "$rate" burst "$burst_bytes" latency 50ms
    fi
    echo "$ns $addr $IFNAME" >>"$STATE_DIR/hosts.tmp"
    # Fault injection for tests/vcluster: fail half-way to prove that `up` undoes itself.
    if [ "${GPVC_TEST_FAIL_AT:-}" = "$i" ]; then false; fi
  done
  if [ -n "$rate" ]; then echo "$rate $bps" >"$STATE_DIR/rate"; fi
  mv "$STATE_DIR/hosts.tmp" "$STATE_DIR/hosts"
  trap - ERR

  echo "vcluster: $n hosts on $BRIDGE (${SUBNET}.1-${SUBNET}.$n, bridge ${BRIDGE_ADDR})" \
    "${rate:+shaped to $rate each way, burst $burst_bytes B}"
}

cmd_exec() {
  [ $# -ge 2 ] || die "usage: vcluster.sh exec HOST CMD..."
  local ns
  ns=$(host_ns "$1")
  shift
  exec ip netns exec "$ns" "$@"
}

cmd_status() {
  if [ ! -f "$STATE_DIR/hosts" ]; then
    echo "vcluster: none (vcluster.sh up N creates one)"
    return 0
  fi
  echo "# $STATE_DIR/hosts"
  cat "$STATE_DIR/hosts"
  if [ -f "$STATE_DIR/rate" ]; then echo "# rate: $(cat "$STATE_DIR/rate")"; fi
  local ns ifname peer
  echo "# qdiscs"
  while read -r ns _ ifname; do
    peer=${PREFIX}b${ns#"$PREFIX"}
    echo "$ns $ifname (uplink):   $(ip netns exec "$ns" tc qdisc show dev "$ifname" | head -1)"
    echo "$ns $peer (downlink): $(tc qdisc show dev "$peer" | head -1)"
  done <"$STATE_DIR/hosts"
}

# Open MPI's plm_rsh_agent: called as `agent ADDRESS CMD...` with CMD one shell string, like ssh.
# It runs CMD in the host that owns ADDRESS, with the host's name as its UTS hostname, so each
# rank sees a different node (and uses TCP between hosts, not shared memory).
cmd_agent() {
  [ $# -ge 2 ] || die "usage: vcluster.sh agent ADDRESS CMD..."
  local target=$1 ns
  shift
  ns=$(awk -v a="$target" '$2 == a || $1 == a {print $1}' "$STATE_DIR/hosts" 2>/dev/null)
  [ -n "$ns" ] || die "agent: '$target' is not a vcluster host"
  exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
}

main() {
  [ $# -ge 1 ] || usage
  local cmd=$1
  shift
  case $cmd in
    -h | --help | help) usage 0 ;;
  esac
  require_root
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    exec) cmd_exec "$@" ;;
    status) cmd_status ;;
    agent) cmd_agent "$@" ;;
    *) usage ;;
  esac
}

main "$@"
