#!/usr/bin/env bash
# Builds gradpack and runs its whole test suite (ctest), printing ctest's summary.
#   BUILD_DIR (default build), GRADPACK_CMAKE_ARGS (extra configure flags), CTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRADPACK_WERROR=ON ${GRADPACK_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
cd "$build"
# shellcheck disable=SC2086
ctest --output-on-failure -j "$(nproc)" --timeout 900 ${CTEST_ARGS:-}
