#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds gradpack and runs its whole test suite: clang-tidy over the sources
# (scripts/clang_tidy.sh; GRADPACK_TIDY=0 skips it), the NCCL plugin's conformance harness under
# AddressSanitizer (its own build in $BUILD_DIR/asan; GRADPACK_ASAN=0 skips it), then ctest, whose
# summary is printed last. A failure of the first two is reported again after ctest's summary.
#   BUILD_DIR (default build), GRADPACK_CMAKE_ARGS (extra configure flags), CTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRADPACK_WERROR=ON ${GRADPACK_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
tidy=0
if [ "${GRADPACK_TIDY:-1}" != 0 ]; then
  bash scripts/clang_tidy.sh "$build" || tidy=$?
fi
asan=0
if [ "${GRADPACK_ASAN:-1}" != 0 ]; then
  GRADPACK_JOBS=$(nproc) bash scripts/asan_plugin.sh "$build/asan" || asan=$?
fi
cd "$build"
# shellcheck disable=SC2086
ctest --output-on-failure -j "$(nproc)" --timeout 900 ${CTEST_ARGS:-}
if [ "$tidy" -ne 0 ]; then
  echo "test.sh: clang-tidy has findings (see above; scripts/clang_tidy.sh $build)" >&2
fi
if [ "$asan" -ne 0 ]; then
  echo "test.sh: the plugin harness failed under AddressSanitizer (see above)" >&2
fi
if [ "$tidy" -ne 0 ] || [ "$asan" -ne 0 ]; then exit 1; fi
