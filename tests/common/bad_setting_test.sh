#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A bad GRADPACK_* value is an error naming the variable, returned by the call that needs it:
# never a hang, a crash or a silent default.
set -uo pipefail
tool=$1
for value in "" "sse9"; do
  out=$(GRADPACK_CPU_ISA="$value" timeout 20 "$tool" --synthetic 1K --spec q8 2>&1)
  rc=$?
  if [ $rc -eq 124 ]; then echo "FAIL: GRADPACK_CPU_ISA='$value' hangs"; exit 1; fi
  if [ $rc -eq 0 ]; then echo "FAIL: GRADPACK_CPU_ISA='$value' was accepted"; exit 1; fi
  if ! grep -q "GRADPACK_CPU_ISA" <<<"$out"; then
    echo "FAIL: the error does not name the variable:"; echo "$out"; exit 1
  fi
done
out=$(GRADPACK_LOG=loud timeout 20 "$tool" --synthetic 1K --spec q8 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "GRADPACK_LOG" <<<"$out" || { echo "FAIL: GRADPACK_LOG=loud: rc=$rc $out"; exit 1; }
echo "PASS: bad settings are errors naming the variable"
