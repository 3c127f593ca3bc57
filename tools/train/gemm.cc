// SPDX-License-Identifier: Apache-2.0
#include "tools/train/gemm.h"

#include "tools/train/gemm_kernels.inc"

namespace gradpack::train {

#if defined(GRADPACK_TRAIN_HAVE_AVX2)
// gemm_avx2.cc: the same kernels built for AVX2 + FMA.
extern const GemmKernels kGemmAvx2;
#endif

namespace {

const GemmKernels kGemmGeneric = {mul_add, transposed_mul_add, "generic"};

const GemmKernels& choose() {
#if defined(GRADPACK_TRAIN_HAVE_AVX2)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kGemmAvx2;
#endif
  return kGemmGeneric;
}

}  // namespace

const GemmKernels& gemm_kernels() {
  static const GemmKernels& kernels = choose();
  return kernels;
}

}  // namespace gradpack::train
