#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cluster probe (GRADPACK_TOPOLOGY=auto) on namespaced hosts: gradpack-topo as 8 ranks of
# `gradpack-run --vcluster` on 8 hosts in 2 racks, interleaved (host i in rack i mod 2), 500 Mbit/s
# host links behind 125 Mbit/s uplinks, must find the two racks exactly from its measurements
# alone, in at most 2 s, and write them as a cluster file; on 8 hosts under one switch it must
# find none. Arguments: gradpack-run gradpack-topo (empty when not built). Holds
# /run/gradpack-vcluster.lock while it owns the vcluster.
# shellcheck source=tests/vcluster/lib.sh
source "$(dirname "$0")/lib.sh"
gp_run=${1:-} gp_topo=${2:-}
if [ ! -x "$gp_run" ] || [ ! -x "$gp_topo" ]; then skip "gradpack-run or gradpack-topo is not built"; fi
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, veth, tc)"
exec 9>/run/gradpack-vcluster.lock
flock -w 300 9 || skip "the vcluster lock is held by someone else for 5 minutes"
require_vcluster_env
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
state=/run/gradpack-vcluster

# HOST RACK lines -> the rack of each host in host order, racks renamed a, b, ... in order of
# first appearance, so that two groupings compare equal when they group the hosts alike.
partition() {
  sort -V | awk '{ if (!($2 in id)) id[$2] = sprintf("%c", 97 + n++); printf "%s", id[$2] }'
}

probe() {  # OUT: the JSON line gradpack-topo printed (rank 0 only), the cluster in OUT.cluster
  GRADPACK_TOPOLOGY=auto "$gp_run" -n 8 --vcluster --timeout 120 -- "$gp_topo" --json \
    --write "$1.cluster" >"$1" 2>&1 || { cat "$1"; fail "gradpack-topo failed"; }
  [ "$(grep -c '"tool": "gradpack-topo"' "$1")" = 1 ] || { cat "$1"; fail "not printed once"; }
}

"$vcluster" up 8 --racks 2 --rate 500mbit --uplink 125mbit --placement interleaved >/dev/null
trap '"$vcluster" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
probe "$work/racks.json"
grep -q '"origin": "probe"' "$work/racks.json" || { cat "$work/racks.json"; fail "no racks found"; }
want=$(partition <"$state/racks")
got=$(awk '$1 == "host" { sub("switch=", "", $3); print $2, $3 }' "$work/racks.json.cluster" |
  partition)
[ "$want" = "$got" ] || fail "racks by host: vcluster $want, probe $got: $(cat "$work/racks.json")"
seconds=$(grep -o '"probe_seconds": [0-9.e+-]*' "$work/racks.json" | awk '{print $2}')
awk -v s="$seconds" 'BEGIN { exit !(s > 0 && s <= 2) }' ||
  fail "the probe took ${seconds:-?} s (at most 2 s)"
echo "racks: $(grep -o '"source": "[^"]*"' "$work/racks.json")"
"$vcluster" down >/dev/null
assert_clean

"$vcluster" up 8 --rate 500mbit >/dev/null
probe "$work/flat.json"
grep -q '"origin": "flat"' "$work/flat.json" || { cat "$work/flat.json"; fail "racks on one switch"; }
echo "one switch: $(grep -o '"source": "[^"]*"' "$work/flat.json")"
"$vcluster" down >/dev/null
assert_clean
echo "PASS: the probe found the 2 interleaved racks exactly in $seconds s, and none under one switch"
