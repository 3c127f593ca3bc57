// SPDX-License-Identifier: Apache-2.0
// The AVX-512 reduction kernels (F, BW, VL, DQ): 64-byte vectors, the same bits as
// reduce_scalar.cc. The kernels themselves are in reduce_kernels.inc, shared with the other SIMD
// table. GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own "undefined" vectors (GCC
// bug 105593); the warning points into the header, so silence it there only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cstdint>
#include <type_traits>

#include "collectives/reduce/reduce_kernels.h"

namespace gradpack::coll {
namespace {

#include "collectives/reduce/reduce_kernels.inc"

constexpr ReduceKernels kTable = make_reduce_table<Kernels>("avx512");

}  // namespace

const ReduceKernels* avx512_reduce_kernels() { return &kTable; }

}  // namespace gradpack::coll
