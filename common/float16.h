// SPDX-License-Identifier: Apache-2.0
// Scalar IEEE conversions between fp32 and the 16-bit formats, round to nearest even.
//
// These are the reference the SIMD and CUDA conversions are tested against bit for bit. Host and
// device: nvcc compiles them as __host__ __device__.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define GP_HD __host__ __device__ __forceinline__
#else
#define GP_HD inline
#endif

namespace gradpack {

GP_HD uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
GP_HD float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

constexpr uint16_t kHalfMaxBits = 0x7BFF;    // 65504
constexpr uint16_t kBfloatMaxBits = 0x7F7F;  // 3.3895e38
constexpr uint32_t kFloatInfBits = 0x7F800000;

// fp32 -> fp16, IEEE round to nearest even: values from 65520 up become Inf, NaN stays NaN.
GP_HD uint16_t f32_to_f16(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= kFloatInfBits)
    return static_cast<uint16_t>(sign | (ax > kFloatInfBits ? 0x7E00u : 0x7C00u));
  if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (ax < 0x38800000u) {
    // Below 2^-14 the result is subnormal: in units of 2^-24, round the exact scaled value.
    // Adding then subtracting 2^23 rounds a value below 2^10 to an integer, nearest even.
    float scaled = bits_float(ax) * 16777216.0f;
    float rounded = (scaled + 8388608.0f) - 8388608.0f;
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(rounded));
  }
  uint32_t rounded = ax + 0x0FFFu + ((ax >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rounded - ((127u - 15u) << 23)) >> 13));
}

GP_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // 2^-24, exact
    return bits_float(float_bits(v) | sign);
  }
  if (exp == 31) return bits_float(sign | kFloatInfBits | (mant << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// fp32 -> bf16, IEEE round to nearest even (overflow gives Inf; NaN is kept quiet).
GP_HD uint16_t f32_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7FFFFFFFu) > kFloatInfBits) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

GP_HD float bf16_to_f32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

// The codecs' conversions: like the above, but a finite value never becomes Inf; it saturates to
// the largest finite value, and error feedback carries the excess.
GP_HD uint16_t f32_to_f16_saturate(float f) {
  uint16_t h = f32_to_f16(f);
  if ((h & 0x7FFFu) == 0x7C00u && (float_bits(f) & 0x7FFFFFFFu) < kFloatInfBits)
    return static_cast<uint16_t>((h & 0x8000u) | kHalfMaxBits);
  return h;
}
GP_HD uint16_t f32_to_bf16_saturate(float f) {
  uint16_t h = f32_to_bf16(f);
  if ((h & 0x7FFFu) == 0x7F80u && (float_bits(f) & 0x7FFFFFFFu) < kFloatInfBits)
    return static_cast<uint16_t>((h & 0x8000u) | kBfloatMaxBits);
  return h;
}

}  // namespace gradpack
