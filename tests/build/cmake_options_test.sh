#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# GRADPACK_WITH_<X>: ON for a missing dependency fails with a fix-it message; a bad value is
# refused; AUTO turns a missing one off with a message.
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(-S "$src" -G Ninja -DGRADPACK_WITH_CUDA=OFF -DGRADPACK_BUILD_TESTS=OFF
        -DGRADPACK_BUILD_BENCH=OFF -DGRADPACK_BUILD_TOOLS=OFF)

if [ -e /usr/include/hwloc.h ]; then
  echo "SKIP: hwloc is installed, so GRADPACK_WITH_HWLOC=ON cannot fail here"; exit 77
fi
if cmake "${common[@]}" -B "$tmp/on" -DGRADPACK_WITH_HWLOC=ON >"$tmp/on.log" 2>&1; then
  echo "FAIL: GRADPACK_WITH_HWLOC=ON configured without hwloc"; exit 1
fi
grep -q "apt-get install libhwloc-dev" "$tmp/on.log" || { cat "$tmp/on.log"; echo "FAIL: no fix-it"; exit 1; }

if cmake "${common[@]}" -B "$tmp/bad" -DGRADPACK_WITH_HWLOC=maybe >"$tmp/bad.log" 2>&1; then
  echo "FAIL: GRADPACK_WITH_HWLOC=maybe was accepted"; exit 1
fi
grep -q "expected AUTO, ON or OFF" "$tmp/bad.log" || { cat "$tmp/bad.log"; exit 1; }

cmake "${common[@]}" -B "$tmp/auto" >"$tmp/auto.log" 2>&1 || { cat "$tmp/auto.log"; exit 1; }
grep -q "gradpack: HWLOC off: " "$tmp/auto.log" || { cat "$tmp/auto.log"; exit 1; }
echo "PASS: ON fails with a fix-it, a bad value is refused, AUTO turns the feature off"
