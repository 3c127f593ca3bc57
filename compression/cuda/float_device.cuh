// SPDX-License-Identifier: Apache-2.0
// Device-side element access and float arithmetic that give the CPU reference's bits exactly.
//
// Finite arithmetic is one correctly rounded __f*_rn operation each (never fused, the kernels are
// also built with --fmad=false). NaN needs more: a GPU returns one canonical NaN (0x7FFFFFFF) from
// every operation, while the CPU reference (x86-64 SSE) returns the NaN operand, quieted, or the
// "indefinite" NaN 0xFFC00000 for an invalid operation such as Inf - Inf. Top-k fp32 values and
// decoded outputs carry those bits, so add/sub/mul below repeat the x86 rule. When both operands
// are NaN, x86 returns the first; a compiler may swap the operands of a commutative `a + b`, so
// that one case is not pinned down on the CPU either.
#pragma once

#include <cstdint>

#include "common/float16.h"

namespace gradpack::cuda::dev {

constexpr uint32_t kQuietBit = 0x00400000u;
constexpr uint32_t kX86IndefiniteNan = 0xFFC00000u;

__device__ __forceinline__ bool is_nan(float f) {
  return (float_bits(f) & 0x7FFFFFFFu) > kFloatInfBits;
}
__device__ __forceinline__ bool is_finite(float f) {
  return (float_bits(f) & 0x7FFFFFFFu) < kFloatInfBits;
}

// The NaN x86 gives for an operation on a and b whose result is NaN.
__device__ __forceinline__ float x86_nan(float a, float b) {
  if (is_nan(a)) return bits_float(float_bits(a) | kQuietBit);
  if (is_nan(b)) return bits_float(float_bits(b) | kQuietBit);
  return bits_float(kX86IndefiniteNan);
}

__device__ __forceinline__ float add(float a, float b) {
  const float s = __fadd_rn(a, b);
  return is_nan(s) ? x86_nan(a, b) : s;
}
__device__ __forceinline__ float sub(float a, float b) {
  const float s = __fsub_rn(a, b);
  return is_nan(s) ? x86_nan(a, b) : s;
}
__device__ __forceinline__ float mul(float a, float b) {
  const float s = __fmul_rn(a, b);
  return is_nan(s) ? x86_nan(a, b) : s;
}

// Storage types of the codecs' input and output dtypes. 16-bit values are distinct types so a
// template can tell fp16 from bf16.
struct Half {
  uint16_t bits;
};
struct BFloat {
  uint16_t bits;
};

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(Half x) { return f16_to_f32(x.bits); }
__device__ __forceinline__ float to_f32(BFloat x) { return bf16_to_f32(x.bits); }

// Rounds to the storage type as the CPU decoders do (IEEE nearest even, no saturation).
template <typename T>
__device__ __forceinline__ T from_f32(float f);
template <>
__device__ __forceinline__ float from_f32<float>(float f) {
  return f;
}
template <>
__device__ __forceinline__ Half from_f32<Half>(float f) {
  return Half{f32_to_f16(f)};
}
template <>
__device__ __forceinline__ BFloat from_f32<BFloat>(float f) {
  return BFloat{f32_to_bf16(f)};
}

__device__ __forceinline__ bool aligned(const void* p, uintptr_t to) {
  return (reinterpret_cast<uintptr_t>(p) & (to - 1)) == 0;
}

// Loads m <= 8 elements as fp32; 16-byte vector loads for a full, aligned group.
__device__ __forceinline__ void load8(const float* p, int m, float (&v)[8]) {
  if (m == 8 && aligned(p, 16)) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = i < m ? p[i] : 0.0f;
}

template <typename T>
__device__ __forceinline__ void load8(const T* p, int m, float (&v)[8]) {
  static_assert(sizeof(T) == 2);
  if (m == 8 && aligned(p, 16)) {
    const uint4 w = *reinterpret_cast<const uint4*>(p);
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = to_f32(T{static_cast<uint16_t>(words[i] & 0xFFFFu)});
      v[2 * i + 1] = to_f32(T{static_cast<uint16_t>(words[i] >> 16)});
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = i < m ? to_f32(p[i]) : 0.0f;
}

// Stores m <= 8 fp32 values as T.
__device__ __forceinline__ void store8(float* p, int m, const float (&v)[8]) {
  if (m == 8 && aligned(p, 16)) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i)
    if (i < m) p[i] = v[i];
}

template <typename T>
__device__ __forceinline__ void store8(T* p, int m, const float (&v)[8]) {
  static_assert(sizeof(T) == 2);
  if (m == 8 && aligned(p, 16)) {
    uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      words[i] = static_cast<uint32_t>(from_f32<T>(v[2 * i]).bits) |
                 (static_cast<uint32_t>(from_f32<T>(v[2 * i + 1]).bits) << 16);
    *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i)
    if (i < m) p[i] = from_f32<T>(v[i]);
}

// 32-bit little-endian words at any byte address (frame sections need not be aligned).
__device__ __forceinline__ uint32_t load_u32(const uint8_t* p) {
  if (aligned(p, 4)) return *reinterpret_cast<const uint32_t*>(p);
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
__device__ __forceinline__ void store_u32(uint8_t* p, uint32_t v) {
  if (aligned(p, 4)) {
    *reinterpret_cast<uint32_t*>(p) = v;
    return;
  }
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

}  // namespace gradpack::cuda::dev
