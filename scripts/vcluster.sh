#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A test cluster on one machine: N "hosts" as network namespaces behind Linux bridges.
#
#   vcluster.sh up N [--rate RATE] [--burst SIZE]   create hosts gpvc0..gpvc(N-1) on one bridge
#       [--racks R [--uplink RATE] [--placement rack|interleaved]]
#                                                    ... or in R racks behind shaped uplinks
#   vcluster.sh down                                 remove everything `up` created (idempotent)
#   vcluster.sh exec HOST CMD...                     run CMD in HOST (index or name)
#   vcluster.sh degrade HOST|rackR RATE|restore      change one link's rate (both ways) mid-run
#   vcluster.sh status                               print the layout and the current rates
#   vcluster.sh agent ADDRESS CMD...                 Open MPI rsh agent (see docs/benchmarks.md)
#
# Layout: host i is namespace gpvc<i> with interface eth0 = 10.249.0.<i+1>/24, joined by a veth
# pair (root side gpvcb<i>) to a bridge. Without --racks that is the one bridge gpvcbr0. With
# --racks R, rack r is the bridge gpvcrack<r>, and each rack bridge is joined to the top bridge
# gpvcbr0 by its own veth pair (gpvcu<r> on the rack bridge, gpvct<r> on the top bridge): a
# two-level tree, so every rack has exactly one uplink and traffic between any two racks crosses
# exactly two uplinks, for any R (joining rack bridges to each other would need a chain or, with
# STP off, a loop-free mesh that does not exist beyond 2 racks). All hosts stay in one bridged
# subnet. gpvcbr0 has 10.249.0.254/24 so that launchers in the root namespace (mpirun,
# gradpack-run) reach the hosts; with racks they reach every rack through its uplink.
# --rate puts a tbf on both directions of every host link: egress of eth0 (uplink) and egress of
# gpvcb<i> (downlink). --uplink does the same on each rack uplink: egress of gpvcu<r> (rack to
# top) and of gpvct<r> (top to rack). --placement rack (default) puts hosts in contiguous blocks
# (8 hosts, 2 racks: 0-3 and 4-7); interleaved puts host i in rack i mod R. No other address is
# configured and nothing outside 10.249.0.0/24 is touched.
#
# Contract with `gradpack-run --vcluster`: /run/gradpack-vcluster/hosts, one line per host,
# "NAME ADDRESS IFNAME" (e.g. "gpvc0 10.249.0.1 eth0"). The shaping rate, when there is one, is in
# /run/gradpack-vcluster/rate (the tc rate string, bits per second and burst bytes).
# With --racks, also:
#   racks         "HOST RACK" per host (e.g. "gpvc0 rack0")
#   placement     "rack" or "interleaved"
#   uplink        the uplink's tc rate string, bits per second and burst bytes (when shaped)
# and always the switch tree, in two formats (docs/benchmarks.md, "The virtual cluster"):
#   cluster.conf  gradpack's: "switch NAME [parent=P] [uplink=RATE]",
#                 "host NAME switch=S [link=RATE]"
#   topology.conf Slurm's: "SwitchName=rack0 Nodes=gpvc[0-3]", "SwitchName=top Switches=rack[0-1]"
# `degrade` records the hosts and uplinks it changed in /run/gradpack-vcluster/degraded.
#
# A failed `up` removes what it had created. GPVC_TEST_FAIL_AT=i (tests only) makes `up`
# fail right after creating host i.
set -euo pipefail

readonly PREFIX=gpvc
readonly BRIDGE=gpvcbr0       # the only bridge, or the top of the rack tree
readonly RACK_BRIDGE=gpvcrack # + r: rack r's bridge
readonly RACK_UP=gpvcu        # + r: rack r's uplink veth, on the rack bridge (egress: to the top)
readonly RACK_DOWN=gpvct      # + r: its peer on the top bridge (egress: down to rack r)
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
  sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'
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

# Root-namespace links this script creates: the bridges and the root side of each veth pair.
our_links() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
    grep -E "^(${BRIDGE}|${PREFIX}b[0-9]+|(${RACK_BRIDGE}|${RACK_UP}|${RACK_DOWN})[0-9]+)$" || true
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

# The tbf bucket for a rate in bits per second: 2 ms worth of tokens (256 KiB at 1 Gbit/s), never
# less than 256 KiB.
default_burst() {
  local bytes=$(($1 / 8 / 500))
  [ "$bytes" -ge $MIN_BURST ] || bytes=$MIN_BURST
  echo "$bytes"
}

