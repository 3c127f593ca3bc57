#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gradpack vs Gloo vs MPI all-reduce, back to back on the same setup, side by side per size.
#
#   bench/compare.sh local    [-n N] [options]     N processes on this machine (loopback)
#   bench/compare.sh vcluster [-n N] --rate RATE [options]
#                                                  N namespaced hosts (scripts/vcluster.sh), tbf
#   bench/compare.sh iperf3   [--rate RATE] [options]
#                                                  2 hosts: iperf3's TCP throughput vs the three;
#                   iperf3 (one TCP stream each way at once, 5 s) gives the per-direction rate
#                   with both directions busy; gradpack-perf -C sendrecv on the same 2 ranks
#                   (one per host; each sends SIZE to the other and receives SIZE from it, so
#                   both directions are busy too) gives busbw = algbw = SIZE / time, its
#                   per-direction rate. Printed: sendrecv busbw / iperf3 per-direction rate
#                   (the mean of the two directions). The all-reduce columns gp/iperf3 ... use
#                   the same per-direction rate (2 ranks: all-reduce busbw is also per-direction)
# Options:
#   -n N            ranks (and hosts for vcluster; default 4)
#   --rate RATE     tbf rate of every host link, both directions (e.g. 1gbit); vcluster and iperf3
#   --racks R, --uplink RATE, --placement rack|interleaved
#                   vcluster: the hosts in R racks behind uplinks shaped to RATE
#                   (scripts/vcluster.sh up N --racks R ...; docs/benchmarks.md, "Racks")
#   -b MIN -e MAX -f F  sizes, passed to every benchmark (default 8 .. 128M x2 locally,
#                   1M .. 256M x2 on the vcluster, 64M in iperf3 mode)
#   --iters N       timed iterations per size (nccl-tests' -n; default 20)
#   -w W, -c C      warmup iterations (default 1), check (default 1)
#   --mpi-algo A    Open MPI tuned all-reduce algorithm (0 default decision, 4 ring, 6 rabenseifner)
#   --out DIR       results: the three tables, compare.txt, compare.png (default bench/out)
#   --timeout SEC   limit of each benchmark run (default 1200)
# Environment: BUILD_DIR (default build; configured and built when the binaries are missing),
#   JOBS (build parallelism, default 2), MPI_EXTRA_ARGS (more mpirun arguments).
set -euo pipefail

cd "$(dirname "$0")/.."
name="compare"
# shellcheck source=bench/lib.sh
source bench/lib.sh

[ $# -ge 1 ] || usage
mode=$1
shift
case $mode in
  local | vcluster | iperf3) ;;
  -h | --help) usage 0 ;;
  *) die "unknown mode '$mode' (local, vcluster or iperf3)" ;;
esac

racks=()  # --racks, --uplink, --placement as vcluster.sh takes them
nranks=4 rate="" minb="" maxb="" factor="" iters=20 warmup=1 check=1 mpi_algo="" timeout_s=1200
out=$root/bench/out
# The first -n is the rank count (as gradpack-run -n); --iters sets the iterations.
while [ $# -gt 0 ]; do
  case $1 in
    -n | --np) nranks=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --racks | --uplink | --placement) racks+=("$1" "${2:?}"); shift 2 ;;
    -b) minb=${2:?}; shift 2 ;;
    -e) maxb=${2:?}; shift 2 ;;
    -f) factor=${2:?}; shift 2 ;;
    --iters) iters=${2:?}; shift 2 ;;
    -w) warmup=${2:?}; shift 2 ;;
    -c) check=${2:?}; shift 2 ;;
    --mpi-algo) mpi_algo=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
if ! [[ $nranks =~ ^[0-9]+$ ]] || [ "$nranks" -lt 2 ]; then die "-n needs at least 2 ranks"; fi
if [ "$mode" = iperf3 ]; then nranks=2; fi
if [ "$mode" = local ] && [ -n "$rate" ]; then die "--rate needs the vcluster or iperf3 mode"; fi
if [ "$mode" != vcluster ] && [ ${#racks[@]} -gt 0 ]; then die "--racks needs the vcluster mode"; fi
case $mode in
  local) : "${minb:=8}" "${maxb:=128M}" "${factor:=2}" ;;
  vcluster) : "${minb:=1M}" "${maxb:=256M}" "${factor:=2}" ;;
  iperf3) : "${minb:=64M}" "${maxb:=64M}" "${factor:=2}" ;;
