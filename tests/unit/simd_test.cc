// SIMD kernels vs the scalar reference: being written.
