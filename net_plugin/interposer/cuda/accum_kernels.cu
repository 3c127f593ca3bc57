// SPDX-License-Identifier: Apache-2.0
#include <string>

#include "net_plugin/interposer/cuda/accum_kernels.h"
#include "compression/cuda/float_device.cuh"

namespace gradpack::coll::cuda {

namespace {

using gradpack::cuda::dev::BFloat;
using gradpack::cuda::dev::Half;
namespace dev = gradpack::cuda::dev;

constexpr int kThreads = 256;

unsigned blocks_for(size_t n) {
  const size_t want = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(want < 4096 ? (want == 0 ? 1 : want) : 4096);
}

template <typename T>
__global__ void widen_kernel(const T* src, float* dst, size_t n, bool add) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    const float v = dev::to_f32(src[i]);
    dst[i] = add ? dev::add(dst[i], v) : v;
  }
}

// kScaled: the multiply by `scale` (an average's 1/n) happens in fp32 before the one rounding to
// T; scale 1 takes the copy-only instantiation, so NaN payloads pass through untouched.
template <typename T, bool kScaled>
__global__ void narrow_kernel(const float* src, T* dst, size_t n, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    dst[i] = dev::from_f32<T>(kScaled ? dev::mul(src[i], scale) : src[i]);
  }
}

template <typename T>
void launch_narrow(const float* src, T* dst, size_t n, float scale, cudaStream_t stream) {
  if (scale == 1.0f) {
    narrow_kernel<T, false><<<blocks_for(n), kThreads, 0, stream>>>(src, dst, n, scale);
  } else {
    narrow_kernel<T, true><<<blocks_for(n), kThreads, 0, stream>>>(src, dst, n, scale);
  }
}

// A peek, not cudaGetLastError: an error the application left pending is not ours to consume.
Status launched(const char* what) {
  const cudaError_t err = cudaPeekAtLastError();
  if (err == cudaSuccess) return OkStatus();
  return Status(Code::kSystem, std::string("CUDA: ") + what + ": " + cudaGetErrorName(err) + " (" +
                                   cudaGetErrorString(err) + ")");
}

Status bad_dtype(gp_dtype_t dtype) {
  return InvalidArgument("dtype " + std::to_string(static_cast<int>(dtype)) +
                         " is not float32, float16 or bfloat16");
}

}  // namespace

Status widen(const void* src, gp_dtype_t dtype, float* dst, size_t n, bool add,
             cudaStream_t stream) {
  if (n == 0) return OkStatus();
  switch (dtype) {
    case GP_FLOAT32:
      widen_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(src), dst, n,
                                                           add);
      break;
    case GP_FLOAT16:
      widen_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const Half*>(src), dst, n,
                                                           add);
      break;
    case GP_BFLOAT16:
      widen_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const BFloat*>(src), dst, n,
                                                           add);
      break;
    default:
      return bad_dtype(dtype);
  }
  return launched("widen to the fp32 accumulator");
}

Status narrow(const float* src, void* dst, gp_dtype_t dtype, size_t n, float scale,
              cudaStream_t stream) {
  if (n == 0) return OkStatus();
  switch (dtype) {
    case GP_FLOAT32:
      launch_narrow(src, static_cast<float*>(dst), n, scale, stream);
      break;
    case GP_FLOAT16:
      launch_narrow(src, static_cast<Half*>(dst), n, scale, stream);
      break;
    case GP_BFLOAT16:
      launch_narrow(src, static_cast<BFloat*>(dst), n, scale, stream);
      break;
    default:
      return bad_dtype(dtype);
  }
  return launched("narrow from the fp32 accumulator");
}

}  // namespace gradpack::coll::cuda
