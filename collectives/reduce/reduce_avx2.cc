// SPDX-License-Identifier: Apache-2.0
// The AVX2 reduction kernels (with F16C): 32-byte vectors, the same bits as reduce_scalar.cc.
// The kernels themselves are in reduce_kernels.inc, shared with the other SIMD table.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "collectives/reduce/reduce_kernels.h"

namespace gradpack::coll {
namespace {

#include "collectives/reduce/reduce_kernels.inc"

constexpr ReduceKernels kTable = make_reduce_table<Kernels>("avx2");

}  // namespace

const ReduceKernels* avx2_reduce_kernels() { return &kTable; }

}  // namespace gradpack::coll
