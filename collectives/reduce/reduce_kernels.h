// SPDX-License-Identifier: Apache-2.0
// The tables behind reduce_fn() and divide(): one per instruction set (scalar, AVX2, AVX-512),
// each holding a kernel for every dtype x op. Internal to collectives/reduce and its tests.
//
// Rules every table follows, so that all of them give the same bits (tests/collectives/reduce/):
// - A NaN result of a float op is the canonical NaN: positive, quiet, zero payload (0x7FC00000,
//   0x7FF8000000000000, fp16 0x7E00, bf16 0x7FC0). x86 returns the payload of one NaN operand,
//   chosen by the instruction's operand order, which the compiler is free to swap for + and *;
//   a fixed NaN keeps every table, and so every rank, bit-identical.
// - MIN/MAX of floats: a NaN in either operand gives NaN; min(-0.0, +0.0) is -0.0 and
//   max(-0.0, +0.0) is +0.0 in either order (IEEE 754-2019 minimum/maximum), so a reduction does
//   not depend on the order of its operands.
// - float16/bfloat16 widen exactly to float32, compute there, and round to nearest even.
// - Integer SUM/PROD wrap (two's complement); divide() truncates toward zero.
#pragma once

#include <cstddef>

#include "collectives/reduce/reduce.h"
#include "common/status.h"
#include "gradpack/gradpack.h"

namespace gradpack::coll {

constexpr int kReduceDtypes = GP_UINT8 + 1;
constexpr int kReduceOps = GP_AVG + 1;

// data[i] /= n for one dtype; n >= 2.
using DivideFn = void (*)(void* data, size_t count, int n);

struct ReduceKernels {
  const char* name;
  ReduceFn reduce[kReduceDtypes][kReduceOps];  // [dtype][op]; the GP_AVG column is GP_SUM's
  DivideFn divide[kReduceDtypes];
};

const ReduceKernels& scalar_reduce_kernels();
// nullptr when this build has no such table; the caller also checks the CPU supports it.
const ReduceKernels* avx2_reduce_kernels();
const ReduceKernels* avx512_reduce_kernels();

// The table for an explicit ISA name ("scalar", "avx2", "avx512"); kUnsupported if the CPU or the
// build lacks it, kInvalidArgument for another name.
Status reduce_kernels_by_name(const char* isa, const ReduceKernels** out);
// The table for this process, chosen once: GRADPACK_CPU_ISA, or the widest the CPU supports.
Status select_reduce_kernels(const ReduceKernels** out);

// Builds a table from a file's kernels: K<D>::template reduce<Op> and K<D>::divide for every
// dtype D. Evaluated at compile time only, so nothing of it is emitted in the ISA-specific files.
template <template <gp_dtype_t> class K, gp_dtype_t D>
consteval void add_reduce_dtype(ReduceKernels& t) {
  t.reduce[D][GP_SUM] = &K<D>::template reduce<GP_SUM>;
  t.reduce[D][GP_PROD] = &K<D>::template reduce<GP_PROD>;
  t.reduce[D][GP_MIN] = &K<D>::template reduce<GP_MIN>;
  t.reduce[D][GP_MAX] = &K<D>::template reduce<GP_MAX>;
  t.reduce[D][GP_AVG] = &K<D>::template reduce<GP_SUM>;
  t.divide[D] = &K<D>::divide;
}

template <template <gp_dtype_t> class K>
consteval ReduceKernels make_reduce_table(const char* name) {
  ReduceKernels t{};
  t.name = name;
  add_reduce_dtype<K, GP_FLOAT32>(t);
  add_reduce_dtype<K, GP_FLOAT16>(t);
  add_reduce_dtype<K, GP_BFLOAT16>(t);
  add_reduce_dtype<K, GP_FLOAT64>(t);
  add_reduce_dtype<K, GP_INT32>(t);
  add_reduce_dtype<K, GP_INT64>(t);
  add_reduce_dtype<K, GP_INT8>(t);
  add_reduce_dtype<K, GP_UINT8>(t);
  return t;
}

}  // namespace gradpack::coll
