#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gradpack-run --vcluster -n 4 -- gradpack-perf on 4 hosts at 1 Gbit/s: every row checked, no
# wrong element. Arguments: gradpack-run gradpack-perf (empty when not built).
source "$(dirname "$0")/lib.sh"
gp_run=${1:-} gp_perf=${2:-}
if [ ! -x "$gp_run" ] || [ ! -x "$gp_perf" ]; then skip "gradpack-run or gradpack-perf is not built"; fi
require_vcluster_env
work=$(mktemp -d)
trap '"$vcluster" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

"$vcluster" up 4 --rate 1gbit >/dev/null

check_table() {
  local name=$1 file=$2 rows
  rows=$(awk '!/^#/ && NF >= 13' "$file" | wc -l)
  [ "$rows" -ge 1 ] || { cat "$file"; fail "$name printed no rows"; }
  awk '!/^#/ && NF >= 13 && ($9 != 0 || $13 != 0) {bad = 1} END {exit bad}' "$file" ||
    { cat "$file"; fail "$name: wrong elements"; }
  grep -q "Out of bounds values : 0 OK" "$file" || { cat "$file"; fail "$name: no OK footer"; }
}

"$gp_run" -n 4 --vcluster --timeout 120 -- "$gp_perf" -b 1K -e 4M -f 4 -c 1 >"$work/gp.txt" 2>&1 ||
  { cat "$work/gp.txt"; fail "gradpack-perf failed"; }
check_table gradpack-perf "$work/gp.txt"
echo "gradpack-perf:"; grep -v '^#' "$work/gp.txt"

"$vcluster" down >/dev/null
assert_clean
echo "PASS: gradpack all_reduce on 4 vcluster hosts at 1 Gbit/s, 0 wrong elements"
