#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# vcluster.sh up 4 --racks 2 --rate 100mbit --uplink 40mbit --placement interleaved: the rack
# bridges under gpvcbr0, every host on its rack's bridge, tbf at the right rates on host links and
# uplinks, the state files (racks, placement, uplink, cluster.conf, topology.conf), a cross-rack
# exchange and the root namespace reached through the uplink; degrade and restore change a host
# link's and an uplink's tbf; bad arguments are refused; a failed racked up and down leave nothing.
# Holds /run/gradpack-vcluster.lock while it owns the vcluster.
# shellcheck source=tests/vcluster/lib.sh
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, veth, tc)"
exec 9>/run/gradpack-vcluster.lock
flock -w 300 9 || skip "the vcluster lock is held by someone else for 5 minutes"
require_vcluster_env
ip netns add gprack-probe.$$ 2>/dev/null || skip "cannot create network namespaces here"
ip netns delete gprack-probe.$$
trap '"$vcluster" down >/dev/null 2>&1 || true' EXIT
state=/run/gradpack-vcluster

"$vcluster" up 4 --racks 2 --rate 100mbit --uplink 40mbit --placement interleaved >/dev/null

# Bridges and where every port sits: host i on rack i mod 2, each rack's uplink pair between its
# bridge and the top bridge.
master() { ip -o link show dev "$1" | grep -o 'master [^ ]*' | cut -d' ' -f2; }
for b in gpvcbr0 gpvcrack0 gpvcrack1; do
  ip -d link show dev "$b" 2>/dev/null | grep -q bridge || fail "no bridge $b"
done
ip -4 addr show dev gpvcbr0 | grep -q "inet 10.249.0.254/24" || fail "gpvcbr0 lost the root address"
for i in 0 1 2 3; do
  [ "$(master "gpvcb$i")" = "gpvcrack$((i % 2))" ] || fail "gpvcb$i is on '$(master "gpvcb$i")'"
done
for r in 0 1; do
  [ "$(master "gpvcu$r")" = "gpvcrack$r" ] || fail "uplink gpvcu$r is on '$(master "gpvcu$r")'"
  [ "$(master "gpvct$r")" = gpvcbr0 ] || fail "uplink peer gpvct$r is on '$(master "gpvct$r")'"
done

# tbf: host links at --rate, uplinks at --uplink, both directions.
expect_tbf() {  # NS ("" = root) DEV RATE
  local q in_ns=()
  if [ -n "$1" ]; then in_ns=(ip netns exec "$1"); fi
  q=$("${in_ns[@]}" tc qdisc show dev "$2")
  grep -q "tbf .*rate $3 " <<<"$q" || fail "$2${1:+ in $1}: expected tbf at $3, got: $q"
}
for i in 0 1 2 3; do
  expect_tbf "gpvc$i" eth0 100Mbit
  expect_tbf "" "gpvcb$i" 100Mbit
done
for r in 0 1; do
  expect_tbf "" "gpvcu$r" 40Mbit
  expect_tbf "" "gpvct$r" 40Mbit
done

# State files.
expect_file() {  # FILE EXPECTED (comment lines are not compared)
  local got
  got=$(grep -v '^#' "$state/$1" 2>/dev/null) || fail "no $state/$1"
  [ "$got" = "$2" ] || fail "$1 is:"$'\n'"$got"$'\n'"expected:"$'\n'"$2"
}
expect_file racks $'gpvc0 rack0\ngpvc1 rack1\ngpvc2 rack0\ngpvc3 rack1'
expect_file placement interleaved
expect_file uplink "40mbit 40000000 262144"
expect_file rate "100mbit 100000000 262144"
expect_file cluster.conf "switch top
switch rack0 parent=top uplink=40mbit
switch rack1 parent=top uplink=40mbit
host gpvc0 switch=rack0 link=100mbit
host gpvc1 switch=rack1 link=100mbit
host gpvc2 switch=rack0 link=100mbit
host gpvc3 switch=rack1 link=100mbit"
expect_file topology.conf "SwitchName=rack0 Nodes=gpvc[0,2]
SwitchName=rack1 Nodes=gpvc[1,3]
SwitchName=top Switches=rack[0-1]"
[ "$(wc -l <"$state/hosts")" = 4 ] || fail "hosts file: $(cat "$state/hosts")"

