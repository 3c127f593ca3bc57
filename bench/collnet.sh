#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CollNet through the plugin, compressed vs uncompressed, back to back on the same setup: a float32
# sum of --size bytes through libnccl-net-gradpack.so's CollNet face as NCCL's CollNetChain issues
# it (gradpack-collnet-bench: 2 MiB iallreduce calls, 8 in flight), one process per node.
#
#   bench/collnet.sh vcluster [-n N] [--rate RATE] [options]   N namespaced hosts, tbf on each link
#   bench/collnet.sh local    [-n N] [options]                 N processes here (loopback)
#
# Runs uncompressed, then GRADPACK_COLLNET_COMPRESS=q8 and q4 (--codecs), and prints each run's
# line and time(uncompressed) / time(codec), from the median times (time_ms; each the slowest
# node's). With --racks (vcluster) every run is made twice, alternating: topology-aware
# (GRADPACK_TOPOLOGY = the cluster file vcluster.sh wrote; each node is placed by its vcluster host
# name and CollNet's chunks take the plans that follow the racks) and flat (GRADPACK_TOPOLOGY=off),
# and the table adds time(flat) / time(topology-aware) for each codec.
# Options:
#   -n N            nodes (and vcluster hosts; default 4)
#   --rate RATE     tbf rate of every host link, both directions (vcluster; default 1gbit;
#                   "none" for unshaped links)
#   --racks R       vcluster hosts in R racks (vcluster.sh up --racks); 1 (default): no racks
#   --uplink RATE   each rack's uplink (vcluster.sh up --uplink; with --racks)
#   --placement P   rack (default) or interleaved host placement (vcluster.sh up --placement)
#   --rounds N      with --racks: topology-aware and flat runs alternated N times (default 1); the
#                   table takes each setting's median time over its rounds
#   --probe         with --racks: the topology-aware runs find the racks themselves
#                   (GRADPACK_TOPOLOGY=auto: the probe among the nodes at connect) instead of
#                   reading vcluster.sh's cluster file
#   --size BYTES    the all-reduce (default 64M)
#   --chunk BYTES   bytes per iallreduce (default 2M)
#   --iters N       timed all-reduces per run (default 10; one warm-up before)
#   --codecs LIST   the compressed runs (default "q8 q4")
#   --out DIR       every run's output and collnet.txt (default bench/out/collnet)
#   --timeout SEC   limit of each run (default 600)
# Environment: BUILD_DIR (default build; configured and built when the binaries are missing),
#   JOBS (build parallelism, default 2). The vcluster mode needs root (exit 77 otherwise) and
#   holds /run/gradpack-vcluster.lock while the cluster it made is up.
set -euo pipefail

cd "$(dirname "$0")/.."
name="collnet"
# shellcheck source=bench/lib.sh
source bench/lib.sh

[ $# -ge 1 ] || usage
mode=$1
shift
case $mode in
  local | vcluster) ;;
  -h | --help) usage 0 ;;
  *) die "unknown mode '$mode' (vcluster or local)" ;;
esac

nodes=4 rate="" size=64M chunk=2M iters=10 codecs="q8 q4" timeout_s=600
racks=1 uplink="" placement=rack rounds=1 aware=/run/gradpack-vcluster/cluster.conf
out=$root/bench/out/collnet
while [ $# -gt 0 ]; do
  case $1 in
    -n) nodes=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --size) size=${2:?}; shift 2 ;;
    --chunk) chunk=${2:?}; shift 2 ;;
    --iters) iters=${2:?}; shift 2 ;;
    --codecs) codecs=${2?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --racks) racks=${2:?}; shift 2 ;;
    --uplink) uplink=${2:?}; shift 2 ;;
    --placement) placement=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --probe) aware=auto; shift ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
