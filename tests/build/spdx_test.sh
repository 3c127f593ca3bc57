#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every source, header, script and build file of the project carries the SPDX line of its licence
# (LICENSE: Apache-2.0) in its first two lines (the second after a #! line).
set -euo pipefail
src=$1
missing=0
while IFS= read -r -d '' f; do
  if ! head -n 2 "$f" | grep -q 'SPDX-License-Identifier: Apache-2.0'; then
    echo "${f#"$src"/}: no SPDX-License-Identifier line" >&2
    missing=$((missing + 1))
  fi
done < <(find "$src" \( -path "$src/build*" -o -path "$src/out" -o -path "$src/.git" \
                        -o -path "$src/bench/out" \) -prune -o -type f \
              \( -name '*.cc' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.inc' \
                 -o -name '*.c' -o -name '*.hpp' -o -name '*.def' -o -name '*.in' \
                 -o -name '*.map' -o -name '*.sh' -o -name '*.py' -o -name '*.cmake' \
                 -o -name CMakeLists.txt \) -print0)
if [ "$missing" -gt 0 ]; then
  echo "spdx_test: $missing file(s) without the SPDX line" >&2
  exit 1
fi
echo "spdx_test: ok"
