#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The layering check passes on this tree, and fails, naming the file, on a copy where a lower room
# includes and links a higher one.
set -euo pipefail
src=$1
check="$src/scripts/check_layers.sh"
bash "$check" "$src"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for room in common compression transport topology collectives api net_plugin tools; do
  mkdir -p "$tmp/$room"
  echo '#include "common/status.h"' > "$tmp/$room/ok.cc"
done
echo 'add_library(gradpack_collectives STATIC ok.cc)' > "$tmp/collectives/CMakeLists.txt"
echo 'add_library(gradpack_transport STATIC ok.cc)' > "$tmp/transport/CMakeLists.txt"
bash "$check" "$tmp" >/dev/null
echo '#include "collectives/plan.h"' >> "$tmp/transport/ok.cc"
if out=$(bash "$check" "$tmp" 2>&1); then
  echo "FAIL: a transport file that includes collectives/ passed: $out" >&2
  exit 1
fi
grep -q 'transport/ok.cc:2: transport includes collectives/' <<<"$out" || {
  echo "FAIL: the message does not name the file and rule: $out" >&2
  exit 1
}
sed -i '2d' "$tmp/transport/ok.cc"
printf 'target_link_libraries(gradpack_transport\n  PUBLIC gradpack_collectives)\n' >> "$tmp/transport/CMakeLists.txt"
if out=$(bash "$check" "$tmp" 2>&1); then
  echo "FAIL: transport linking gradpack_collectives passed: $out" >&2
  exit 1
fi
grep -q 'transport/CMakeLists.txt:3: transport links gradpack_collectives' <<<"$out" || {
  echo "FAIL: the message does not name the CMakeLists line: $out" >&2
  exit 1
}
echo "layering_test: ok"
