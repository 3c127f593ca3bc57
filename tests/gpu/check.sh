#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The GPU acceptance run (ARCHITECTURE.md, "GPU paths"), for any machine with one NVIDIA GPU, the
# CUDA toolkit, CMake and GoogleTest. In under 8 minutes it:
#   1. lists the GPU (nvidia-smi -L) and checks, before building anything, that two processes may
#      share it (compute mode not exclusive-process) and that CMake and GoogleTest are installed;
#   2. builds gradpack with CUDA: only the CUDA tests, the GPU codec benchmark and the codec tests;
#   3. runs the CUDA tests (ctest -L cuda: the GPU codecs bit-exact against the CPU reference),
#      which must not skip here: GRADPACK_TEST_REQUIRE_CUDA=1 turns "no device" into a failure;
#   4. runs the CPU codec unit tests (tests/compression/compression_tests);
#   5. runs codec_cuda_bench (bench/codec_cuda_bench.cc) and prints its figures (GB/s and the
#      ratio to a device-to-device copy);
#   6. NCCL plugin check (tests/gpu/nccl_allreduce_check.cc): two processes on this one GPU, each
#      with its own NCCL_HOSTID so NCCL connects them through the network, NCCL_NET=gradpack and
#      NCCL_NET_PLUGIN=libnccl-net-gradpack.so, NCCL_PROTO=^LL128, bootstrap on loopback;
#      all-reduces fp32 of 1 MiB to 64 MiB and checks every size, printing algbw: first through
#      the plugin alone (results exact), then with LD_PRELOAD=libgradpack-nccl.so and
#      GRADPACK_COMPRESS=q8 (within q8's bound, and the interposer's log line must appear), then,
#      still through the interposer, the cases its CPU fake proves in CI
#      (tests/net_plugin/interposer/fake): bf16 average in place with an odd count, a call inside
#      the caller's group, a call captured into a CUDA graph, each with a cross-rank hash of the
#      result bits.
# Any failure stops the run with a non-zero status. Without a GPU it stops at once with exit 77
# (GPU_CHECK_BUILD_ONLY=1: configures and builds, then stops before the first step needing one)
# and says why.
#
# Environment: BUILD_DIR (default build-gpu), GRADPACK_CUDA_ARCHITECTURES (default 90: H100/H200),
# GRADPACK_CMAKE_ARGS (extra configure flags), CTEST_JOBS (default 4), NCCL_CHECK_MAX_MIB (default
# 16: the sweep's largest size; 64 for the full table), NCCL_CHECK_TIMEOUT (seconds per NCCL run,
# default 150).
set -euo pipefail
cd "$(dirname "$0")/../.."

start=$SECONDS
build=${BUILD_DIR:-build-gpu}
archs=${GRADPACK_CUDA_ARCHITECTURES:-90}
jobs=$(nproc)
section() { printf '\n==== %s  [%ds]\n' "$1" $((SECONDS - start)); }

section "GPU"
build_only=${GPU_CHECK_BUILD_ONLY:-0}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  if [[ "$build_only" != 1 ]]; then
    echo "SKIP: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU); this check needs one"
    echo "(GPU_CHECK_BUILD_ONLY=1 runs it up to the first step that needs a GPU)"
    exit 77
  fi
  echo "no GPU: GPU_CHECK_BUILD_ONLY=1, configuring and building only"
else
  nvidia-smi -L
fi
# The NCCL check runs two processes on this one GPU: an exclusive compute mode would refuse the
# second one long after the build.
mode=$(nvidia-smi --query-gpu=compute_mode 2>/dev/null --format=csv,noheader 2>/dev/null | head -n 1 || true)
echo "compute mode: ${mode:-unknown}"
if [[ "$mode" == *Exclusive_Process* || "$mode" == *Prohibited* ]]; then
  echo "FAIL: the GPU's compute mode is $mode: the NCCL check needs two processes on it" \
    "(nvidia-smi -c DEFAULT, as root)"
  exit 1
fi
if ! command -v cmake >/dev/null 2>&1; then
  echo "FAIL: cmake is not installed (apt-get install cmake, or scripts/setup.sh)"
  exit 1
fi
gtest_found=""
for f in /usr/include/gtest/gtest.h /usr/local/include/gtest/gtest.h /usr/src/googletest; do
  if [[ -e "$f" ]]; then gtest_found=$f; fi
done
if [[ -z "$gtest_found" ]]; then
  echo "FAIL: GoogleTest is not installed (apt-get install libgtest-dev, or scripts/setup.sh)"
  exit 1
fi
echo "cmake $(cmake --version | head -n 1 | awk '{print $3}'), GoogleTest at $gtest_found"