# Shapes the egress of DEV (in namespace NS, "" for the root namespace) to RATE with BURST bytes.
# `replace` changes a tbf that is there in place (its queue survives) or adds one.
shape() {
  local ns=$1 dev=$2 rate=$3 burst=$4
  # latency bounds the queue (it adds no delay): 50 ms of backlog at the shaped rate.
  if [ -n "$ns" ]; then
    ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" \
      latency 50ms
  else
    tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 50ms
  fi
}

# Removes the shaping of DEV (in NS), if there is any.
unshape() {
  local ns=$1 dev=$2
  if [ -n "$ns" ]; then
    ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
  else
    tc qdisc del dev "$dev" root 2>/dev/null || true
  fi
}

# The rate of DEV's tbf as tc prints it ("500Mbit"), or "unshaped".
tbf_rate() {
  local ns=$1 dev=$2 line
  if [ -n "$ns" ]; then
    line=$(ip netns exec "$ns" tc qdisc show dev "$dev" root 2>/dev/null | head -1)
  else
    line=$(tc qdisc show dev "$dev" root 2>/dev/null | head -1)
  fi
  if [[ $line =~ tbf.*\ rate\ ([^ ]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo unshaped; fi
}

# Slurm's host-list form of PREFIX and the sorted indices: "gpvc" "0 1 2 3" -> gpvc[0-3],
# "gpvc" "0 2 4" -> gpvc[0,2,4], "gpvc" "5" -> gpvc5.
slurm_list() {
  local prefix=$1 out="" start="" prev="" i
  # shellcheck disable=SC2086  # the indices are one word each
  set -- $2
  if [ $# -eq 1 ]; then
    echo "${prefix}$1"
    return
  fi
  for i in "$@" end; do
    if [ -n "$prev" ] && [ "$i" != end ] && [ "$i" -eq $((prev + 1)) ]; then
      prev=$i
      continue
    fi
    if [ -n "$start" ]; then
      if [ "$start" = "$prev" ]; then out+=",$start"; else out+=",$start-$prev"; fi
    fi
    start=$i
    prev=$i
  done
  echo "${prefix}[${out#,}]"
}

# The rack of host I of N in R racks: contiguous blocks (rack) or round robin (interleaved).
rack_of() {
  local i=$1 n=$2 racks=$3 placement=$4
  if [ "$placement" = interleaved ]; then echo $((i % racks)); else echo $((i * racks / n)); fi
}

cmd_down() {
  local ns link
  for ns in $(our_namespaces); do
    # Deleting the namespace destroys its eth0 and with it the veth peer on the bridge.
    ip netns delete "$ns" 2>/dev/null || true
  done
  # The veths next (deleting one end removes its peer), then the bridges they were on.
  for link in $(our_links); do
    [[ $link =~ ^(${BRIDGE}|${RACK_BRIDGE}[0-9]+)$ ]] && continue
    ip link delete "$link" 2>/dev/null || true
  done
  for link in $(our_links); do
    ip link delete "$link" type bridge 2>/dev/null || true
  done
  rm -rf "$STATE_DIR"
  local left
  left="$(our_namespaces) $(our_links)"
  [ -z "${left// /}" ] || die "could not remove: $left"
}

# Creates bridge NAME (no address, no STP: the tree has no loops).
add_bridge() {
  ip link add "$1" type bridge stp_state 0
  sysctl -qw "net.ipv6.conf.$1.disable_ipv6=1" 2>/dev/null || true
  ip link set "$1" up
}

# Writes cluster.conf and topology.conf for N hosts: flat (racks = 0) or in racks. The arguments
# are the racks, the placement, the host link rate and the uplink rate ("" when unshaped).
write_cluster_files() {
  local n=$1 racks=$2 placement=$3 rate=$4 uplink=$5 i r members
  {
    echo "# gradpack cluster file, written by scripts/vcluster.sh up (docs/benchmarks.md)."
    echo "# switch NAME [parent=SWITCH] [uplink=RATE]: a switch; uplink = its link to the parent."
    echo "# host NAME switch=SWITCH [link=RATE]: a host and the rate of its link to its switch."
    echo "# Without uplink= or link=, that link is unshaped. Rates are in tc's units."
    echo "switch top"
    for ((r = 0; r < racks; r++)); do
      echo "switch rack$r parent=top${uplink:+ uplink=$uplink}"
    done
    for ((i = 0; i < n; i++)); do
      if [ "$racks" -gt 0 ]; then
        r="rack$(rack_of "$i" "$n" "$racks" "$placement")"
      else
        r=top
      fi
      echo "host ${PREFIX}$i switch=$r${rate:+ link=$rate}"
    done
  } >"$STATE_DIR/cluster.conf"
  {
    echo "# Slurm topology.conf (topology/tree), written by scripts/vcluster.sh up."
    if [ "$racks" -eq 0 ]; then
      echo "SwitchName=top Nodes=$(slurm_list "$PREFIX" "$(seq -s ' ' 0 $((n - 1)))")"
    else
      for ((r = 0; r < racks; r++)); do
        members=""
        for ((i = 0; i < n; i++)); do
          if [ "$(rack_of "$i" "$n" "$racks" "$placement")" -eq "$r" ]; then members+=" $i"; fi
        done
        echo "SwitchName=rack$r Nodes=$(slurm_list "$PREFIX" "${members# }")"
      done
      echo "SwitchName=top Switches=$(slurm_list rack "$(seq -s ' ' 0 $((racks - 1)))")"
    fi
  } >"$STATE_DIR/topology.conf"
}

cmd_up() {
  [ $# -ge 1 ] || usage
  local n=$1 rate="" burst="" racks="" uplink="" placement=""
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --rate) rate=${2:?--rate needs a value}; shift 2 ;;
      --rate=*) rate=${1#--rate=}; shift ;;
      --burst) burst=${2:?--burst needs a value}; shift 2 ;;
      --burst=*) burst=${1#--burst=}; shift ;;
      --racks) racks=${2:?--racks needs a value}; shift 2 ;;
      --racks=*) racks=${1#--racks=}; shift ;;
      --uplink) uplink=${2:?--uplink needs a value}; shift 2 ;;
      --uplink=*) uplink=${1#--uplink=}; shift ;;
      --placement) placement=${2:?--placement needs a value}; shift 2 ;;
      --placement=*) placement=${1#--placement=}; shift ;;
      -h | --help) usage 0 ;;
      *) die "up: unknown option '$1'" ;;
    esac
  done
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt $MAX_HOSTS ]; then
    die "up: N must be 1..$MAX_HOSTS, got '$n'"
  fi
  [ -z "$burst" ] || [ -n "$rate" ] || die "up: --burst needs --rate"
  if [ -n "$racks" ]; then
    if ! [[ $racks =~ ^[0-9]+$ ]] || [ "$racks" -lt 1 ] || [ "$racks" -gt "$n" ]; then
      die "up: --racks must be 1..N ($n), got '$racks'"
    fi
    placement=${placement:-rack}
    [[ $placement =~ ^(rack|interleaved)$ ]] ||
      die "up: --placement is rack or interleaved, got '$placement'"
  else
    [ -z "$uplink" ] || die "up: --uplink needs --racks"
    [ -z "$placement" ] || die "up: --placement needs --racks"
    racks=0
  fi

  if [ -n "$(our_namespaces)$(our_links)" ] || [ -e "$STATE_DIR" ]; then
    die "a vcluster already exists ($(our_namespaces | tr '\n' ' ')); run 'vcluster.sh down' first"
  fi
  # The subnet must be ours alone, or traffic for it could leave through another interface.
  if ip -4 route show | grep -qE "^${SUBNET//./\\.}\.0/24 "; then
    die "10.249.0.0/24 is already routed in the root namespace: $(ip -4 route show | grep "^${SUBNET}.0/24")"
  fi

  local bps=0 burst_bytes=0 uplink_bps=0 uplink_burst=0
  if [ -n "$rate$uplink" ]; then
    command -v tc >/dev/null || die "the 'tc' command (iproute2) is missing"
  fi
  if [ -n "$rate" ]; then
    bps=$(rate_to_bps "$rate")
    if [ -n "$burst" ]; then
      burst_bytes=$(size_to_bytes "$burst")
      [ "$burst_bytes" -ge $MIN_BURST ] ||
        echo "vcluster: warning: burst $burst_bytes B < 256 KiB; tbf will run below its rate" >&2
    else
      burst_bytes=$(default_burst "$bps")
    fi
  fi
  if [ -n "$uplink" ]; then
    uplink_bps=$(rate_to_bps "$uplink")
    uplink_burst=$(default_burst "$uplink_bps")
  fi

  # Anything half-built is removed when a step fails.
  trap 'echo "vcluster: up failed; removing what was created" >&2; cmd_down || true' ERR
  set -E

  add_bridge "$BRIDGE"
  ip addr add "${BRIDGE_ADDR}/24" dev "$BRIDGE"
  mkdir -p "$STATE_DIR"
  local r up down
  for ((r = 0; r < racks; r++)); do
    up=${RACK_UP}$r
    down=${RACK_DOWN}$r
    add_bridge "${RACK_BRIDGE}$r"
    # Linux answers ARP for any of its addresses on any interface: without this, hosts would
    # reach ${BRIDGE_ADDR} at their rack bridge's own MAC, past the uplink (8: never answer).
    sysctl -qw "net.ipv4.conf.${RACK_BRIDGE}$r.arp_ignore=8"
    ip link add "$up" type veth peer name "$down"
    sysctl -qw "net.ipv6.conf.${up}.disable_ipv6=1" 2>/dev/null || true
    sysctl -qw "net.ipv6.conf.${down}.disable_ipv6=1" 2>/dev/null || true
    ip link set "$up" master "${RACK_BRIDGE}$r"
    ip link set "$down" master "$BRIDGE"
    ip link set "$up" up
    ip link set "$down" up
    if [ -n "$uplink" ]; then
      shape "" "$up" "$uplink" "$uplink_burst"
      shape "" "$down" "$uplink" "$uplink_burst"
    fi
  done

  : >"$STATE_DIR/hosts.tmp"
  local i ns peer addr bridge
  for ((i = 0; i < n; i++)); do
    ns=${PREFIX}${i}
    peer=${PREFIX}b${i}
    addr=${SUBNET}.$((i + 1))
    bridge=$BRIDGE
    if [ "$racks" -gt 0 ]; then
      r=$(rack_of "$i" "$n" "$racks" "$placement")
      bridge=${RACK_BRIDGE}$r
      echo "$ns rack$r" >>"$STATE_DIR/racks"
    fi
    ip netns add "$ns"
    ip link add "$peer" type veth peer name "$IFNAME" netns "$ns"
    sysctl -qw "net.ipv6.conf.${peer}.disable_ipv6=1" 2>/dev/null || true
    ip link set "$peer" master "$bridge"
    ip link set "$peer" up
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.${IFNAME}.disable_ipv6=1" 2>/dev/null || true
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${addr}/24" dev "$IFNAME"
    ip -n "$ns" link set "$IFNAME" up
    if [ -n "$rate" ]; then
      shape "$ns" "$IFNAME" "$rate" "$burst_bytes"
      shape "" "$peer" "$rate" "$burst_bytes"
    fi
    echo "$ns $addr $IFNAME" >>"$STATE_DIR/hosts.tmp"
    # Fault injection for tests/vcluster: fail half-way to prove that `up` undoes itself.
    if [ "${GPVC_TEST_FAIL_AT:-}" = "$i" ]; then false; fi
  done
  if [ -n "$rate" ]; then echo "$rate $bps $burst_bytes" >"$STATE_DIR/rate"; fi
  if [ "$racks" -gt 0 ]; then
    echo "$placement" >"$STATE_DIR/placement"
    if [ -n "$uplink" ]; then echo "$uplink $uplink_bps $uplink_burst" >"$STATE_DIR/uplink"; fi
  fi
  write_cluster_files "$n" "$racks" "$placement" "$rate" "$uplink"
  mv "$STATE_DIR/hosts.tmp" "$STATE_DIR/hosts"
  trap - ERR

  echo "vcluster: $n hosts (${SUBNET}.1-${SUBNET}.$n, root namespace ${BRIDGE_ADDR} on $BRIDGE)" \
    "${rate:+- links shaped to $rate each way, burst $burst_bytes B}"
  if [ "$racks" -gt 0 ]; then
    echo "vcluster: $racks racks, placement $placement, uplinks ${uplink:-unshaped}" \
      "${uplink:+each way, burst $uplink_burst B}"
  fi
}

