#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CollNet follows the cluster: 4 processes (one per "node", loopback) under gradpack-run drive the
# built .so through gradpack-collnet-bench, each with its own GRADPACK_HOSTNAME (fake0..fake3) and
# GRADPACK_HOSTID, and GRADPACK_TOPOLOGY naming those hosts in 2 racks, interleaved, with slow
# uplinks. Asserts, from the plugin's log and the bench's checked results:
#   1. uncompressed: every node is placed (2 switch levels) and NCCL's chunks take the multi-level
#      plan (hier), the sums exact;
#   2. GRADPACK_COLLNET_COMPRESS=q8: placed alike, the compressed multi-level plan (hier), results
#      within q8's bound;
#   3. GRADPACK_TOPOLOGY=off: no placement, the ring, exact; with q8 the direct plan;
#   4. a cluster file without fake3: connect fails, the message names fake3 and its rank;
#   5. GRADPACK_TOPOLOGY=auto: the nodes (distinct host ids) are probed at connect, exact; nodes
#      that share one host id are not probed (they would measure this machine's CPUs), exact.
# Arguments: gradpack-run gradpack-collnet-bench libnccl-net-gradpack.so
set -uo pipefail
run=${1:?gradpack-run} bench=${2:?gradpack-collnet-bench} plugin=${3:?the plugin}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
if [ ! -x "$run" ] || [ ! -x "$bench" ] || [ ! -r "$plugin" ]; then
  fail "missing $run, $bench or $plugin"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/four.cluster" <<'CLUSTER'
switch core
switch rack0 parent=core uplink=125mbit
switch rack1 parent=core uplink=125mbit
host fake0 switch=rack0 link=500mbit
host fake1 switch=rack1 link=500mbit
host fake2 switch=rack0 link=500mbit
host fake3 switch=rack1 link=500mbit
CLUSTER
grep -v fake3 "$work/four.cluster" >"$work/three.cluster"

export GRADPACK_IFNAME="=lo" GRADPACK_TRANSPORT=tcp GRADPACK_PLUGIN=$plugin
export GRADPACK_LOG=info GRADPACK_LOG_SUBSYS=topo,plugin GRADPACK_HARNESS_VERBOSE=1
: "${GRADPACK_TIMEOUT_MS:=20000}"
export GRADPACK_TIMEOUT_MS
# One CollNet all-reduce of 8 MiB in 1 MiB chunks on 4 nodes named fake<rank>; output to $1.
nodes() {
  local out=$1
  shift
  # shellcheck disable=SC2016  # expanded by each rank's shell, where GRADPACK_RANK is set
  "$run" -n 4 --timeout 100 -- /bin/sh -c \
    'GRADPACK_HOSTNAME=fake$GRADPACK_RANK GRADPACK_HOSTID=fake$GRADPACK_RANK exec "$0" "$@"' \
    "$bench" --size 8M --chunk 1M --iters 2 --warmup 1 >"$out" 2>&1
}
# Every node logged a line matching $2 in $1.
every_node() {
  for r in 0 1 2 3; do
    grep -q "${2//RANK/$r}" "$1" || { cat "$1"; fail "$3: rank $r did not log '${2//RANK/$r}'"; }
  done
}

GRADPACK_TOPOLOGY=$work/four.cluster nodes "$work/tree.txt" || { cat "$work/tree.txt"; fail "tree"; }
grep -q "check=ok" "$work/tree.txt" || { cat "$work/tree.txt"; fail "tree: the sums are wrong"; }
every_node "$work/tree.txt" "rank RANK: 2 switch levels above the hosts, from $work/four.cluster" tree
every_node "$work/tree.txt" "CollNet rank RANK of 4: all-reduces of 1048576 bytes take hier" tree
echo "ok: uncompressed CollNet on the tree: $(grep -o 'time_ms=[0-9.]*' "$work/tree.txt")"

GRADPACK_COLLNET_COMPRESS=q8 GRADPACK_TOPOLOGY=$work/four.cluster nodes "$work/q8.txt" ||
  { cat "$work/q8.txt"; fail "q8"; }
grep -q "check=ok" "$work/q8.txt" || { cat "$work/q8.txt"; fail "q8: outside the bound"; }
every_node "$work/q8.txt" "rank RANK: 2 switch levels above the hosts" q8
every_node "$work/q8.txt" "CollNet rank RANK of 4: all-reduces of 1048576 bytes take hier" q8
echo "ok: q8 CollNet on the tree: the compressed multi-level plan"

GRADPACK_COLLNET_COMPRESS=q8 GRADPACK_TOPOLOGY=off nodes "$work/q8off.txt" ||
  { cat "$work/q8off.txt"; fail "q8 off"; }
grep -q "check=ok" "$work/q8off.txt" || { cat "$work/q8off.txt"; fail "q8 off: outside the bound"; }
every_node "$work/q8off.txt" "CollNet rank RANK of 4: all-reduces of 1048576 bytes take direct" \
  "q8 off"
echo "ok: q8 with GRADPACK_TOPOLOGY=off: direct"

GRADPACK_TOPOLOGY=off nodes "$work/off.txt" || { cat "$work/off.txt"; fail "off"; }
grep -q "check=ok" "$work/off.txt" || { cat "$work/off.txt"; fail "off: the sums are wrong"; }
every_node "$work/off.txt" "CollNet rank RANK of 4: all-reduces of 1048576 bytes take ring" off
! grep -q "switch levels above the hosts" "$work/off.txt" || fail "off: the nodes were placed"
echo "ok: GRADPACK_TOPOLOGY=off: the ring"

if GRADPACK_TOPOLOGY=$work/three.cluster nodes "$work/unknown.txt"; then
  cat "$work/unknown.txt"
  fail "a cluster file without fake3 did not fail connect"
fi
grep -q "CollNet connect: GP_ERR_INVALID_ARGUMENT: GRADPACK_TOPOLOGY $work/three.cluster: .*'fake3' (rank 3)" \
  "$work/unknown.txt" || { cat "$work/unknown.txt"; fail "the error does not name fake3"; }
echo "ok: $(grep -o "the cluster file does not know.*" "$work/unknown.txt" | head -1)"

GRADPACK_TOPOLOGY=auto nodes "$work/auto.txt" || { cat "$work/auto.txt"; fail "auto"; }
grep -q "check=ok" "$work/auto.txt" || { cat "$work/auto.txt"; fail "auto: the sums are wrong"; }
grep -q "GRADPACK_TOPOLOGY=auto: probed 4 hosts in" "$work/auto.txt" ||
  { cat "$work/auto.txt"; fail "auto: the nodes were not probed"; }
echo "ok: auto: $(grep -o 'probed 4 hosts in [0-9.]* s' "$work/auto.txt" | head -1)"

# shellcheck disable=SC2016  # expanded by each rank's shell
GRADPACK_TOPOLOGY=auto "$run" -n 4 --timeout 100 -- /bin/sh -c \
  'GRADPACK_HOSTNAME=fake$GRADPACK_RANK GRADPACK_HOSTID=one-machine exec "$0" "$@"' \
  "$bench" --size 8M --chunk 1M --iters 2 --warmup 1 >"$work/shared.txt" 2>&1 ||
  { cat "$work/shared.txt"; fail "auto, one host id"; }
grep -q "check=ok" "$work/shared.txt" || { cat "$work/shared.txt"; fail "auto, one host id: sums"; }
! grep -q "probed" "$work/shared.txt" || { cat "$work/shared.txt"; fail "one host id was probed"; }
echo "ok: auto with one host id: not probed"