esac
perf_args=(-b "$minb" -e "$maxb" -f "$factor" -n "$iters" -w "$warmup" -c "$check")

# --- build -------------------------------------------------------------------------------------
gp_run=$build/tools/gradpack-run
gp_perf=$build/tools/gradpack-perf
gloo_perf=$build/bench/peers/gloo_perf
mpi_perf=$build/bench/peers/mpi_perf
if [ ! -x "$gp_run" ] || [ ! -x "$gp_perf" ] || [ ! -x "$gloo_perf" ] || [ ! -x "$mpi_perf" ]; then
  configure_build -DGRADPACK_BUILD_BENCH=ON
  for target in gradpack-run gradpack-perf gloo_perf mpi_perf; do
    echo "compare: building $target"
    cmake --build "$build" --target "$target" -j "$jobs" >/dev/null 2>&1 ||
      echo "compare: warning: could not build $target (cmake --build $build --target $target; the peers need -DGRADPACK_BUILD_BENCH=ON)"
  done
fi
[ -x "$gp_run" ] || die "$gp_run is missing"
have_gp=1 have_gloo=1 have_mpi=1
[ -x "$gp_perf" ] || { have_gp=0; echo "compare: warning: no gradpack-perf, its column is empty"; }
[ -x "$gloo_perf" ] || { have_gloo=0; echo "compare: warning: no gloo_perf (Gloo not found)"; }
if [ ! -x "$mpi_perf" ] || ! command -v mpirun >/dev/null; then
  have_mpi=0
  echo "compare: warning: no mpi_perf or mpirun (MPI not found)"
fi

# --- cleanup: everything started is stopped by PID; the vcluster made here is removed -----------
work=$(mktemp -d "${TMPDIR:-/tmp}/gradpack-compare.XXXXXX")
scratch+=("$work")
install_cleanup

# Runs a command in the background (so a trap can stop it by PID) and waits for it.
run_bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  return "$rc"
}

if [ "$mode" != local ]; then
  [ "$(id -u)" -eq 0 ] || { echo "compare: the $mode mode needs root (network namespaces)" >&2; exit 77; }
  up_args=("$nranks")
  if [ -n "$rate" ]; then up_args+=(--rate "$rate"); fi
  up_args+=("${racks[@]}")
  "$vcluster" up "${up_args[@]}"
  made_vcluster=1
fi
link_gbs=""
if [ -n "$rate" ]; then
  link_gbs=$(awk '{printf "%.6f", $2 / 8e9}' /run/gradpack-vcluster/rate)
fi

if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpi_args=(-np "$nranks" --mca mpi_yield_when_idle 1)
if [ "$mode" = local ]; then
  # Loopback TCP, like gradpack and Gloo here: the same transport on all three sides.
  # shellcheck disable=SC2054  # "self,tcp" is one value of --mca btl
  mpi_args+=(--oversubscribe --mca btl self,tcp --mca pml ob1)
else
  hosts=$(awk '{print $2}' /run/gradpack-vcluster/hosts | paste -sd,)
  # mpirun stays in the root namespace and reaches each host over the bridge; the agent starts
  # one orted per namespace, so ranks are on different "nodes" and talk TCP over the veths.
  mpi_args+=(--host "$hosts" --mca plm_rsh_agent "$vcluster agent" --mca plm_rsh_no_tree_spawn 1
    --mca oob_tcp_if_include 10.249.0.0/24 --mca btl "tcp,self"
    --mca btl_tcp_if_include 10.249.0.0/24 --mca pml ob1)
fi
if [ -n "$mpi_algo" ]; then
  mpi_args+=(--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm "$mpi_algo")
