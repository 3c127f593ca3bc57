// SPDX-License-Identifier: Apache-2.0
// Element-wise kernels of the NCCL executor: the fp32 accumulator (kAccum) filled from and written
// back to the collective's dtype, with an average's scaling folded into the narrowing.
// Conversions round like the CPU executor's (compression/cuda/float_device.cuh: IEEE nearest even,
// x86 NaN bits).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "common/status.h"
#include "gradpack/gradpack.h"

namespace gradpack::coll::cuda {

// dst[i] = src[i] (add: dst[i] += src[i]), src of `dtype` (fp32, fp16 or bf16) widened to fp32.
Status widen(const void* src, gp_dtype_t dtype, float* dst, size_t n, bool add,
             cudaStream_t stream);
// dst[i] = src[i] * scale rounded to `dtype`, the product in fp32 (an average's 1/n applied before
// the one rounding: no second rounding, no fp16 overflow of the sum). Scale 1 copies exactly.
Status narrow(const float* src, void* dst, gp_dtype_t dtype, size_t n, float scale,
              cudaStream_t stream);

}  // namespace gradpack::coll::cuda
