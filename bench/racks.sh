#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What the racked vcluster delivers, measured with iperf3 (TCP, one stream per flow), each figure
# as a ratio to the rate configured for it:
#   1. intra-rack: one flow between two hosts of rack 0, vs the host rate;
#   2. cross-rack: every host of rack 0 sends to one of rack 1 and back at once (H/2 flows each
#      direction), each flow vs uplink / (H/2), each direction's sum vs the uplink, and how
#      evenly the flows of a direction shared it (Jain's index);
#   3. degrade: a flow between two hosts of rack 0 while `vcluster.sh degrade` cuts the receiver's
#      link half-way through, per second before and after vs the two rates; then, restored, the
#      same flow vs the host rate.
#
#   bench/racks.sh [-n HOSTS] [--rate RATE] [--uplink RATE] [--degrade RATE] [-t SEC] [--out DIR]
#
# Defaults: 8 hosts in 2 racks (rack placement), --rate 500mbit, --uplink 125mbit, --degrade
# 50mbit, -t 5 seconds per flow, --out bench/out/racks (racks.txt and every iperf3 JSON). Needs root
# (exit 77 otherwise) and iperf3; holds /run/gradpack-vcluster.lock while its cluster is up.
set -euo pipefail

cd "$(dirname "$0")/.."
name="racks"
# shellcheck source=bench/lib.sh
source bench/lib.sh

hosts=8 rate=500mbit uplink=125mbit degrade=50mbit secs=5 out=bench/out/racks
while [ $# -gt 0 ]; do
  case $1 in
    -n) hosts=${2:?-n needs a value}; shift 2 ;;
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --uplink) uplink=${2:?--uplink needs a value}; shift 2 ;;
    --degrade) degrade=${2:?--degrade needs a value}; shift 2 ;;
    -t) secs=${2:?-t needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
if ! [[ $hosts =~ ^[0-9]+$ ]] || [ "$hosts" -lt 4 ] || [ $((hosts % 2)) -ne 0 ]; then
  die "-n must be an even number >= 4, got '$hosts'"
fi
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 2 ]; then die "-t must be >= 2 seconds, got '$secs'"; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$name: needs root (network namespaces, veth, tc)" >&2
  exit 77
fi
command -v iperf3 >/dev/null || die "iperf3 is not installed (apt-get install iperf3)"
command -v jq >/dev/null || die "jq is not installed (apt-get install jq)"