cmd_exec() {
  [ $# -ge 2 ] || die "usage: vcluster.sh exec HOST CMD..."
  local ns
  ns=$(host_ns "$1")
  shift
  exec ip netns exec "$ns" "$@"
}

# degrade HOST|rackR RATE|restore: changes both directions of one host link (or rack uplink) to
# RATE, or back to the rate `up` gave it (removing the tbf where `up` set none). The tbf is changed
# in place, so the connections crossing it live on.
cmd_degrade() {
  [ $# -eq 2 ] || die "usage: vcluster.sh degrade HOST|rackR RATE|restore"
  [ -f "$STATE_DIR/hosts" ] || die "no vcluster (vcluster.sh up N first)"
  local target=$1 rate=$2 name inner_ns="" inner outer orig="" bps burst
  if [[ $target =~ ^rack([0-9]+)$ ]]; then
    name=$target
    inner=${RACK_UP}${BASH_REMATCH[1]}
    outer=${RACK_DOWN}${BASH_REMATCH[1]}
    our_links | grep -qx "$inner" || die "degrade: no rack '$target' (up N --racks R makes racks)"
    if [ -f "$STATE_DIR/uplink" ]; then orig=$(cat "$STATE_DIR/uplink"); fi
  else
    name=$(host_ns "$target")
    inner_ns=$name
    inner=$IFNAME
    outer=${PREFIX}b${name#"$PREFIX"}
    if [ -f "$STATE_DIR/rate" ]; then orig=$(cat "$STATE_DIR/rate"); fi
  fi
  command -v tc >/dev/null || die "the 'tc' command (iproute2) is missing"
  if [ "$rate" = restore ]; then
    if [ -n "$orig" ]; then
      read -r rate _ burst <<<"$orig"
      shape "$inner_ns" "$inner" "$rate" "$burst"
      shape "" "$outer" "$rate" "$burst"
    else
      unshape "$inner_ns" "$inner"
      unshape "" "$outer"
      rate=unshaped
    fi
    if [ -f "$STATE_DIR/degraded" ]; then
      awk -v n="$name" '$1 != n' "$STATE_DIR/degraded" >"$STATE_DIR/degraded.tmp"
      mv "$STATE_DIR/degraded.tmp" "$STATE_DIR/degraded"
    fi
    echo "vcluster: $name restored to $rate"
    return
  fi
  bps=$(rate_to_bps "$rate")
  burst=$(default_burst "$bps")
  shape "$inner_ns" "$inner" "$rate" "$burst"
  shape "" "$outer" "$rate" "$burst"
  {
    if [ -f "$STATE_DIR/degraded" ]; then awk -v n="$name" '$1 != n' "$STATE_DIR/degraded"; fi
    echo "$name $rate $bps"
  } >"$STATE_DIR/degraded.tmp"
  mv "$STATE_DIR/degraded.tmp" "$STATE_DIR/degraded"
  echo "vcluster: $name now $rate each way (burst $burst B); 'degrade $target restore' undoes it"
}

cmd_status() {
  if [ ! -f "$STATE_DIR/hosts" ]; then
    echo "vcluster: none (vcluster.sh up N creates one)"
    return 0
  fi
  echo "# $STATE_DIR/hosts"
  cat "$STATE_DIR/hosts"
  local racks=0
  if [ -f "$STATE_DIR/racks" ]; then
    racks=$(awk '{print $2}' "$STATE_DIR/racks" | sort -u | wc -l)
  fi
  if [ "$racks" -gt 0 ]; then
    echo "# layout: $racks racks under $BRIDGE, placement $(cat "$STATE_DIR/placement")," \
      "uplinks $(awk '{print $1}' "$STATE_DIR/uplink" 2>/dev/null || echo unshaped)"
  else
    echo "# layout: flat, one bridge $BRIDGE"
  fi
  echo "# host links: $(awk '{print $1}' "$STATE_DIR/rate" 2>/dev/null || echo unshaped)"
  echo "# current rates (tbf): NAME SWITCH UP(to switch) DOWN(from switch) [degraded]"
  local ns ifname peer sw mark r
  while read -r ns _ ifname; do
    peer=${PREFIX}b${ns#"$PREFIX"}
    sw=top
    if [ "$racks" -gt 0 ]; then sw=$(awk -v n="$ns" '$1 == n {print $2}' "$STATE_DIR/racks"); fi
    mark=""
    if grep -q "^$ns " "$STATE_DIR/degraded" 2>/dev/null; then mark=" degraded"; fi
    echo "$ns $sw $(tbf_rate "$ns" "$ifname") $(tbf_rate "" "$peer")$mark"
  done <"$STATE_DIR/hosts"
  for ((r = 0; r < racks; r++)); do
    mark=""
    if grep -q "^rack$r " "$STATE_DIR/degraded" 2>/dev/null; then mark=" degraded"; fi
    echo "rack$r top $(tbf_rate "" "${RACK_UP}$r") $(tbf_rate "" "${RACK_DOWN}$r")$mark"
  done
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
    degrade) cmd_degrade "$@" ;;
    status) cmd_status ;;
    agent) cmd_agent "$@" ;;
    *) usage ;;
  esac
}

main "$@"
