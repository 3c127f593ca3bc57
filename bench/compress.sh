#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Compressed vs uncompressed all-reduce with gradpack-perf, back to back on the same setup.
#
#   bench/compress.sh local    [-n N] [options]              N processes on this machine (loopback)
#   bench/compress.sh vcluster [-n N] [--rate RATE] [options]
#                                                    N namespaced hosts (scripts/vcluster.sh), tbf
#   bench/compress.sh ring-error [-z SPEC] [-b SIZE] [--ranks "2 3 4 5 8"]
#                                                    locally: the -c check's maxerr of -a ring vs
#                                                    -a direct per rank count
# local and vcluster run, over the same sizes: -a ring and -a auto uncompressed, then -z q8, -z q4,
# -z topk:0.01+q8 and -z auto (each with the library's algorithm choice), and print per size the
# time of each, the speedup time(ring) / time(codec), auto-compressed vs the uncompressed
# default (time(-z auto) / time(-a auto): at most 1.05 is within 5 %) and the codec auto used.
# Options:
#   -n N            ranks (and hosts for vcluster; default 4)
#   --rate RATE     tbf rate of every host link, both directions (vcluster; default 1gbit;
#                   "none" for unshaped links)
#   -b MIN -e MAX -f F  sizes (default 4K .. 64M x4; ring-error: -b alone, default 1M)
#   --iters N       timed iterations per size (gradpack-perf -n; default 20)
#   -w W, -c C      warmup iterations (default 12: auto confirms a predicted win on a buffer
#                   under 1 MiB by timing its first 10 calls, which are not its steady state),
#                   check (default 1)
#   -z SPEC         ring-error: the codec (default q4)
#   --ranks LIST    ring-error: the rank counts (default "2 3 4 5 8")
#   --out DIR       results: every run's JSON lines and compress.txt (default bench/out/compress)
#   --timeout SEC   limit of each gradpack-perf run (default 1200)
# Environment: BUILD_DIR (default build; configured and built when the binaries are missing),
#   JOBS (build parallelism, default 2).
set -euo pipefail

cd "$(dirname "$0")/.."
name="compress"
# shellcheck source=bench/lib.sh
source bench/lib.sh

[ $# -ge 1 ] || usage
mode=$1
shift
case $mode in
  local | vcluster | ring-error) ;;
  -h | --help) usage 0 ;;
  *) die "unknown mode '$mode' (local, vcluster or ring-error)" ;;
esac

nranks=4 rate="" minb="" maxb="" factor="" iters=20 warmup=12 check=1 timeout_s=1200
spec=q4 ranks_list="2 3 4 5 8"
out=$root/bench/out/compress
while [ $# -gt 0 ]; do
  case $1 in
    -n | --np) nranks=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    -b) minb=${2:?}; shift 2 ;;
    -e) maxb=${2:?}; shift 2 ;;
    -f) factor=${2:?}; shift 2 ;;
    --iters) iters=${2:?}; shift 2 ;;
    -w) warmup=${2:?}; shift 2 ;;
    -c) check=${2:?}; shift 2 ;;
    -z) spec=${2:?}; shift 2 ;;
    --ranks) ranks_list=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
if ! [[ $nranks =~ ^[0-9]+$ ]] || [ "$nranks" -lt 2 ]; then die "-n needs at least 2 ranks"; fi
if [ "$mode" != vcluster ] && [ -n "$rate" ]; then die "--rate needs the vcluster mode"; fi
if [ "$mode" = vcluster ]; then
  : "${rate:=1gbit}"
  if [ "$rate" = none ]; then rate=""; fi
fi
if [ "$mode" = ring-error ]; then : "${minb:=1M}"; fi
: "${minb:=4K}" "${maxb:=64M}" "${factor:=4}"
command -v python3 >/dev/null || die "python3 is missing (it reads gradpack-perf's --json output)"

# --- build -------------------------------------------------------------------------------------
gp_run=$build/tools/gradpack-run
gp_perf=$build/tools/gradpack-perf
if [ ! -x "$gp_run" ] || [ ! -x "$gp_perf" ]; then
  # shellcheck disable=SC2119
  configure_build
  echo "compress: building gradpack-run gradpack-perf"
  cmake --build "$build" --target gradpack-run gradpack-perf -j "$jobs" >/dev/null ||
    die "could not build (cmake --build $build --target gradpack-run gradpack-perf)"
