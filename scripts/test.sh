#!/usr/bin/env bash
# Builds gradpack and runs its whole test suite: the NCCL plugin's conformance harness under
# AddressSanitizer (its own build in $BUILD_DIR/asan; GRADPACK_ASAN=0 skips it), then ctest,
# whose summary is printed last.
#   BUILD_DIR (default build), GRADPACK_CMAKE_ARGS (extra configure flags), CTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRADPACK_WERROR=ON ${GRADPACK_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
asan=0
if [ "${GRADPACK_ASAN:-1}" != 0 ]; then
  GRADPACK_JOBS=$(nproc) bash scripts/asan_plugin.sh "$build/asan" || asan=$?
fi
cd "$build"
# shellcheck disable=SC2086
ctest --output-on-failure -j "$(nproc)" --timeout 900 ${CTEST_ARGS:-}
if [ "$asan" -ne 0 ]; then
  echo "test.sh: the plugin harness failed under AddressSanitizer (see above)" >&2
  exit "$asan"
fi
