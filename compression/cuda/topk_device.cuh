// SPDX-License-Identifier: Apache-2.0
// Device side of top-k: the selection key, the radix digits, and LEB128 varints.
#pragma once

#include <cstdint>

#include "common/float16.h"

namespace gradpack::cuda::dev {

// The ordering key of a value: |v| as bits, NaN counted as Inf (so NaN and Inf tie at the top and
// the lower index wins). Larger key = kept first.
__device__ __forceinline__ uint32_t topk_key(float v) {
  const uint32_t a = float_bits(v) & 0x7FFFFFFFu;
  return a < kFloatInfBits ? a : kFloatInfBits;
}

// Keys have 31 bits, selected in three passes from the top: 11, 10 and 10 bits.
constexpr int kSelectPasses = 3;
constexpr int kMaxDigitBins = 2048;
__host__ __device__ __forceinline__ int digit_shift(int pass) {
  return pass == 0 ? 20 : (pass == 1 ? 10 : 0);
}
__host__ __device__ __forceinline__ int digit_bins(int pass) { return pass == 0 ? 2048 : 1024; }

__device__ __forceinline__ int varint_length(uint64_t v) {
  const int significant = 64 - __clzll(static_cast<long long>(v | 1u));
  return (significant + 6) / 7;
}

__device__ __forceinline__ void write_varint(uint8_t* p, uint64_t v) {
  while (v >= 0x80u) {
    *p++ = static_cast<uint8_t>(v | 0x80u);
    v >>= 7;
  }
  *p = static_cast<uint8_t>(v);
}

}  // namespace gradpack::cuda::dev
