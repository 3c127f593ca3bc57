#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# vcluster.sh up 3 --rate 100mbit: the hosts file, reachability between hosts and from the root
# namespace, tbf on both directions of every link; down removes everything and is idempotent.
source "$(dirname "$0")/lib.sh"
require_vcluster_env
trap '"$vcluster" down >/dev/null 2>&1 || true' EXIT

"$vcluster" up 3 --rate 100mbit

hosts=/run/gradpack-vcluster/hosts
[ -f "$hosts" ] || fail "no $hosts"
expected=$'gpvc0 10.249.0.1 eth0\ngpvc1 10.249.0.2 eth0\ngpvc2 10.249.0.3 eth0'
[ "$(cat "$hosts")" = "$expected" ] || fail "hosts file is: $(cat "$hosts")"

# A second up is refused and leaves the cluster as it was.
if "$vcluster" up 2 >/dev/null 2>&1; then fail "a second 'up' was accepted"; fi
[ "$("$vcluster" exec gpvc2 cat /proc/net/dev | grep -c eth0)" = 1 ] || fail "host 2 lost eth0"

reach 0 1 10.249.0.2 || fail "host 0 does not reach host 1"
reach 2 0 10.249.0.1 || fail "host 2 does not reach host 0"
"$vcluster" exec 1 ip -4 addr show dev eth0 | grep -q "inet 10.249.0.2/24" || fail "host 1 address"
"$vcluster" exec 1 ip link show lo | grep -q "UP" || fail "lo is down in host 1"
# The launchers in the root namespace reach the hosts through the bridge's address.
ip -4 addr show dev gpvcbr0 | grep -q "inet 10.249.0.254/24" || fail "bridge address"

for i in 0 1 2; do
  up=$("$vcluster" exec "$i" tc qdisc show dev eth0)
  down=$(tc qdisc show dev "gpvcb$i")
  echo "$up" | grep -q "tbf .*rate 100Mbit burst 256Kb" || fail "host $i uplink: $up"
  echo "$down" | grep -q "tbf .*rate 100Mbit burst 256Kb" || fail "host $i downlink: $down"
done
status=$("$vcluster" status)
grep -q "gpvc2 10.249.0.3 eth0" <<<"$status" || fail "status does not list host 2"

"$vcluster" down
assert_clean
"$vcluster" down || fail "a second down failed"
echo "PASS: up 3 --rate 100mbit, reachability, tbf both ways, down removes everything"