# Across racks, and to the launchers' address, which must be answered by gpvcbr0 itself (through
# the uplink), not by the rack bridge.
reach 0 1 10.249.0.2 || fail "host 0 (rack 0) does not reach host 1 (rack 1)"
reach 3 root 10.249.0.254 || fail "host 3 (rack 1) does not reach the root namespace"
top_mac=$(cat /sys/class/net/gpvcbr0/address)
neigh=$("$vcluster" exec 3 ip neigh show 10.249.0.254)
grep -q "lladdr $top_mac" <<<"$neigh" || fail "host 3 reaches 10.249.0.254 at '$neigh', not gpvcbr0"

# degrade and restore: a host link, then a rack uplink.
"$vcluster" degrade 1 10mbit >/dev/null
expect_tbf gpvc1 eth0 10Mbit
expect_tbf "" gpvcb1 10Mbit
expect_tbf gpvc3 eth0 100Mbit
status=$("$vcluster" status)
grep -qx "gpvc1 rack1 10Mbit 10Mbit degraded" <<<"$status" || fail "status: $status"
"$vcluster" degrade gpvc1 restore >/dev/null
expect_tbf gpvc1 eth0 100Mbit
expect_tbf "" gpvcb1 100Mbit
"$vcluster" degrade rack0 20mbit >/dev/null
expect_tbf "" gpvcu0 20Mbit
expect_tbf "" gpvct0 20Mbit
expect_tbf "" gpvcu1 40Mbit
"$vcluster" degrade rack0 restore >/dev/null
expect_tbf "" gpvcu0 40Mbit
expect_tbf "" gpvct0 40Mbit
status=$("$vcluster" status)
if grep -q " degraded$" <<<"$status"; then fail "still degraded: $status"; fi
if "$vcluster" degrade 9 10mbit >/dev/null 2>&1; then fail "degrade of a missing host"; fi
if "$vcluster" degrade rack2 10mbit >/dev/null 2>&1; then fail "degrade of a missing rack"; fi
if "$vcluster" degrade 1 fast >/dev/null 2>&1; then fail "degrade to 'fast'"; fi
expect_tbf gpvc1 eth0 100Mbit

"$vcluster" down
assert_clean

# Unshaped racks: degrade adds a tbf, restore takes it away again.
"$vcluster" up 2 --racks 2 >/dev/null
"$vcluster" degrade 0 10mbit >/dev/null
expect_tbf gpvc0 eth0 10Mbit
"$vcluster" degrade 0 restore >/dev/null
if grep -q tbf <<<"$(tc qdisc show dev gpvcb0)"; then fail "restore left a tbf on gpvcb0"; fi
"$vcluster" down
assert_clean

# Bad rack arguments create nothing; a racked up failing half-way removes what it made.
for args in "4 --uplink 10mbit" "4 --placement rack" "4 --racks 5" "4 --racks 0" \
  "4 --racks 2 --placement diagonal" "4 --racks 2 --uplink fast"; do
  # shellcheck disable=SC2086  # the arguments are words
  if "$vcluster" up $args >/dev/null 2>&1; then fail "up $args was accepted"; fi
  assert_clean
done
if GPVC_TEST_FAIL_AT=2 "$vcluster" up 4 --racks 2 --uplink 10mbit >/dev/null 2>&1; then
  fail "injected failure ignored"
fi
assert_clean
echo "PASS: racks (bridges, tbf, state files, cross-rack, root via uplink), degrade, cleanup"
