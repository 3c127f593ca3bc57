#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# libgradpack.so exports the C ABI (gp_*) and nothing else.
set -euo pipefail
lib=$1
exported=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^GRADPACK_0$' || true)
others=$(echo "$exported" | grep -v '^gp_' || true)
if [ -n "$others" ]; then
  echo "libgradpack.so exports symbols outside the C ABI:"; echo "$others"; exit 1
fi
count=$(echo "$exported" | grep -c '^gp_')
echo "libgradpack.so exports $count gp_* symbols and nothing else"
[ "$count" -ge 10 ]
