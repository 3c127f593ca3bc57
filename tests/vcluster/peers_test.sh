#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The baselines of bench/compare.sh on 4 hosts at 1 Gbit/s, launched as compare.sh launches them:
# gloo_perf through gradpack-run --vcluster, mpi_perf through mpirun with the vcluster agent.
# Every row checked, no wrong element. Arguments: gradpack-run gloo_perf mpi_perf (empty when not
# built).
source "$(dirname "$0")/lib.sh"
gp_run=${1:-} gloo_perf=${2:-} mpi_perf=${3:-}
if [ ! -x "$gloo_perf" ] && [ ! -x "$mpi_perf" ]; then skip "neither gloo_perf nor mpi_perf is built"; fi
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

if [ -x "$gloo_perf" ] && [ ! -x "$gp_run" ]; then echo "note: no gradpack-run, gloo_perf not run"; fi
if [ -x "$gloo_perf" ] && [ -x "$gp_run" ]; then
  mkdir "$work/store"
  "$gp_run" -n 4 --vcluster --timeout 120 -- "$gloo_perf" --store "$work/store" -b 1K -e 4M -f 4 \
    -n 5 >"$work/gloo.txt" 2>&1 || { cat "$work/gloo.txt"; fail "gloo_perf failed"; }
  check_table gloo_perf "$work/gloo.txt"
fi
if [ -x "$mpi_perf" ] && command -v mpirun >/dev/null; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun -np 4 \
    --host 10.249.0.1,10.249.0.2,10.249.0.3,10.249.0.4 --mca plm_rsh_agent "$vcluster agent" \
    --mca plm_rsh_no_tree_spawn 1 --mca oob_tcp_if_include 10.249.0.0/24 --mca btl "tcp,self" \
    --mca btl_tcp_if_include 10.249.0.0/24 --mca pml ob1 --mca mpi_yield_when_idle 1 \
    "$mpi_perf" -b 1K -e 4M -f 4 -n 5 >"$work/mpi.txt" 2>&1 ||
    { cat "$work/mpi.txt"; fail "mpi_perf failed"; }
  check_table mpi_perf "$work/mpi.txt"
fi
"$vcluster" down >/dev/null
assert_clean
echo "PASS: gloo_perf and mpi_perf all_reduce on 4 vcluster hosts, 0 wrong elements"
