// SPDX-License-Identifier: Apache-2.0
// Built with -mavx2 -mfma (tools/train/CMakeLists.txt); used only where the CPU has both.
#include "tools/train/gemm.h"
#include "tools/train/gemm_kernels.inc"

namespace gradpack::train {

extern const GemmKernels kGemmAvx2;
const GemmKernels kGemmAvx2 = {mul_add, transposed_mul_add, "avx2"};

}  // namespace gradpack::train