section "configure ($build, CUDA architectures $archs)"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
# shellcheck disable=SC2086
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DGRADPACK_WITH_CUDA=ON -DGRADPACK_CUDA_ARCHITECTURES="$archs" \
  -DGRADPACK_BUILD_TESTS=ON ${GRADPACK_CMAKE_ARGS:-}

section "build"
cmake --build "$build" -j "$jobs" --target codec_cuda_test codec_cuda_bench compression_tests
# The NCCL check's pieces (and the executor kernels' CUDA test) exist when the toolkit has NCCL.
nccl_targets=(nccl-net-gradpack gradpack-nccl nccl_allreduce_check accum_kernels_test)
nccl_missing=""
target_list=$(cmake --build "$build" --target help 2>/dev/null || true)
for t in "${nccl_targets[@]}"; do
  if ! grep -Eq "(^|[[:space:]])$t(:|[[:space:]]|$)" <<<"$target_list"; then nccl_missing+=" $t"; fi
done
if [[ -z "$nccl_missing" ]]; then
  cmake --build "$build" -j "$jobs" --target "${nccl_targets[@]}"
fi

if [[ "$build_only" == 1 ]]; then
  if [[ -n "$nccl_missing" ]]; then echo "FAIL: NCCL check targets not built:$nccl_missing"; exit 1; fi
  section "build only: stopping before the first step that needs a GPU"
  echo "GPU check built in $((SECONDS - start))s"
  exit 0
fi

section "CUDA tests (ctest -L cuda)"
(cd "$build" && GRADPACK_TEST_REQUIRE_CUDA=1 ctest -L cuda --output-on-failure --no-tests=error \
  -j "${CTEST_JOBS:-4}" --timeout 300)

section "CPU codec unit tests"
"$build/tests/compression/compression_tests" --gtest_brief=1

section "GPU codec benchmark"
"$build/bench/codec_cuda_bench"

section "NCCL plugin check"
if [[ -n "$nccl_missing" ]]; then
  echo "FAIL: NCCL check not built (missing targets:$nccl_missing): does the CUDA toolkit have" \
    "nccl.h and libnccl? (the configure output names what was not found)"
  exit 1
fi
plugin=$(find "$build" -name 'libnccl-net-gradpack.so' -print -quit)
interposer=$(find "$build" -name 'libgradpack-nccl.so' -print -quit)
program=$(find "$build" -name nccl_allreduce_check -type f -perm -u+x -print -quit)
plugin=$(realpath "$plugin")
interposer=$(realpath "$interposer")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
max_mib=${NCCL_CHECK_MAX_MIB:-16}

# run_pair LABEL EXPECT [VAR=VALUE...]: both ranks with the common NCCL environment plus the
# given variables; rank 0 prints the table, both logs are shown on failure.
run_pair() {
  local label=$1 expect=$2
  shift 2
  local id="$work/$label.id" pids=() r status=0
  rm -f "$id"
  for r in 0 1; do
    timeout "${NCCL_CHECK_TIMEOUT:-150}" env NCCL_HOSTID="gradpack-check-$r" NCCL_NET=gradpack \
      NCCL_NET_PLUGIN="$plugin" NCCL_PROTO='^LL128' NCCL_SOCKET_IFNAME=lo GRADPACK_IFNAME=lo \
      NCCL_DEBUG=WARN "$@" "$program" --rank "$r" --nranks 2 --id-file "$id" \
      --expect "$expect" --max-mib "$max_mib" >"$work/$label.$r.out" 2>"$work/$label.$r.err" &
    pids+=($!)
  done
  for r in 0 1; do
    if ! wait "${pids[$r]}"; then status=1; fi
  done
  cat "$work/$label.0.out"
  if ((status != 0)); then
    for r in 0 1; do
      echo "---- rank $r stderr (last 40 lines)"
      tail -n 40 "$work/$label.$r.err"
    done
    echo "FAIL: NCCL all-reduce check \"$label\""
    exit 1
  fi
}

echo "-- through the plugin alone (NCCL_NET=gradpack), results exact"
run_pair plugin exact
echo "-- with the interposer (LD_PRELOAD=libgradpack-nccl.so, GRADPACK_COMPRESS=q8)"
run_pair interposer q8 LD_PRELOAD="$interposer" GRADPACK_COMPRESS=q8 GRADPACK_LOG=info \
  GRADPACK_LOG_SUBSYS=plugin
if ! grep -q "ncclAllReduce interposer: compressing" "$work/interposer.0.err"; then
  echo "FAIL: the interposer did not announce itself (GRADPACK_LOG=info); rank 0 stderr:"
  tail -n 40 "$work/interposer.0.err"
  exit 1
fi

elapsed=$((SECONDS - start))
section "done"
if ((elapsed > 480)); then
  echo "WARNING: the GPU check took ${elapsed}s, over its 8-minute budget"
else
  echo "GPU check passed in ${elapsed}s"
fi
