#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Re-planning when a link degrades (docs/topology.md), on the racked vcluster: N hosts in 2 racks
# (rack placement), every host link and both uplinks at --rate, the switch tree given to gradpack
# (GRADPACK_TOPOLOGY=the vcluster's cluster.conf). Four runs of gradpack-degrade-bench, one rank
# per host, each a loop of --size all-reduces timed call by call:
#   1. degrade, GRADPACK_REPLAN=on: after call --at, `vcluster.sh degrade HOST --to` cuts one
#      host's link (both ways) while the ranks wait; restored after the run;
#   2. the same with GRADPACK_REPLAN=off;
#   3. and 4. no degrade, on and off, --steady calls each: the cost of watching.
# Prints per run the mean time per call before the cut, just after it (until the rebuild), after
# the rebuild, the call of the rebuild, and the ratios the issue asks for: off/on after the
# rebuild, measured/predicted (the model's time for the rebuilt plan from the last link check,
# logged at debug level, i.e. on the degraded cluster's agreed rates), and on/off without a
# degrade.
#
#   bench/degrade.sh [-n HOSTS] [--rate RATE] [--to RATE] [--host H] [--size BYTES]
#                    [--calls N] [--at K] [--steady N] [--out DIR]
#
# Defaults: 8 hosts, --rate 500mbit, --to 50mbit, --host 5, --size 64M, --calls 24, --at 10,
# --steady 12, --out bench/out/degrade. Needs root (exit 77 otherwise); holds
# /run/gradpack-vcluster.lock while its cluster is up. BUILD_DIR (default build) must hold the
# built tools (gradpack-run, gradpack-degrade-bench).
set -euo pipefail

cd "$(dirname "$0")/.."
name="degrade"
# shellcheck source=bench/lib.sh
source bench/lib.sh

hosts=8 rate=500mbit to=50mbit host=5 size=64M calls=24 at=10 steady=12 out=bench/out/degrade
while [ $# -gt 0 ]; do
  case $1 in
    -n) hosts=${2:?-n needs a value}; shift 2 ;;
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --to) to=${2:?--to needs a value}; shift 2 ;;
    --host) host=${2:?--host needs a value}; shift 2 ;;
    --size) size=${2:?--size needs a value}; shift 2 ;;
    --calls) calls=${2:?--calls needs a value}; shift 2 ;;
    --at) at=${2:?--at needs a value}; shift 2 ;;
    --steady) steady=${2:?--steady needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
for v in hosts host calls at steady; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--$v must be a number, got '${!v}'"
done
[ "$hosts" -ge 4 ] && [ $((hosts % 2)) -eq 0 ] || die "-n must be an even number >= 4"
[ "$host" -lt "$hosts" ] || die "--host $host is not one of the $hosts hosts"
[ "$at" -ge 2 ] && [ "$at" -lt "$calls" ] || die "--at must be in 2..calls-1"
if [ "$(id -u)" -ne 0 ]; then
  echo "$name: needs root (network namespaces, veth, tc)" >&2
  exit 77
fi
for tool in gradpack-run gradpack-degrade-bench; do
  [ -x "$build/tools/$tool" ] || [ -x "$build/bench/$tool" ] || die "$tool is not built in $build"
done
run_tool=$build/tools/gradpack-run
bench_tool=$build/bench/gradpack-degrade-bench

install_cleanup
exec 9>/run/gradpack-vcluster.lock
flock -w 900 9 || die "the vcluster lock (/run/gradpack-vcluster.lock) is held by someone else"
mkdir -p "$out"
"$vcluster" up "$hosts" --racks 2 --rate "$rate" --uplink "$rate" --placement rack
made_vcluster=1
go=$(mktemp -d)
scratch+=("$go")

# run NAME REPLAN CALLS [degrade]: one gradpack-degrade-bench run into $out/NAME.txt.
run() {
  local label=$1 replan=$2 n=$3 cut=${4:-} extra=() pid
  rm -f "$go/go"
  [ -z "$cut" ] || extra=(--pause-after "$at" --pause-file "$go/go")
  GRADPACK_TOPOLOGY=/run/gradpack-vcluster/cluster.conf GRADPACK_REPLAN=$replan \
    GRADPACK_LOG=debug GRADPACK_LOG_SUBSYS=topo \
    "$run_tool" -n "$hosts" --vcluster -- "$bench_tool" --size "$size" --calls "$n" "${extra[@]}" \
    >"$out/$label.txt" 2>&1 &
  pid=$!
  pids+=("$pid")
  if [ -n "$cut" ]; then
    until grep -q '^# paused' "$out/$label.txt"; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    "$vcluster" degrade "$host" "$to" >/dev/null
    touch "$go/go"
  fi
  wait "$pid" || { cat "$out/$label.txt" >&2; die "run $label failed"; }
  [ -z "$cut" ] || "$vcluster" degrade "$host" restore >/dev/null
}

run degrade_on on "$calls" cut
run degrade_off off "$calls" cut
run steady_on on "$steady"
run steady_off off "$steady"

# The figures, from the per-call lines ("call I SECONDS ALGORITHM REBUILDS").
summary=$out/degrade.txt
case $size in
  *[Kk]) bytes=$((${size%?} << 10)) ;;
  *[Mm]) bytes=$((${size%?} << 20)) ;;
  *[Gg]) bytes=$((${size%?} << 30)) ;;
  *) bytes=$size ;;