if ! [[ $nodes =~ ^[0-9]+$ ]] || [ "$nodes" -lt 2 ]; then die "-n needs at least 2 nodes"; fi
if [ "$mode" != vcluster ] && [ -n "$rate" ]; then die "--rate needs the vcluster mode"; fi
if ! [[ $racks =~ ^[0-9]+$ ]] || [ "$racks" -lt 1 ]; then die "--racks needs a count >= 1"; fi
if ! [[ $rounds =~ ^[0-9]+$ ]] || [ "$rounds" -lt 1 ]; then die "--rounds needs a count >= 1"; fi
if [ "$racks" -gt 1 ] && [ "$mode" != vcluster ]; then die "--racks needs the vcluster mode"; fi
if [ "$racks" -eq 1 ] && [ -n "$uplink" ]; then die "--uplink needs --racks"; fi
if [ "$mode" = vcluster ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "collnet: the vcluster mode needs root (network namespaces)" >&2
    exit 77
  fi
  : "${rate:=1gbit}"
  if [ "$rate" = none ]; then rate=""; fi
fi

# --- build -------------------------------------------------------------------------------------
gp_run=$build/tools/gradpack-run
gp_bench=$build/bench/gradpack-collnet-bench
if [ ! -x "$gp_run" ] || [ ! -x "$gp_bench" ]; then
  # shellcheck disable=SC2119
  configure_build
  echo "collnet: building gradpack-run gradpack-collnet-bench nccl-net-gradpack"
  cmake --build "$build" --target gradpack-run gradpack-collnet-bench nccl-net-gradpack \
    -j "$jobs" >/dev/null ||
    die "could not build (cmake --build $build --target gradpack-run gradpack-collnet-bench)"
fi

# --- cleanup: everything started is stopped by PID; the vcluster made here is removed -----------
install_cleanup

mkdir -p "$out"

launcher=("$gp_run" -n "$nodes" --timeout "$timeout_s")
if [ "$mode" = vcluster ]; then
  # Other scripts and tests use the same namespaces: wait for them, then own the cluster.
  exec 9>/run/gradpack-vcluster.lock
  flock -w 900 9 || die "the vcluster lock (/run/gradpack-vcluster.lock) is held by someone else"
  up_args=("$nodes")
  if [ -n "$rate" ]; then up_args+=(--rate "$rate"); fi
  if [ "$racks" -gt 1 ]; then up_args+=(--racks "$racks" --placement "$placement"); fi
  if [ -n "$uplink" ]; then up_args+=(--uplink "$uplink"); fi
  echo "collnet: \$ $vcluster up ${up_args[*]}"
  "$vcluster" up "${up_args[@]}"
  made_vcluster=1
  launcher+=(--vcluster)
else
  # The plugin's device: loopback only, over TCP.
  export GRADPACK_IFNAME="=lo" GRADPACK_TRANSPORT=tcp
fi

# Runs one setting in the background (so that a trap can stop it by PID), its output to
# FILE.txt and FILE.err after printing the exact command. A failed run is reported and the rest
# goes on.
#   bench NAME CODEC [TOPOLOGY]   (CODEC empty: uncompressed; TOPOLOGY: GRADPACK_TOPOLOGY's value,
#                                  empty: the environment's)
bench() {
  local name=$1 codec=$2 topology=${3:-}
  local cmd=("${launcher[@]}" -- "$gp_bench" --size "$size" --chunk "$chunk" --iters "$iters")
  local envs=(env -u GRADPACK_COLLNET_COMPRESS) shown=""
  if [ -n "$codec" ]; then
    envs=(env "GRADPACK_COLLNET_COMPRESS=$codec")
    shown="GRADPACK_COLLNET_COMPRESS=$codec "
  fi
  if [ -n "$topology" ]; then
    envs+=("GRADPACK_TOPOLOGY=$topology")
    shown+="GRADPACK_TOPOLOGY=$topology "
  fi
  echo "collnet: \$ $shown${cmd[*]}"
  "${envs[@]}" "${cmd[@]}" >"$out/$name.txt" 2>"$out/$name.err" &
  local pid=$!
  pids+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  cat "$out/$name.txt"
  if [ "$rc" != 0 ]; then
    echo "collnet: warning: $name: exit status $rc: $(grep -v '^gradpack-run: rank .* was killed' \
      "$out/$name.err" | head -3 | tr '\n' ' ')"
  fi
  return 0
}

if [ "$racks" -gt 1 ]; then
  # Topology-aware and flat alternate, so that both see the same state of this machine.
  for round in $(seq "$rounds"); do
    for c in off $codecs; do
      codec=$c
      if [ "$c" = off ]; then codec=""; fi
      bench "$c.tree.$round" "$codec" "$aware"
      bench "$c.flat.$round" "$codec" off
    done
  done
else
  bench off ""
  for c in $codecs; do bench "$c" "$c"; done
fi

if [ "$made_vcluster" = 1 ]; then
  echo "collnet: \$ $vcluster down"
  made_vcluster=0
  "$vcluster" down
fi

# time(uncompressed) / time(codec), from the time_ms field of each run's line.
time_of() {
  sed -n 's/^collnet: .* time_ms=\([0-9.]*\) .*/\1/p' "$out/$1.txt" 2>/dev/null | head -1
}
# The median time_ms of the runs NAME.1, NAME.2, ... (empty when none has one).
median_of() {
  local r
  for r in $(seq "$rounds"); do time_of "$1.$r"; done | sort -g |
    awk '{v[NR] = $1} END {if (NR) printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
if [ "$racks" -gt 1 ]; then
  {
    echo "# CollNet float32 sum of $size, $chunk per iallreduce, $nodes nodes in $racks racks" \
      "($placement), links ${rate:-unshaped}, uplinks ${uplink:-unshaped}; median of $rounds round(s)"
    printf "# %-8s %12s %12s %10s %12s\n" codec tree_ms flat_ms flat/tree "off/tree"
    base=$(median_of off.tree)
    for c in off $codecs; do
      t=$(median_of "$c.tree") f=$(median_of "$c.flat") x=- y=-
      if [ -n "$t" ] && [ -n "$f" ]; then x=$(ratio "$f" "$t"); fi
      if [ -n "$t" ] && [ -n "$base" ]; then y=$(ratio "$base" "$t"); fi
      printf "  %-8s %12s %12s %10s %12s\n" "$c" "${t:--}" "${f:--}" "$x" "$y"
    done
  } | tee "$out/collnet.txt"
  echo "collnet: every run's output and collnet.txt in $out"
  exit 0
fi
{
  echo "# CollNet float32 sum of $size, $chunk per iallreduce, $nodes nodes, $mode${rate:+, links $rate}"
  base=$(time_of off)
  printf "# %-8s %10s %8s\n" codec time_ms speedup
  printf "  %-8s %10s %8s\n" off "${base:--}" 1.00
  for c in $codecs; do
    t=$(time_of "$c")
    x=-
    if [ -n "$base" ] && [ -n "$t" ]; then x=$(awk -v a="$base" -v b="$t" 'BEGIN{printf "%.2f", a/b}'); fi
    printf "  %-8s %10s %8s\n" "$c" "${t:--}" "$x"
  done
} | tee "$out/collnet.txt"
echo "collnet: every run's output and collnet.txt in $out"
