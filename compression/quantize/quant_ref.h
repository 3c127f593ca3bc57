// SPDX-License-Identifier: Apache-2.0
// The block quantizer, defined once: the scalar reference that the SIMD kernels and the CUDA
// kernels must match bit for bit (docs/codecs.md, "Quantization").
//
// A block of `block` values v is sent as one fp32 scale and one b-bit code per value:
//   absmax = max |v|                      (compared as integer bit patterns: exact, order-free)
//   L      = 2^(b-1) - 1                  (q8: 127, q4: 7, q2: 1)
//   scale  = absmax / L,  inv = L / absmax (both fp32, correctly rounded)
//   q      = rint(v * inv)                (nearest even)   or floor(v * inv + u) (stochastic)
//   code   = q + L, in [0, 2L]             decoded as (code - L) * scale
// Every step is a single IEEE operation, never fused: kernels are built with -ffp-contract=off and
// CUDA uses the __*_rn intrinsics, so all three agree exactly.
//
// Special blocks: absmax below 2^-100 (zero or nearly) sends scale 0 (codes = L), the values stay
// in the residual; a block with a NaN or Inf sends scale = NaN, so every receiver decodes NaN for
// it, and the block's residual is left as it was (the step is poisoned loudly, the residual never).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/float16.h"

namespace gradpack::quant {

constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kTinyAbsmaxBits = 0x0D800000u;  // 2^-100
constexpr uint32_t kNanScaleBits = 0x7FC00000u;    // the canonical quiet NaN

GP_HD int32_t levels(int bits) { return (1 << (bits - 1)) - 1; }

// lowbias32 (a well-known 32-bit integer mixer): every input bit affects every output bit.
GP_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// The key of one encode call's random stream: from the codec's seed and how many encodes it has
// done, so a codec's streams differ step to step and are the same on every machine.
GP_HD uint32_t stream_key(uint64_t seed, uint64_t call) {
  uint32_t k = mix32(static_cast<uint32_t>(seed) ^ 0x9E3779B9u);
  k = mix32(k ^ static_cast<uint32_t>(seed >> 32));
  k = mix32(k ^ static_cast<uint32_t>(call));
  return mix32(k ^ static_cast<uint32_t>(call >> 32));
}

// The uniform in [0, 1), a multiple of 2^-24, used to round element `index` of a stream.
GP_HD uint32_t high_key(uint32_t key, uint64_t index) {
  return key ^ mix32(static_cast<uint32_t>(index >> 32) + 0x632BE5ABu);
}
GP_HD float uniform(uint32_t hkey, uint32_t index_lo) {
  return static_cast<float>(mix32(index_lo ^ hkey) >> 8) * 5.9604644775390625e-8f;  // 2^-24
}

struct BlockScale {
  float scale;  // sent on the wire
  float inv;    // multiplies values into code space (0 for a zero block)
  bool finite;
};

// From the largest |v| bit pattern of a block (values >= 0x7F800000 mean NaN or Inf).
GP_HD BlockScale block_scale(uint32_t absmax_bits, int bits) {
  if (absmax_bits >= kFloatInfBits) return {bits_float(kNanScaleBits), 0.0f, false};
  if (absmax_bits < kTinyAbsmaxBits) return {0.0f, 0.0f, true};
  float absmax = bits_float(absmax_bits);
  float l = static_cast<float>(levels(bits));
#if defined(__CUDA_ARCH__)
  return {__fdiv_rn(absmax, l), __fdiv_rn(l, absmax), true};
#else
  return {absmax / l, l / absmax, true};
#endif
}

GP_HD int32_t quantize_nearest(float v, float inv) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(__fmul_rn(v, inv));
#else
  return static_cast<int32_t>(std::nearbyint(v * inv));
#endif
}

// Stochastic: floor(v * inv + u), clamped to [-L, L] (v * inv may exceed L by an ulp).
GP_HD int32_t quantize_stochastic(float v, float inv, float u, int32_t l) {
#if defined(__CUDA_ARCH__)
  int32_t q = static_cast<int32_t>(floorf(__fadd_rn(__fmul_rn(v, inv), u)));
#else
  int32_t q = static_cast<int32_t>(std::floor(v * inv + u));
#endif
  return q > l ? l : (q < -l ? -l : q);
}

GP_HD float dequantize(int32_t q, float scale) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(static_cast<float>(q), scale);
#else
  return static_cast<float>(q) * scale;
#endif
}

}  // namespace gradpack::quant
