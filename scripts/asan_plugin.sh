#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The NCCL net plugin's conformance harness under AddressSanitizer: configures a separate build
# with -DGRADPACK_SANITIZE=address, builds only libnccl-net-gradpack.so and the tests, and runs
# the harness (every test in its own process, as ctest runs them), then the CollNet and tuner
# tests. An overrun (e.g. a send larger than the posted receive written past it), a use after
# free at close, cancellation or dlclose, or a leak is reported by ASan and fails the run.
#
#   scripts/asan_plugin.sh [BUILD_DIR]     (default: build-asan next to this checkout's sources)
#
# scripts/test.sh (the README's test command, CI) runs it before ctest; GRADPACK_ASAN=0 skips it there.
# On a quiet 2-core machine it takes about 2.5 min (docs/plugin.md, "Harness").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-asan}
jobs=${GRADPACK_JOBS:-2}
start=$(date +%s)

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DGRADPACK_SANITIZE=address -DGRADPACK_WITH_CUDA=OFF \
  -DGRADPACK_BUILD_BENCH=OFF -DGRADPACK_BUILD_TOOLS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >"$build/asan-configure.log" 2>&1 || { cat "$build/asan-configure.log"; exit 1; }
ninja -C "$build" -j "$jobs" nccl-net-gradpack plugin_net_conformance_tests net_plugin_tests
built=$(date +%s)

tests=$build/tests/net_plugin/plugin_net_conformance_tests
export GRADPACK_PLUGIN=$build/net_plugin/libnccl-net-gradpack.so
# The harness's forked children leave with _exit (no leak check there); the parent checks leaks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
failed=0
for t in $("$tests" --gtest_list_tests | awk '/^[^ ]/ {s = $1} /^  / {print s $1}'); do
  if ! timeout 300 "$tests" --gtest_filter="$t" >"$build/asan-$(echo "$t" | tr '/' '_').log" 2>&1; then
    echo "FAIL (ASan): $t"; grep -E "ERROR: AddressSanitizer|ERROR: LeakSanitizer|FAILED|check failed" \
      "$build/asan-$(echo "$t" | tr '/' '_').log" | head -5
    failed=$((failed + 1))
  else
    echo "ok: $t"
  fi
done
# The CollNet and tuner faces (four node threads in one process: connect, compressed and
# uncompressed streams, teardown and cancellation with calls in flight): their tests in
# net_plugin_tests, which links the plugin's internal library.
collnet=$build/tests/net_plugin/net_plugin_tests
if ! GRADPACK_IFNAME==lo GRADPACK_TRANSPORT=tcp GRADPACK_TIMEOUT_MS=20000 timeout 300 "$collnet" \
    --gtest_filter='CollNet.*:TunerTest.*' >"$build/asan-collnet-tuner.log" 2>&1; then
  echo "FAIL (ASan): net_plugin_tests (CollNet, tuner)"
  grep -E "ERROR: AddressSanitizer|ERROR: LeakSanitizer|FAILED|Failure" "$build/asan-collnet-tuner.log" | head -5
  failed=$((failed + 1))
else
  echo "ok: net_plugin_tests (CollNet, tuner)"
fi
end=$(date +%s)
echo "asan_plugin: build $((built - start)) s, tests $((end - built)) s, $failed failed"
[ "$failed" -eq 0 ]
