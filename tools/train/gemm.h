// SPDX-License-Identifier: Apache-2.0
// The two matrix products an MLP's forward and backward passes need, on row-major float matrices,
// single-threaded. Each rank of the trainer is one process on a shared machine, so speed comes
// from the loop order (the innermost loop runs along contiguous rows, which the compiler
// vectorizes) and from blocking over the shared dimension (a block of the weight matrix stays in
// cache while every row of the batch uses it), not from threads.
#ifndef GRADPACK_TOOLS_TRAIN_GEMM_H_
#define GRADPACK_TOOLS_TRAIN_GEMM_H_

namespace gradpack::train {

struct GemmKernels {
  // c[m x n] += a[m x k] * b[k x n]. Zero elements of a are skipped: ReLU outputs and background
  // pixels make about half of them zero.
  void (*mul_add)(int m, int n, int k, const float* a, const float* b, float* c);
  // c[k x n] += transpose(a[m x k]) * b[m x n]: the weight gradient from the layer's input a and
  // the gradient b of its output.
  void (*transposed_mul_add)(int m, int n, int k, const float* a, const float* b, float* c);
  const char* isa;  // "avx2" or "generic"
};

// The fastest kernels this CPU runs, chosen once.
const GemmKernels& gemm_kernels();

}  // namespace gradpack::train

#endif  // GRADPACK_TOOLS_TRAIN_GEMM_H_
