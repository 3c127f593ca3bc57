#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Compressed all-reduce on 4 vcluster hosts at 1 Gbit/s: gradpack-perf -z with -c (every element
# within the codec's bound) for direct, sparse (top-k) and, with 2 ranks per host, hier; auto;
# and a short Fashion-MNIST run with q8 and error feedback that must learn.
# Arguments: gradpack-run gradpack-perf [gradpack-train-fmnist] (empty when not built).
source "$(dirname "$0")/lib.sh"
gp_run=${1:-} gp_perf=${2:-} gp_train=${3:-}
if [ ! -x "$gp_run" ] || [ ! -x "$gp_perf" ]; then skip "gradpack-run or gradpack-perf is not built"; fi
require_vcluster_env
work=$(mktemp -d)
trap '"$vcluster" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

"$vcluster" up 4 --rate 1gbit >/dev/null

# The -z table: size count type redop time algbw busbw wire #wrong maxerr codec.
check_compressed() {
  local name=$1 file=$2 want_codec=$3 rows
  rows=$(awk '!/^#/ && NF >= 11' "$file" | wc -l)
  [ "$rows" -ge 1 ] || { cat "$file"; fail "$name printed no rows"; }
  awk '!/^#/ && NF >= 11 && $9 != 0 {bad = 1} END {exit bad}' "$file" ||
    { cat "$file"; fail "$name: elements outside the codec's bound"; }
  if [ -n "$want_codec" ]; then
    awk -v c="$want_codec" '!/^#/ && NF >= 11 && index($11, c) != 1 {bad = 1} END {exit bad}' \
      "$file" || { cat "$file"; fail "$name: a row did not run $want_codec"; }
  fi
  grep -q "Out of bounds values : 0 OK" "$file" || { cat "$file"; fail "$name: no OK footer"; }
  echo "$name:"; grep -v '^#' "$file"
}

run_perf() {
  local name=$1 n=$2; shift 2
  "$gp_run" -n "$n" --vcluster --timeout 180 -- "$gp_perf" -c 1 "$@" >"$work/$name.txt" 2>&1 ||
    { cat "$work/$name.txt"; fail "$name failed"; }
}

run_perf q8-direct 4 -b 4K -e 4M -f 16 -z q8
check_compressed q8-direct "$work/q8-direct.txt" q8
run_perf topk-sparse 4 -b 64K -e 4M -f 8 -z topk:0.01+q8
check_compressed topk-sparse "$work/topk-sparse.txt" topk
run_perf q4-hier 8 -b 64K -e 4M -f 8 -z q4 -a hier
check_compressed q4-hier "$work/q4-hier.txt" q4
run_perf auto 4 -b 4K -e 4M -f 16 -z auto
check_compressed auto "$work/auto.txt" ""

if [ -x "$gp_train" ] && [ -r /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  "$gp_run" -n 4 --vcluster --timeout 300 -- "$gp_train" --train-limit 4000 --epochs 2 \
    --codec q8 --error-feedback on >"$work/train.txt" 2>&1 ||
    { cat "$work/train.txt"; fail "gradpack-train-fmnist failed"; }
  tail -1 "$work/train.txt" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
assert r["ranks"] == 4 and r["test_accuracy"] > 0.6 and r["weights_identical"], r
print("train q8 on 4 vcluster hosts: accuracy %.4f, wire %d bytes" % (r["test_accuracy"], r["wire_bytes"]))
' || { cat "$work/train.txt"; fail "training on the vcluster did not learn"; }
else
  echo "gradpack-train-fmnist or its dataset is absent: the training part is skipped"
fi

"$vcluster" down >/dev/null
assert_clean
echo "PASS: compressed all-reduce (direct, sparse, hier, auto) on 4 vcluster hosts at 1 Gbit/s"
