#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Failure paths: a failing command after up, a harness killed by SIGTERM, and an `up` that fails
# half-way all leave nothing behind.
source "$(dirname "$0")/lib.sh"
require_vcluster_env
trap '"$vcluster" down >/dev/null 2>&1 || true' EXIT

# 1. A script that brings a cluster up and then fails: its trap still removes the cluster.
rc=0
bash -c 'set -e; trap "\"$0\" down" EXIT; "$0" up 2 >/dev/null; "$0" exec 1 false; echo unreachable' \
  "$vcluster" || rc=$?
[ "$rc" -ne 0 ] || fail "the failing command did not fail the script"
assert_clean

# 2. The same harness stopped by SIGTERM while it runs.
# (The harness stops its own sleep by PID, or the sleep would hold the test's output open.)
bash -c 'trap "\"$0\" down" EXIT; "$0" up 2 >/dev/null; sleep 30 & s=$!
         trap "kill \$s; \"$0\" down; exit 143" TERM; touch "$1"; wait $s' \
  "$vcluster" "${TMPDIR:-/tmp}/vcluster-ready.$$" &
harness=$!
for _ in $(seq 100); do [ -e "${TMPDIR:-/tmp}/vcluster-ready.$$" ] && break; sleep 0.1; done
[ -e "${TMPDIR:-/tmp}/vcluster-ready.$$" ] || fail "the harness never brought its cluster up"
rm -f "${TMPDIR:-/tmp}/vcluster-ready.$$"
kill -TERM "$harness"
wait "$harness" 2>/dev/null || true
assert_clean

# 3. `up` failing after creating some hosts undoes itself.
if GPVC_TEST_FAIL_AT=1 "$vcluster" up 3 >/dev/null 2>&1; then fail "injected failure ignored"; fi
assert_clean

# 4. Bad arguments create nothing.
if "$vcluster" up 0 >/dev/null 2>&1; then fail "up 0 was accepted"; fi
if "$vcluster" up 2 --rate fast >/dev/null 2>&1; then fail "--rate fast was accepted"; fi
if "$vcluster" exec 7 true >/dev/null 2>&1; then fail "exec in a missing host succeeded"; fi
assert_clean
echo "PASS: failing command, SIGTERM and a failed up all clean up"