fi

# --- cleanup: everything started is stopped by PID; the vcluster made here is removed -----------
install_cleanup

mkdir -p "$out"

# Runs gradpack-perf on N ranks in the background (so that a trap can stop it by PID), its JSON
# lines to FILE.jsonl and everything else to FILE.err, after printing the exact command. A failed
# run (a gp_* error, or #wrong > 0, which is exit status 1 too) is reported and the rest goes on:
# whatever rows it printed are still used.
#   perf FILE N [--vcluster] -- GRADPACK-PERF-ARGS...
perf() {
  local file=$1 n=$2
  shift 2
  local launcher=("$gp_run" -n "$n" --timeout "$timeout_s")
  if [ "$1" = --vcluster ]; then
    launcher+=(--vcluster)
    shift
  fi
  shift  # --
  local cmd=("${launcher[@]}" -- "$gp_perf" --json "$@")
  echo "compress: \$ ${cmd[*]}"
  "${cmd[@]}" >"$file.jsonl" 2>"$file.err" &
  local pid=$!
  pids+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "compress: warning: exit status $rc: $(grep -v '^gradpack-run: rank .* was killed' \
      "$file.err" | head -3 | tr '\n' ' ')"
  fi
  return 0
}

# --- ring-error: the re-encoding ring's error against direct, per rank count -------------------
if [ "$mode" = ring-error ]; then
  size=$minb
  for n in $ranks_list; do
    for algo in ring direct; do
      perf "$out/ring-error-$algo-$n" "$n" -- -z "$spec" -a "$algo" -c 1 -b "$size" -e "$size" \
        -n 1 -w 0
    done
  done
  python3 - "$out" "$spec" "$size" "$ranks_list" <<'EOF' | tee "$out/ring-error.txt"
import json, os, sys
out, spec, size, ranks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()