fi
# shellcheck disable=SC2206
mpi_args+=(${MPI_EXTRA_ARGS:-})
run_args=(-n "$nranks" --timeout "$timeout_s")
if [ "$mode" != local ]; then run_args+=(--vcluster); fi

mkdir -p "$out"
: >"$out/gradpack.txt"
: >"$out/gloo.txt"
: >"$out/mpi.txt"

# --- iperf3: the TCP ceiling between two hosts, vs gradpack's sendrecv -------------------------
# Both sides measure one TCP stream per direction with both directions busy at once: two iperf3
# client/server pairs started together (host 0 -> host 1 and host 1 -> host 0, each its own
# single-threaded iperf3 process, as iperf3 3.12's --bidir would put both streams in one thread),
# and gradpack-perf -C sendrecv on 2 ranks (rank 0 on host 0, rank 1 on host 1; each sends to the
# other and receives from it at once), whose busbw (= algbw = bytes each rank sent / time) is the
# per-direction rate. iperf_gbs is the mean of iperf3's two directions (received bytes).
iperf_gbs=""
if [ "$mode" = iperf3 ]; then
  command -v iperf3 >/dev/null || die "iperf3 is missing: apt-get install iperf3"
  addr0=$(awk 'NR == 1 {print $2}' /run/gradpack-vcluster/hosts)
  addr1=$(awk 'NR == 2 {print $2}' /run/gradpack-vcluster/hosts)
  "$vcluster" exec 1 iperf3 -s -1 -B "$addr1" -p 5201 >"$work/iperf3-server1.log" 2>&1 &
  server1=$!
  "$vcluster" exec 0 iperf3 -s -1 -B "$addr0" -p 5202 >"$work/iperf3-server0.log" 2>&1 &
  server0=$!
  pids+=("$server1" "$server0")
  for _ in $(seq 50); do
    "$vcluster" exec 1 ss -ltn 2>/dev/null | grep -q ":5201 " &&
      "$vcluster" exec 0 ss -ltn 2>/dev/null | grep -q ":5202 " && break
    sleep 0.1
  done
  echo "compare: iperf3 -t 5, host 0 -> host 1 and host 1 -> host 0 at once"
  "$vcluster" exec 0 iperf3 -c "$addr1" -p 5201 -t 5 -J >"$out/iperf3.json" &
  client0=$!
  "$vcluster" exec 1 iperf3 -c "$addr0" -p 5202 -t 5 -J >"$out/iperf3-reverse.json" &
  client1=$!
  pids+=("$client0" "$client1")
  wait "$client0" || die "iperf3 host 0 -> host 1 failed"
  wait "$client1" || die "iperf3 host 1 -> host 0 failed"
  wait "$server1" "$server0" 2>/dev/null || true
  # "fwd rev mean" in GB/s: host 0 -> host 1, host 1 -> host 0, their mean.
  iperf_rates=$(python3 -c 'import json,sys
f=json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 8e9
r=json.load(open(sys.argv[2]))["end"]["sum_received"]["bits_per_second"] / 8e9
print("%.6f %.6f %.6f" % (f, r, (f + r) / 2))' "$out/iperf3.json" "$out/iperf3-reverse.json") ||
    die "could not read the rates from $out/iperf3.json and $out/iperf3-reverse.json"
  read -r iperf_fwd iperf_rev iperf_gbs <<<"$iperf_rates"
  echo "compare: iperf3: $iperf_fwd GB/s host 0 -> 1, $iperf_rev GB/s host 1 -> 0 (mean $iperf_gbs)"

  sendrecv_ratio=""
  if [ "$have_gp" = 1 ]; then
    echo "compare: gradpack-perf -C sendrecv ${perf_args[*]} (2 ranks, one per host)"
    if run_bg "$out/gradpack-sendrecv.txt" "$gp_run" "${run_args[@]}" -- "$gp_perf" -C sendrecv \
      -d float "${perf_args[@]}"; then
      # The largest size's out-of-place time (us) -> busbw from the time (the table rounds it).
      sendrecv_gbs=$(awk '!/^#/ && NF >= 13 && $1 ~ /^[0-9]+$/ && $6 + 0 > 0 {
        s = $1; t = $6 } END { if (s != "") printf "%.6f", s / (t * 1e3) }' \
        "$out/gradpack-sendrecv.txt")
      sendrecv_size=$(awk '!/^#/ && NF >= 13 && $1 ~ /^[0-9]+$/ { s = $1 } END { print s }' \
        "$out/gradpack-sendrecv.txt")
      if [ -n "$sendrecv_gbs" ]; then
        sendrecv_ratio=$(awk -v a="$sendrecv_gbs" -v b="$iperf_gbs" \
          'BEGIN { if (b + 0 > 0) printf "%.2f", a / b }')
      fi
    else
      echo "compare: warning: gradpack-perf -C sendrecv failed (see $out/gradpack-sendrecv.txt)"
    fi
  fi
fi

# --- the three benchmarks, back to back ----------------------------------------------------------
if [ "$have_gp" = 1 ]; then
  echo "compare: gradpack-perf ${perf_args[*]} ($nranks ranks, $mode)"
  run_bg "$out/gradpack.txt" "$gp_run" "${run_args[@]}" -- "$gp_perf" -C all_reduce \
    "${perf_args[@]}" || echo "compare: warning: gradpack-perf failed (see $out/gradpack.txt)"
fi
if [ "$have_gloo" = 1 ]; then
  echo "compare: gloo_perf ${perf_args[*]}"
  mkdir -p "$work/gloo-store"
  run_bg "$out/gloo.txt" "$gp_run" "${run_args[@]}" -- "$gloo_perf" --store "$work/gloo-store" \
    -T "$timeout_s" "${perf_args[@]}" || echo "compare: warning: gloo_perf failed (see $out/gloo.txt)"
fi
if [ "$have_mpi" = 1 ]; then
  echo "compare: mpirun ${mpi_args[*]} mpi_perf ${perf_args[*]}"
  run_bg "$out/mpi.txt" timeout "$timeout_s" mpirun "${mpi_args[@]}" "$mpi_perf" "${perf_args[@]}" ||
    echo "compare: warning: mpi_perf failed (see $out/mpi.txt)"
fi

# --- side by side --------------------------------------------------------------------------------
# Each table row: size count type redop root time algbw busbw #wrong (out-of-place) ...; the
# out-of-place times are compared.
extract() { awk '!/^#/ && NF >= 13 && $1 ~ /^[0-9]+$/ {print $1, $6}' "$1"; }
extract "$out/gradpack.txt" >"$work/gp"
extract "$out/gloo.txt" >"$work/gloo"
extract "$out/mpi.txt" >"$work/mpi"
ref_gbs=${iperf_gbs:-$link_gbs}
ref_name="link"
if [ -n "$iperf_gbs" ]; then ref_name=iperf3; fi

awk -v ref="$ref_gbs" -v refname="$ref_name" -v mode="$mode" -v n="$nranks" -v rate="$rate" '
  # busbw from the time (the tables round it to 0.01 GB/s): size / time * 2(n-1)/n, GB/s.
  function bw(s, t) { return (t == "" || t + 0 == 0) ? "" : s / (t * 1e3) * 2 * (n - 1) / n }
  function val(x, f) { return x == "" ? "-" : sprintf(f, x) }
  function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
  FILENAME == ARGV[1] { gp[$1] = $2; sizes[$1] = 1; next }
  FILENAME == ARGV[2] { gl[$1] = $2; sizes[$1] = 1; next }
  FILENAME == ARGV[3] { mp[$1] = $2; sizes[$1] = 1; next }
  END {
    printf "# all_reduce float sum, %d ranks, %s%s: busbw in GB/s (1e9), time in us\n", n, mode,
      rate == "" ? "" : ", links " rate
    printf "# %10s  %9s %9s %9s  %8s %8s  %10s %10s %10s  %8s", "size(B)", "gradpack",
      "gloo", "mpi", "gp/gloo", "gp/mpi", "gp_us", "gloo_us", "mpi_us", "lat/mpi"
    if (ref != "") printf "  %9s %9s %9s", "gp/" refname, "gloo/" refname, "mpi/" refname
    printf "\n"
    count = 0
    for (s in sizes) list[++count] = s + 0
    # Sort sizes numerically (insertion sort; a sweep has few rows).
    for (i = 2; i <= count; i++) {
      v = list[i]
      for (j = i - 1; j >= 1 && list[j] > v; j--) list[j + 1] = list[j]
      list[j + 1] = v
    }
    for (i = 1; i <= count; i++) {
      s = list[i]
      b1 = bw(s, gp[s]); b2 = bw(s, gl[s]); b3 = bw(s, mp[s])
      # lat/mpi: gradpack time / MPI time (below 1: gradpack is faster).
      printf "  %10d  %9s %9s %9s  %8s %8s  %10s %10s %10s  %8s", s, val(b1, "%.4f"),
        val(b2, "%.4f"), val(b3, "%.4f"), ratio(b1, b2), ratio(b1, b3), val(gp[s], "%.1f"),
        val(gl[s], "%.1f"), val(mp[s], "%.1f"), ratio(gp[s], mp[s])
      if (ref != "") printf "  %9s %9s %9s", ratio(b1, ref), ratio(b2, ref), ratio(b3, ref)
      printf "\n"
    }
  }' "$work/gp" "$work/gloo" "$work/mpi" | tee "$out/compare.txt"
if [ -n "$iperf_gbs" ]; then
  {
    echo "# iperf3 (one TCP stream each way at once, 5 s), per direction: $iperf_fwd GB/s host 0 -> 1," \
      "$iperf_rev GB/s host 1 -> 0, mean $iperf_gbs GB/s"
    if [ -n "$sendrecv_ratio" ]; then
      echo "# gradpack sendrecv (2 ranks, both directions, $sendrecv_size B, float): busbw" \
        "$sendrecv_gbs GB/s per direction; sendrecv/iperf3 = $sendrecv_ratio"
    fi
  } | tee -a "$out/compare.txt"
fi

# --- plot ----------------------------------------------------------------------------------------
if command -v gnuplot >/dev/null && [ "$(grep -vc '^#' "$out/compare.txt")" -gt 1 ]; then
  {
    echo "set terminal png size 900,600"
    echo "set output '$out/compare.png'"
    echo "set title 'all\\_reduce busbw, $nranks ranks, $mode${rate:+, links $rate}'"
    echo "set logscale x 2"
    # Tics at the measured sizes, labelled in binary units as the benchmarks' -b/-e take them.
    awk '!/^#/ {s = $1; u = ""; if (s >= 1073741824 && s % 1073741824 == 0) { s /= 1073741824; u = "G" }
      else if (s >= 1048576 && s % 1048576 == 0) { s /= 1048576; u = "M" }
      else if (s >= 1024 && s % 1024 == 0) { s /= 1024; u = "K" }
      t = t (t == "" ? "" : ", ") "\"" s u "\" " $1 }
      END { if (t != "") print "set xtics (" t ")" }' "$out/compare.txt"
    echo "set xlabel 'size'"
    echo "set ylabel 'busbw (GB/s)'"
    echo "set key outside right top"
    echo "set grid"
    echo "set datafile missing '-'"
    plot="plot '$out/compare.txt' using 1:2 with linespoints title 'gradpack'"
    plot+=", '' using 1:3 with linespoints title 'gloo', '' using 1:4 with linespoints title 'mpi'"
    if [ -n "$ref_gbs" ]; then plot+=", $ref_gbs with lines dashtype 2 title '$ref_name'"; fi
    echo "$plot"
  } >"$work/plot.gp"
  if gnuplot "$work/plot.gp" 2>"$work/gnuplot.log"; then
    echo "compare: plot in $out/compare.png"
  else
    echo "compare: warning: gnuplot failed: $(head -3 "$work/gnuplot.log")"
  fi
fi
echo "compare: tables in $out (gradpack.txt gloo.txt mpi.txt compare.txt)"
