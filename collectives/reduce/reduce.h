// SPDX-License-Identifier: Apache-2.0
// Reduction kernels of the host collectives: every gp_dtype_t x every gp_redop_t, chosen once at
// run time for the CPU (scalar, AVX2, AVX-512; GRADPACK_CPU_ISA forces one), each SIMD kernel
// giving the same bits as the scalar one.
#pragma once

#include <cstddef>

#include "common/status.h"
#include "gradpack/gradpack.h"

namespace gradpack::coll {

// dst[i] = a[i] (op) b[i] for i < count; dst may alias a or b (exactly, not partially).
// GP_AVG reduces as GP_SUM (divide() finishes it). float16/bfloat16 compute in float32 and round
// to nearest even. MIN/MAX of floats: a NaN in either operand gives NaN.
using ReduceFn = void (*)(void* dst, const void* a, const void* b, size_t count);

// kInvalidArgument naming the bad value for an unknown dtype or op.
Status reduce_fn(gp_dtype_t dtype, gp_redop_t op, ReduceFn* out);

// data[i] /= n: the last step of GP_AVG. Integers divide truncating toward zero; floats divide in
// their own precision (16-bit types via float32). n == 1 leaves data unchanged; n < 1 or an unknown
// dtype is logged as an error and leaves it unchanged.
void divide(void* data, size_t count, gp_dtype_t dtype, int n);

// The name of the kernel table in use ("avx2"), for the perf tool's header.
const char* reduce_isa_name();

}  // namespace gradpack::coll