install_cleanup
exec 9>/run/gradpack-vcluster.lock
flock -w 600 9 || die "the vcluster lock (/run/gradpack-vcluster.lock) is held by someone else"
mkdir -p "$out"
rm -f "$out"/*.json
# A failed up removes what it made; and a cluster that was there before is not ours to take down.
"$vcluster" up "$hosts" --racks 2 --rate "$rate" --uplink "$uplink" --placement rack
made_vcluster=1
half=$((hosts / 2))

address() { echo "10.249.0.$(($1 + 1))"; }
# Bits per second of a tc rate string (the units this script accepts).
to_bps() {
  local r=${1,,} n
  [[ $r =~ ^([0-9]+)(bit|kbit|mbit|gbit)$ ]] || die "use bit, kbit, mbit or gbit rates: '$1'"
  n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in
    bit) echo "$n" ;;
    kbit) echo $((n * 1000)) ;;
    mbit) echo $((n * 1000000)) ;;
    gbit) echo $((n * 1000000000)) ;;
  esac
}

# Starts an iperf3 server for one test in host TO and waits until it listens.
serve() {
  local to=$1
  "$vcluster" exec "$to" iperf3 -s -1 -B "$(address "$to")" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    if "$vcluster" exec "$to" ss -Hltn 'sport = :5201' | grep -q .; then return; fi
    sleep 0.1
  done
  die "the iperf3 server in host $to did not start"
}
# Runs a flow FROM -> TO for SECS seconds in the background, its JSON in $out/FILE.json.
flow() {
  local from=$1 to=$2 file=$3
  "$vcluster" exec "$from" iperf3 -c "$(address "$to")" -t "$secs" -J >"$out/$file.json" &
  pids+=($!)
}
received() { jq -r '.end.sum_received.bits_per_second' "$out/$1.json"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
mbit() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1e6 }'; }

rate_bps=$(to_bps "$rate")
uplink_bps=$(to_bps "$uplink")
degrade_bps=$(to_bps "$degrade")
report=$out/racks.txt
{
  echo "# bench/racks.sh: $hosts hosts in 2 racks (rack placement), host links $rate," \
    "uplinks $uplink, $secs s per flow, iperf3 $(iperf3 --version | head -1 | awk '{print $2}')"
  echo "# figure                               Mbit/s   configured   ratio"
} >"$report"
line() { printf '%-38s %8s %12s %7s\n' "$1" "$(mbit "$2")" "$3" "$(ratio "$2" "$4")" >>"$report"; }

# 1. Intra-rack: host 0 -> host 1, both in rack 0.
serve 1
flow 0 1 intra
wait "${pids[@]}"
pids=()
line "intra-rack gpvc0->gpvc1" "$(received intra)" "$rate" "$rate_bps"

# 2. Cross-rack: host i -> i + half and i + half -> i, all at once.
for ((i = 0; i < hosts; i++)); do serve "$i"; done
for ((i = 0; i < half; i++)); do
  flow "$i" $((i + half)) "up$i"
  flow $((i + half)) "$i" "down$i"
done
wait "${pids[@]}"
pids=()
share=$((uplink_bps / half))
for dir in up down; do
  sum=0
  for ((i = 0; i < half; i++)); do
    label="gpvc$((i + half))->gpvc$i"
    if [ $dir = up ]; then label="gpvc$i->gpvc$((i + half))"; fi
    got=$(received "$dir$i")
    line "cross-rack $label" "$got" "$uplink/$half" "$share"
    sum=$(awk -v a="$sum" -v b="$got" 'BEGIN { printf "%.0f", a + b }')
  done
  if [ $dir = up ]; then label="rack0->rack1"; else label="rack1->rack0"; fi
  line "cross-rack sum $label" "$sum" "$uplink" "$uplink_bps"
  # Jain's index over the flows of this direction: 1 = equal shares, 1/n = one flow has it all.
  jain=$(for ((i = 0; i < half; i++)); do received "$dir$i"; done |
    awk '{ s += $1; q += $1 * $1; n++ } END { printf "%.3f", s * s / (n * q) }')
  printf '%-38s %8s %12s %7s\n' "cross-rack fairness $label (Jain)" - - "$jain" >>"$report"
done

# 3. Degrade host 1 half-way through a flow 0 -> 1, then restore and measure again.
serve 1
flow 0 1 degrade
sleep $((secs / 2))
"$vcluster" degrade 1 "$degrade" >/dev/null
wait "${pids[@]}"
pids=()
"$vcluster" status | grep "^gpvc1 " >>"$out/status-degraded.txt"
# Per-second intervals: the ones wholly before the change and those from a second after it.
before=$(jq -r --argjson t $((secs / 2)) \
  '[.intervals[].sum | select(.end <= $t) | .bits_per_second] | add / length' "$out/degrade.json")
after=$(jq -r --argjson t $((secs / 2 + 1)) \
  '[.intervals[].sum | select(.start >= $t) | .bits_per_second] | add / length' "$out/degrade.json")
line "degrade: gpvc0->gpvc1 before" "$before" "$rate" "$rate_bps"
line "degrade: gpvc0->gpvc1 after" "$after" "$degrade" "$degrade_bps"
"$vcluster" degrade 1 restore >/dev/null
serve 1
flow 0 1 restored
wait "${pids[@]}"
pids=()
line "restored: gpvc0->gpvc1" "$(received restored)" "$rate" "$rate_bps"
cat "$report"
