#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The net plugin between two vcluster hosts (unshaped): NCCL's ring pattern through
# gradpack-plugin-bench, first with every payload checked, then timed against iperf3 between the
# same two hosts in the same run. Prints the figures; asserts correctness, not speed.
# Arguments: gradpack-plugin-bench libnccl-net-gradpack.so (empty when not built).
# Holds /run/gradpack-vcluster.lock while it owns the vcluster (other scripts may use it too).
source "$(dirname "$0")/../vcluster/lib.sh"
bench=${1:-} plugin=${2:-}
if [ ! -x "$bench" ] || [ ! -r "$plugin" ]; then skip "gradpack-plugin-bench or the plugin is not built"; fi
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, veth, tc)"
command -v iperf3 >/dev/null || skip "iperf3 is not installed (apt-get install iperf3)"
exec 9>/run/gradpack-vcluster.lock
flock -w 600 9 || skip "the vcluster lock is held by someone else for 10 minutes"
require_vcluster_env
work=$(mktemp -d)
trap '"$vcluster" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

"$vcluster" up 2 >/dev/null

# Correctness first: every payload checked, across the hosts' eth0 (not loopback).
"$bench" --plugin "$plugin" --netns gpvc0,gpvc1 --messages 512 --check >"$work/check.txt" 2>&1 ||
  { cat "$work/check.txt"; fail "the checked ring between gpvc0 and gpvc1 failed"; }
grep '^plugin:' "$work/check.txt"

# Then the figure: NCCL's ring pattern vs iperf3, same hosts, same run.
"$bench" --plugin "$plugin" --netns gpvc0,gpvc1 --messages 2048 --vs-iperf3 >"$work/bench.txt" 2>&1 ||
  { cat "$work/bench.txt"; fail "the timed ring or iperf3 failed"; }
cat "$work/bench.txt"

"$vcluster" down >/dev/null
assert_clean
echo "PASS: the plugin between two vcluster hosts, payloads checked; figures above"