def row(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("{"):
                    return json.loads(line)["out_of_place"]
    except OSError:
        pass
    return None

def fmt(x, f):
    return "-" if x is None else f % x

print("# -c 1 check of gradpack-perf -z %s at %s, float sum, locally: maxerr = max |got - exact|"
      " / max |exact| (no error feedback)" % (spec, size))
print("# %5s  %10s %7s  %10s %7s  %11s" % ("ranks", "ring", "#wrong", "direct", "#wrong",
                                          "ring/direct"))
for n in ranks:
    ring = row(os.path.join(out, "ring-error-ring-%s.jsonl" % n))
    direct = row(os.path.join(out, "ring-error-direct-%s.jsonl" % n))
    re = ring and ring.get("maxerr")
    de = direct and direct.get("maxerr")
    ratio = None if re is None or de is None or de == 0 else re / de
    print("  %5s  %10s %7s  %10s %7s  %11s" % (
        n, fmt(re, "%.3e"), fmt(ring and ring.get("wrong"), "%d"), fmt(de, "%.3e"),
        fmt(direct and direct.get("wrong"), "%d"), fmt(ratio, "%.2f")))
EOF
  echo "compress: JSON lines and ring-error.txt in $out"
  exit 0
fi

# --- local / vcluster: the six runs over the same sizes ----------------------------------------
run_args=()
if [ "$mode" = vcluster ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "compress: the vcluster mode needs root (network namespaces)" >&2
    exit 77
  fi
  up_args=("$nranks")
  if [ -n "$rate" ]; then up_args+=(--rate "$rate"); fi
  echo "compress: \$ $vcluster up ${up_args[*]}"
  # A failed `up` removes what it made; a cluster that was already there is not ours to remove.
  "$vcluster" up "${up_args[@]}"
  made_vcluster=1
  run_args=(--vcluster)
fi
sweep=(-b "$minb" -e "$maxb" -f "$factor" -n "$iters" -w "$warmup" -c "$check")
# name: file stem; args: gradpack-perf's flags besides the sweep.
runs=("ring:-a ring" "auto:-a auto" "q8:-z q8" "q4:-z q4" "topk:-z topk:0.01+q8" "zauto:-z auto")
for r in "${runs[@]}"; do
  name=${r%%:*}
  # shellcheck disable=SC2206
  args=(${r#*:})
  perf "$out/$name" "$nranks" "${run_args[@]}" -- "${args[@]}" "${sweep[@]}"
done
if [ "$made_vcluster" = 1 ]; then
  echo "compress: \$ $vcluster down"
  made_vcluster=0
  "$vcluster" down
fi

python3 - "$out" "$mode" "$nranks" "$rate" <<'EOF' | tee "$out/compress.txt"
import json, os, sys
out, mode, n, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
names = ["ring", "auto", "q8", "q4", "topk", "zauto"]
rows = {}  # name -> size -> out_of_place
for name in names:
    rows[name] = {}
    try:
        with open(os.path.join(out, name + ".jsonl")) as f:
            for line in f:
                if line.startswith("{"):
                    j = json.loads(line)
                    rows[name][j["size"]] = j["out_of_place"]
    except OSError:
        pass

def t(name, size):
    m = rows[name].get(size)
    return None if m is None else m["time_us"]

def ratio(a, b):
    return "-" if a is None or b is None or b == 0 else "%.2f" % (a / b)

def us(x):
    return "-" if x is None else ("%.1f" % x if x < 1e5 else "%.0f" % x if x < 1e7 else "%.2g" % x)

def short(spec):
    if not spec:
        return "-"
    parts = [p for p in spec.split(":") if p not in ("block=256", "round=nearest", "seed=0")]
    return ":".join(parts)

print("# all_reduce float sum, %s ranks, %s%s; time per call in us (slowest rank)" %
      (n, mode, ", links " + rate if rate else ""))
print("# x: time(ring) / time(codec), above 1 is faster than the uncompressed ring")
print("# zauto/auto: time(-z auto) / time(-a auto, uncompressed): at most 1.05 is within 5 %;"
      " auto used: the codec -z auto chose")
print("# %10s  %8s %8s %8s %8s %8s %8s  %6s %6s %6s %6s  %10s  %9s" % (
    "size(B)", "ring_us", "auto_us", "q8_us", "q4_us", "topk_us", "zauto_us", "q8x", "q4x",
    "topkx", "zautox", "zauto/auto", "auto used"))
sizes = sorted(set(s for name in names for s in rows[name]))
for s in sizes:
    z = rows["zauto"].get(s) or {}
    print("  %10d  %8s %8s %8s %8s %8s %8s  %6s %6s %6s %6s  %10s  %9s" % (
        s, us(t("ring", s)), us(t("auto", s)), us(t("q8", s)), us(t("q4", s)), us(t("topk", s)),
        us(t("zauto", s)), ratio(t("ring", s), t("q8", s)), ratio(t("ring", s), t("q4", s)),
        ratio(t("ring", s), t("topk", s)), ratio(t("ring", s), t("zauto", s)),
        ratio(t("zauto", s), t("auto", s)), short(z.get("codec_used"))))
# What each codec put on the wire and how far its checked result was from the exact sum.
print("# wire: bytes per rank per call; maxerr of the -c check (- : not checked); alg: the"
      " algorithm of each (q8 q4 topk auto)")
print(("# %10s  %18s  %18s  %18s  %18s" % ("", "q8 wire  maxerr", "q4 wire  maxerr",
                                        "topk wire  maxerr", "auto wire  maxerr")).rstrip())
print("# %10s  %18s  %18s  %18s  %18s  %s" % ("size(B)", "", "", "", "", "alg"))
for s in sizes:
    cells = []
    algs = []
    for name in ["q8", "q4", "topk", "zauto"]:
        m = rows[name].get(s)
        if m is None:
            cells.append("-")
            algs.append("-")
            continue
        algs.append(m.get("algorithm_used") or "-")
        err = m.get("maxerr")
        cells.append("%9.0f  %8s" % (m.get("wire_bytes") or 0,
                                     "-" if err is None else "%.2e" % err))
    print("  %10d  %18s  %18s  %18s  %18s  %s" % (s, *cells, " ".join(algs)))
EOF
echo "compress: JSON lines (one file per run) and compress.txt in $out"