esac
awk -v at="$at" -v bytes="$bytes" '
  function mean(s, c) { return c ? s / c : 0 }
  FNR == 1 { file = FILENAME; sub(/.*\//, "", file); sub(/\.txt$/, "", file) }
  /^call / {
    i = $2; t = $3; rb = $5
    if (file ~ /^degrade/) {
      if (i >= 2 && i <= at) { pre[file] += t; npre[file]++ }
      if (i > at) {
        # The rebuild decided at the end of call i (its count printed with it) plans call i+1.
        if (!(file in first) || i <= first[file]) { mid[file] += t; nmid[file]++ }
        else { post[file] += t; npost[file]++ }
        if (rb > 0 && !(file in first)) first[file] = i
        all[file] += t; nall[file]++
      }
    } else if (i >= 2) { st[file] += t; nst[file]++ }
  }
  # The model of the plan that runs, from the agreed rates of each link check (debug log): the
  # last one, measured on the degraded cluster under the rebuilt plan.
  /link check/ && match($0, /predicted [0-9.e+-]+ s\/GB now/) && FILENAME ~ /degrade_on/ {
    s = substr($0, RSTART, RLENGTH); split(s, w, " "); predicted_sgb = w[2]
  }
  END {
    printf "before the cut (calls 2-%d): on %.3f s, off %.3f s per call\n", at,
      mean(pre["degrade_on"], npre["degrade_on"]), mean(pre["degrade_off"], npre["degrade_off"])
    if (!("degrade_on" in first)) { print "re-planning: no rebuild happened"; exit 1 }
    printf "rebuilt at call %d (%d calls after the cut)\n", first["degrade_on"], first["degrade_on"] - at
    printf "just after the cut, until the rebuild: %.3f s per call\n", mean(mid["degrade_on"], nmid["degrade_on"])
    on = mean(post["degrade_on"], npost["degrade_on"]); off = mean(all["degrade_off"], nall["degrade_off"])
    printf "after the rebuild: %.3f s per call; GRADPACK_REPLAN=off after the cut: %.3f s per call\n", on, off
    printf "off / on after the rebuild: %.2fx\n", off / on
    if (predicted_sgb != "") {
      pred = predicted_sgb * bytes / 1e9
      printf "model of the rebuilt plan on the degraded cluster: %.3f s; measured / model: %.2f\n", pred, on / pred
    }
    son = mean(st["steady_on"], nst["steady_on"]); soff = mean(st["steady_off"], nst["steady_off"])
    printf "no degrade: on %.3f s, off %.3f s per call; cost of watching: %+.1f%%\n", son, soff, (son / soff - 1) * 100
  }' "$out/degrade_on.txt" "$out/degrade_off.txt" "$out/steady_on.txt" "$out/steady_off.txt" \
  | tee "$summary"
