#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# libgradpack-nccl.so exports exactly the NCCL functions it interposes, nothing of gradpack's.
set -euo pipefail
lib=${1:?usage: exports_test.sh libgradpack-nccl.so}
if ! command -v nm >/dev/null 2>&1; then
  echo "SKIP: nm is not installed"
  exit 77
fi
got=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TWDBRV]$/ {print $3}' | sed 's/@.*//' | sort -u)
want=$(printf '%s\n' gradpackNcclResetResiduals gradpackNcclSetResidualKey ncclAllReduce ncclCommAbort \
  ncclCommDestroy ncclCommGetAsyncError ncclGroupEnd ncclGroupSimulateEnd ncclGroupStart | sort)
if [[ "$got" != "$want" ]]; then
  echo "FAIL: $lib exports:"
  echo "$got"
  echo "expected:"
  echo "$want"
  exit 1
fi
echo "OK: $lib exports only $(echo "$want" | tr '\n' ' ')"
