# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Shared by the tests/vcluster scripts (sourced). Every test removes the vcluster it made, also
# when it fails; a vcluster that existed before the test is left alone (the test skips).
set -euo pipefail
vcluster=${VCLUSTER:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/vcluster.sh}

skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*"
  exit 1
}

require_vcluster_env() {
  [ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, veth, tc)"
  command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
  command -v tc >/dev/null || skip "no 'tc' command (iproute2)"
  if ip netns list 2>/dev/null | grep -qE '^gpvc[0-9]+' || [ -e /run/gradpack-vcluster ]; then
    skip "a vcluster already exists; run scripts/vcluster.sh down first"
  fi
}

# Lists what is left of a vcluster: namespaces, links and the state directory.
leftovers() {
  ip netns list 2>/dev/null | grep -E '^gpvc' || true
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^gpvc' || true
  if [ -e /run/gradpack-vcluster ]; then echo /run/gradpack-vcluster; fi
}

assert_clean() {
  local left
  left=$(leftovers)
  [ -z "$left" ] || fail "left behind: $(echo "$left" | tr '\n' ' ')"
}

# Whether host FROM (index) reaches ADDRESS: ping when installed, else one TCP exchange through
# iperf3 (server in TO: a host index, or "root" for the root namespace's 10.249.0.254), else a
# python3 TCP connect.
reach() {
  local from=$1 to=$2 address=$3
  local in_to=("$vcluster" exec "$to")
  if [ "$to" = root ]; then in_to=(); fi
  if command -v ping >/dev/null; then
    "$vcluster" exec "$from" ping -c 1 -W 2 "$address" >/dev/null
    return
  fi
  if command -v iperf3 >/dev/null; then
    "${in_to[@]}" iperf3 -s -1 -B "$address" >/dev/null 2>&1 &
    local server=$! ok=1
    for _ in $(seq 30); do
      if "$vcluster" exec "$from" iperf3 -c "$address" -n 64K >/dev/null 2>&1; then
        ok=0
        break
      fi
      sleep 0.1
    done
    if kill -0 "$server" 2>/dev/null; then kill "$server" 2>/dev/null || true; fi
    wait "$server" 2>/dev/null || true
    return "$ok"
  fi
  "${in_to[@]}" python3 -c '
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], 5999)); s.listen(1); s.settimeout(5); s.accept()
' "$address" &
  local server=$! ok=1
  for _ in $(seq 30); do
    if "$vcluster" exec "$from" python3 -c '
import socket, sys
socket.create_connection((sys.argv[1], 5999), timeout=1)' "$address" 2>/dev/null; then
      ok=0
      break
    fi
    sleep 0.1
  done
  wait "$server" 2>/dev/null || true
  return "$ok"
}
