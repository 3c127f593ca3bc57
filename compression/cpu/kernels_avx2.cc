// SPDX-License-Identifier: Apache-2.0
// The AVX2 kernels (with FMA, F16C, BMI2 present; FMA is never used: -ffp-contract=off and no
// fused intrinsics): 8 values per vector, the same bits as the scalar table (kernels_scalar.cc;
// tests/compression/simd_test.cc checks it).
//
// The encoder is the general one of kernels_avx512.cc: a chunk of blocks at a time, it finds
// every block's absmax (v = x + r), then all their scales, then quantizes the chunk from L1,
// packing the codes and writing the residual. 8 codes are always one group of `bits` bytes, so
// packing never crosses a vector. AVX2 has no byte masks: stores and reads that would pass the end
// of the code stream go through a small staging buffer.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "common/float16.h"
#include "compression/cpu/kernels.h"
#include "compression/cpu/simd_common.h"
#include "compression/quantize/quant_ref.h"

// The helpers below must inline into the kernel loops (vectors passed by value, masks folded).
#define GP_INLINE inline __attribute__((always_inline))

namespace gradpack::cpu {
namespace {

constexpr size_t kLanes = 8;
using Full = std::true_type;   // a whole vector of values
using Part = std::false_type;  // the first k < 8 lanes, under a mask

__m256i set1(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }

__m256i iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }

// All ones in the first k lanes.
__m256i first_lanes(size_t k) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), iota());
}

// quant::mix32 on 8 lanes.
__m256i mix32(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, set1(0x7FEB352Du));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, set1(0x846CA68Bu));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

uint32_t reduce_max_epu32(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

template <class F>
GP_INLINE __m256 load_f(const float* p, F, __m256i mask) {
  if constexpr (F::value) {
    return _mm256_loadu_ps(p);
  } else {
    return _mm256_maskload_ps(p, mask);
  }
}

template <class F>
GP_INLINE void store_f(float* p, __m256 v, F, __m256i mask) {
  if constexpr (F::value) {
    _mm256_storeu_ps(p, v);
  } else {
    _mm256_maskstore_ps(p, mask, v);
  }
}

// ---- code packing: 8 codes (32-bit lanes, each < 2^bits) to `bits` bytes, LSB-first ----

// Bytes pack_direct<B> may touch at dst.
template <int B>
size_t pack_extent() {
  if constexpr (B == 0) return 16;
  return B;
}

template <int B>
GP_INLINE void pack_direct(uint8_t* dst, __m256i c, int bits) {
  if constexpr (B == 8) {
    const __m256i idx =
        _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_shuffle_epi8(c, idx);
    const __m128i v = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), v);
  } else if constexpr (B == 16) {
    const __m128i v = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
  } else if constexpr (B == 4) {
    // Each 64-bit lane: c0 | c1 << 4 in its low byte.
    const __m256i pairs = _mm256_or_si256(c, _mm256_srli_epi64(c, 28));
    const __m256i idx =
        _mm256_setr_epi8(0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 8, -1, -1,
                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_shuffle_epi8(pairs, idx);
    const __m128i v = _mm_unpacklo_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    const uint32_t word = static_cast<uint32_t>(_mm_cvtsi128_si32(v));
    std::memcpy(dst, &word, 4);
  } else if constexpr (B == 2) {
    // 64-bit lanes: c0 | c1 << 2 in the low nibble; then the two of each 128-bit lane into a byte.
    const __m256i pairs = _mm256_or_si256(c, _mm256_srli_epi64(c, 30));
    const __m256i quads =
        _mm256_or_si256(pairs, _mm256_slli_epi64(_mm256_bsrli_epi128(pairs, 8), 4));
    const uint32_t lo = static_cast<uint32_t>(_mm256_extract_epi32(quads, 0)) & 0xFFu;
    const uint32_t hi = static_cast<uint32_t>(_mm256_extract_epi32(quads, 4)) & 0xFFu;
    const uint16_t word = static_cast<uint16_t>(lo | hi << 8);
    std::memcpy(dst, &word, 2);
  } else {
    // Pairs into 64-bit lanes (2b bits), pairs of those into the low half of each 128-bit lane
    // (4b <= 64 bits), then the two halves into 128 bits (8b bits).
    const __m256i w = _mm256_blend_epi32(_mm256_or_si256(c, _mm256_srli_epi64(c, 32 - bits)),
                                         _mm256_setzero_si256(), 0xAA);
    const __m256i y = _mm256_or_si256(
        w, _mm256_sll_epi64(_mm256_bsrli_epi128(w, 8), _mm_cvtsi32_si128(2 * bits)));
    const __m128i x0 = _mm_move_epi64(_mm256_castsi256_si128(y));  // x0 0
    const __m128i hi = _mm256_extracti128_si256(y, 1);
    const __m128i x1 = _mm_unpacklo_epi64(hi, hi);  // x1 x1
    const long long s = 4 * bits;
    const __m128i up = _mm_sllv_epi64(x1, _mm_set_epi64x(64, s));
    const __m128i down = _mm_srlv_epi64(x1, _mm_set_epi64x(64 - s, 64));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_or_si128(x0, _mm_or_si128(up, down)));
  }
}

// Writes the codes of 8 lanes whose first `valid` bytes are wanted, never past `end`. Bytes past
// `valid` but before `end` may be written with zeros that the next vector overwrites.
template <int B>
GP_INLINE void pack(uint8_t* dst, __m256i c, size_t valid, const uint8_t* end, int bits) {
  if (static_cast<size_t>(end - dst) >= pack_extent<B>()) {
    pack_direct<B>(dst, c, bits);
  } else {
    alignas(32) uint8_t tmp[32];
    pack_direct<B>(tmp, c, bits);
    std::memcpy(dst, tmp, valid);
  }
}

// Runs gen(i, Full/Part, mask) over the m values of one block and packs the codes it returns
// (zero in lanes outside the mask, so pad bits stay zero).
template <int B, class Gen>
GP_INLINE void emit_block(size_t m, int bits, uint8_t* out, const uint8_t* end, Gen&& gen) {
  const size_t ubits = static_cast<size_t>(bits);
  const __m256i all = _mm256_set1_epi32(-1);
  const size_t full = m / kLanes * kLanes;
  size_t i = 0;
  if (full > 0 &&
      static_cast<size_t>(end - out) >= (full - kLanes) / 8 * ubits + pack_extent<B>()) {
    // Every whole vector of the block can be stored directly (the usual case).
    for (; i < full; i += kLanes) pack_direct<B>(out + i / 8 * ubits, gen(i, Full{}, all), bits);
  } else {
    for (; i < full; i += kLanes)
      pack<B>(out + i / 8 * ubits, gen(i, Full{}, all), ubits, end, bits);
  }
  if (i < m) {
    const size_t k = m - i;
    pack<B>(out + i / 8 * ubits, gen(i, Part{}, first_lanes(k)), (k * ubits + 7) / 8, end, bits);
  }
}

template <bool kRes>
GP_INLINE uint32_t block_absmax(const float* x, const float* r, size_t m) {
  const __m256i abs_mask = set1(quant::kAbsMask);
  auto absbits = [&](size_t i, auto full, __m256i mask) {
    __m256 v = load_f(x + i, full, mask);
    if constexpr (kRes) v = _mm256_add_ps(v, load_f(r + i, full, mask));
    return _mm256_and_si256(_mm256_castps_si256(v), abs_mask);
  };
  const __m256i all = _mm256_set1_epi32(-1);
  __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 2 * kLanes <= m; i += 2 * kLanes) {
    a0 = _mm256_max_epu32(a0, absbits(i, Full{}, all));
    a1 = _mm256_max_epu32(a1, absbits(i + kLanes, Full{}, all));
  }
  if (i + kLanes <= m) {
    a0 = _mm256_max_epu32(a0, absbits(i, Full{}, all));
    i += kLanes;
  }
  // Masked-off lanes load as +0 and do not move the max.
  if (i < m) a1 = _mm256_max_epu32(a1, absbits(i, Part{}, first_lanes(m - i)));
  return reduce_max_epu32(_mm256_max_epu32(a0, a1));
}

// quant::block_scale for up to 8 blocks at once: the same correctly rounded divisions, so the
// same bits. Writes each block's scale to `scale` and its multiplier to `inv`.
void block_scales(const uint32_t* absmax, size_t count, int bits, float* scale, float* inv) {
  const __m256 l = _mm256_set1_ps(static_cast<float>(quant::levels(bits)));
  const __m256i flip = set1(0x80000000u);  // unsigned compares as signed ones
  for (size_t j = 0; j < count; j += kLanes) {
    const size_t k = std::min(count - j, kLanes);
    alignas(32) uint32_t a_in[kLanes] = {};
    std::memcpy(a_in, absmax + j, k * 4);
    const __m256i a = _mm256_load_si256(reinterpret_cast<const __m256i*>(a_in));
    const __m256i fa = _mm256_xor_si256(a, flip);
    const __m256i nonfinite = _mm256_cmpgt_epi32(fa, set1((kFloatInfBits - 1) ^ 0x80000000u));
    const __m256i tiny = _mm256_cmpgt_epi32(set1(quant::kTinyAbsmaxBits ^ 0x80000000u), fa);
    const __m256i normal = _mm256_andnot_si256(_mm256_or_si256(nonfinite, tiny), set1(~0u));
    // Other lanes divide 1 by 1 (raising no flags) and are replaced: tiny blocks get 0 and 0,
    // non-finite ones a NaN scale and inv 0.
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 af = _mm256_blendv_ps(one, _mm256_castsi256_ps(a), _mm256_castsi256_ps(normal));
    const __m256 ln = _mm256_blendv_ps(one, l, _mm256_castsi256_ps(normal));
    __m256 s = _mm256_and_ps(_mm256_div_ps(af, ln), _mm256_castsi256_ps(normal));
    s = _mm256_blendv_ps(s, _mm256_castsi256_ps(set1(quant::kNanScaleBits)),
                         _mm256_castsi256_ps(nonfinite));
    const __m256 iv = _mm256_and_ps(_mm256_div_ps(ln, af), _mm256_castsi256_ps(normal));
    alignas(32) float s_out[kLanes], i_out[kLanes];
    _mm256_store_ps(s_out, s);
    _mm256_store_ps(i_out, iv);
    std::memcpy(scale + j, s_out, k * 4);
    std::memcpy(inv + j, i_out, k * 4);
  }
}

// Values per chunk: the encoder finds the absmax of every block of a chunk, then the scales of
// all of them, then quantizes the chunk, which is still in L1. Batching the scales keeps their
// divisions off the path between a block's two passes.
constexpr size_t kChunk = 2048;
constexpr size_t kMaxChunkBlocks = kChunk / 8;

// A prefetch never faults, so it may point past the end of the arrays (computed as an integer,
// which is not a pointer out of bounds).
GP_INLINE void prefetch_next_chunk(const float* p) {
  _mm_prefetch(
      reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + kChunk * sizeof(float)),
      _MM_HINT_T0);
}

template <int B, bool kStochastic, bool kRes>
size_t quant_encode_t(const float* x, float* r, size_t n, uint64_t first, const QuantParams& p,
                      float* scales, uint8_t* codes) {
  const int bits = B != 0 ? B : p.bits;
  const size_t ubits = static_cast<size_t>(bits);
  const int32_t l = quant::levels(bits);
  const size_t block = p.block;
  const size_t chunk_blocks = std::max<size_t>(1, kChunk / block);
  const uint8_t* end = codes + (n * ubits + 7) / 8;
  const __m256i vl = _mm256_set1_epi32(l);
  const __m256i neg_vl = _mm256_set1_epi32(-l);
  const __m256i flip = set1(0x80000000u);  // unsigned compares as signed ones
  alignas(32) uint32_t absmax[kMaxChunkBlocks];
  alignas(32) float inv[kMaxChunkBlocks];
  size_t nonfinite = 0;
  for (size_t c0 = 0, blk0 = 0; c0 < n; c0 += chunk_blocks * block, blk0 += chunk_blocks) {
    const size_t nblocks = std::min(chunk_blocks, (n - c0 + block - 1) / block);
    for (size_t j = 0; j < nblocks; ++j) {
      const size_t b0 = c0 + j * block;
      absmax[j] = block_absmax<kRes>(x + b0, kRes ? r + b0 : nullptr, std::min(block, n - b0));
    }
    block_scales(absmax, nblocks, bits, scales + blk0, inv);
    for (size_t j = 0; j < nblocks; ++j) {
      const size_t b0 = c0 + j * block;
      const size_t m = std::min(block, n - b0);
      const float* xb = x + b0;
      float* rb = kRes ? r + b0 : nullptr;
      uint8_t* out = codes + b0 / 8 * ubits;
      if (absmax[j] >= kFloatInfBits) {
        ++nonfinite;
        emit_block<B>(m, bits, out, end,
                      [&](size_t, auto, __m256i mask) { return _mm256_and_si256(mask, vl); });
        continue;
      }
      const __m256 vinv = _mm256_set1_ps(inv[j]);
      const __m256 scale = _mm256_set1_ps(scales[blk0 + j]);
      // The stochastic stream: element e = first + b0 + i draws mix32(lo32(e) ^ high_key(e)).
      // The high key changes where lo32(e) wraps, at most once in a block (blocks are < 2^32).
      const uint64_t e0 = first + b0;
      const uint32_t lo0 = static_cast<uint32_t>(e0);
      const bool wraps = lo0 > UINT32_MAX - static_cast<uint32_t>(m - 1);
      const __m256i hk0 = set1(quant::high_key(p.key, e0));
      const __m256i hk1 = set1(quant::high_key(p.key, e0 + m - 1));
      const __m256i flipped_lo0 = set1(lo0 ^ 0x80000000u);
      auto quantize = [&](size_t i, auto full, __m256i mask) {
        // Fetch the next chunk while this one is quantized from L1, so that the memory system
        // keeps streaming between the passes.
        prefetch_next_chunk(xb + i);
        if constexpr (kRes) prefetch_next_chunk(rb + i);
        __m256 v = load_f(xb + i, full, mask);
        if constexpr (kRes) v = _mm256_add_ps(v, load_f(rb + i, full, mask));
        __m256i q;
        if constexpr (kStochastic) {
          const __m256i lo = _mm256_add_epi32(set1(lo0 + static_cast<uint32_t>(i)), iota());
          __m256i hk = hk0;
          if (wraps) {
            const __m256i wrapped = _mm256_cmpgt_epi32(flipped_lo0, _mm256_xor_si256(lo, flip));
            hk = _mm256_blendv_epi8(hk0, hk1, wrapped);
          }
          const __m256i h = _mm256_srli_epi32(mix32(_mm256_xor_si256(lo, hk)), 8);
          const __m256 u =
              _mm256_mul_ps(_mm256_cvtepi32_ps(h), _mm256_set1_ps(5.9604644775390625e-8f));
          const __m256 t = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(v, vinv), u));
          q = _mm256_cvttps_epi32(t);
          q = _mm256_min_epi32(_mm256_max_epi32(q, neg_vl), vl);
        } else {
          q = _mm256_cvtps_epi32(_mm256_mul_ps(v, vinv));  // MXCSR rounding, as nearbyint
        }
        if constexpr (kRes) {
          const __m256 d = _mm256_mul_ps(_mm256_cvtepi32_ps(q), scale);
          store_f(rb + i, _mm256_sub_ps(v, d), full, mask);
        }
        const __m256i code = _mm256_add_epi32(q, vl);
        if constexpr (decltype(full)::value) {
          return code;
        } else {
          return _mm256_and_si256(code, mask);
        }
      };
      emit_block<B>(m, bits, out, end, quantize);
    }
  }
  return nonfinite;
}

template <int B>
size_t quant_encode_b(const float* x, float* r, size_t n, uint64_t first, const QuantParams& p,
                      float* scales, uint8_t* codes) {
  if (p.stochastic) {
    return r ? quant_encode_t<B, true, true>(x, r, n, first, p, scales, codes)
             : quant_encode_t<B, true, false>(x, r, n, first, p, scales, codes);
  }
  return r ? quant_encode_t<B, false, true>(x, r, n, first, p, scales, codes)
           : quant_encode_t<B, false, false>(x, r, n, first, p, scales, codes);
}

size_t quant_encode(const float* x, float* r, size_t n, uint64_t first, const QuantParams& p,
                    float* scales, uint8_t* codes) {
  switch (p.bits) {
    case 2:
      return quant_encode_b<2>(x, r, n, first, p, scales, codes);
    case 4:
      return quant_encode_b<4>(x, r, n, first, p, scales, codes);
    case 8:
      return quant_encode_b<8>(x, r, n, first, p, scales, codes);
    case 16:
      return quant_encode_b<16>(x, r, n, first, p, scales, codes);
    default:
      return quant_encode_b<0>(x, r, n, first, p, scales, codes);
  }
}

// ---- decode: `bits` bytes to 8 codes ----

// Bytes unpack_direct<B> reads at src.
template <int B>
size_t unpack_extent() {
  if constexpr (B == 0) return 16;
  return B;
}

template <int B>
GP_INLINE __m256i unpack_direct(const uint8_t* src, int bits) {
  if constexpr (B == 8) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)));
  } else if constexpr (B == 16) {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
  } else if constexpr (B == 4) {
    uint32_t word;
    std::memcpy(&word, src, 4);
    const __m128i b = _mm_cvtsi32_si128(static_cast<int>(word));
    const __m256i w = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));  // each byte twice
    const __m256i sh = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
    return _mm256_and_si256(_mm256_srlv_epi32(w, sh), set1(0xF));
  } else if constexpr (B == 2) {
    uint16_t half;
    std::memcpy(&half, src, 2);
    const __m128i b =
        _mm_shuffle_epi8(_mm_cvtsi32_si128(half),
                         _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_cvtepu8_epi32(b), sh), set1(0x3));
  } else {
    const simd::CodeGather& g = simd::kGather16[bits];
    const __m256i bytes =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    const __m256i win =
        _mm256_shuffle_epi8(bytes, _mm256_load_si256(reinterpret_cast<const __m256i*>(g.index)));
    const __m256i code =
        _mm256_srlv_epi32(win, _mm256_load_si256(reinterpret_cast<const __m256i*>(g.shift)));
    return _mm256_and_si256(code, set1((1u << bits) - 1u));
  }
}

template <int B>
GP_INLINE __m256i unpack(const uint8_t* src, size_t valid, const uint8_t* end, int bits) {
  if (static_cast<size_t>(end - src) >= unpack_extent<B>()) return unpack_direct<B>(src, bits);
  alignas(32) uint8_t tmp[32] = {};
  std::memcpy(tmp, src, valid);
  return unpack_direct<B>(tmp, bits);
}

template <int B, bool kAccumulate>
void quant_decode_t(const float* scales, const uint8_t* codes, size_t n, const QuantParams& p,
                    float* out) {
  const int bits = B != 0 ? B : p.bits;
  const size_t ubits = static_cast<size_t>(bits);
  const __m256i vl = _mm256_set1_epi32(quant::levels(bits));
  const size_t block = p.block;
  const uint8_t* end = codes + (n * ubits + 7) / 8;
  for (size_t b0 = 0, blk = 0; b0 < n; b0 += block, ++blk) {
    const size_t m = std::min(block, n - b0);
    const uint8_t* in = codes + b0 / 8 * ubits;
    float* o = out + b0;
    const __m256 scale = _mm256_set1_ps(scales[blk]);
    auto value = [&](__m256i c) {
      return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, vl)), scale);
    };
    size_t i = 0;
    for (; i + kLanes <= m; i += kLanes) {
      __m256 d = value(unpack<B>(in + i / 8 * ubits, ubits, end, bits));
      if constexpr (kAccumulate) d = _mm256_add_ps(_mm256_loadu_ps(o + i), d);
      _mm256_storeu_ps(o + i, d);
    }
    if (i < m) {
      const size_t k = m - i;
      const __m256i mask = first_lanes(k);
      __m256 d = value(unpack<B>(in + i / 8 * ubits, (k * ubits + 7) / 8, end, bits));
      if constexpr (kAccumulate) d = _mm256_add_ps(_mm256_maskload_ps(o + i, mask), d);
      _mm256_maskstore_ps(o + i, mask, d);
    }
  }
}

template <int B>
void quant_decode_b(const float* scales, const uint8_t* codes, size_t n, const QuantParams& p,
                    float* out, bool accumulate) {
  if (accumulate) {
    quant_decode_t<B, true>(scales, codes, n, p, out);
  } else {
    quant_decode_t<B, false>(scales, codes, n, p, out);
  }
}

void quant_decode(const float* scales, const uint8_t* codes, size_t n, const QuantParams& p,
                  float* out, bool accumulate) {
  switch (p.bits) {
    case 2:
      return quant_decode_b<2>(scales, codes, n, p, out, accumulate);
    case 4:
      return quant_decode_b<4>(scales, codes, n, p, out, accumulate);
    case 8:
      return quant_decode_b<8>(scales, codes, n, p, out, accumulate);
    case 16:
      return quant_decode_b<16>(scales, codes, n, p, out, accumulate);
    default:
      return quant_decode_b<0>(scales, codes, n, p, out, accumulate);
  }
}

// ---- 16-bit conversions: 8 elements per step; the last few go through zeroed staging arrays ----

template <class In, class Out, class Step>
void convert(const In* in, Out* out, size_t n, Step&& step) {
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) step(in + i, out + i);
  if (i < n) {
    In src[kLanes] = {};
    Out dst[kLanes];
    std::memcpy(src, in + i, (n - i) * sizeof(In));
    step(src, dst);
    std::memcpy(out + i, dst, (n - i) * sizeof(Out));
  }
}

void f16_to_f32(const uint16_t* in, float* out, size_t n) {
  convert(in, out, n, [](const uint16_t* src, float* dst) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m256 f = _mm256_cvtph_ps(h);
    // Inf and NaN bit for bit as the reference writes them, whatever F16C does to NaN payloads.
    const __m256i w = _mm256_cvtepu16_epi32(h);
    const __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(w, set1(0x7C00)), set1(0x7C00));
    const __m256i bits = _mm256_or_si256(
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(w, set1(0x8000)), 16), set1(0x70000000)),
        _mm256_slli_epi32(_mm256_and_si256(w, set1(0x7FFF)), 13));
    _mm256_storeu_ps(dst,
                     _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(special)));
  });
}

void bf16_to_f32(const uint16_t* in, float* out, size_t n) {
  convert(in, out, n, [](const uint16_t* src, float* dst) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    _mm256_storeu_ps(dst, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  });
}

void f32_to_f16(const float* in, uint16_t* out, size_t n, bool saturate) {
  const __m256i sign = set1(0x80000000u);
  const __m256i inf = set1(kFloatInfBits);
  convert(in, out, n, [&](const float* src, uint16_t* dst) {
    __m256i x = _mm256_castps_si256(_mm256_loadu_ps(src));
    const __m256i ax = _mm256_andnot_si256(sign, x);
    const __m256i sx = _mm256_and_si256(x, sign);
    // NaN becomes the canonical quiet NaN of its sign, which F16C turns into sign | 0x7E00.
    const __m256i nan = _mm256_cmpgt_epi32(ax, inf);
    x = _mm256_blendv_epi8(x, _mm256_or_si256(sx, set1(quant::kNanScaleBits)), nan);
    if (saturate) {
      // Finite values above 65504 round to 65504 (0x7BFF) instead of Inf.
      const __m256i big =
          _mm256_andnot_si256(_mm256_cmpgt_epi32(ax, _mm256_sub_epi32(inf, set1(1))),
                              _mm256_cmpgt_epi32(ax, set1(0x477FE000u)));
      x = _mm256_blendv_epi8(x, _mm256_or_si256(sx, set1(0x477FE000u)), big);
    }
    const __m128i h = _mm256_cvtps_ph(_mm256_castsi256_ps(x), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), h);
  });
}

void f32_to_bf16(const float* in, uint16_t* out, size_t n, bool saturate) {
  const __m256i inf = set1(kFloatInfBits);
  convert(in, out, n, [&](const float* src, uint16_t* dst) {
    const __m256i x = _mm256_castps_si256(_mm256_loadu_ps(src));
    const __m256i ax = _mm256_and_si256(x, set1(quant::kAbsMask));
    const __m256i hi = _mm256_srli_epi32(x, 16);
    const __m256i bias = _mm256_add_epi32(set1(0x7FFF), _mm256_and_si256(hi, set1(1)));
    __m256i h = _mm256_srli_epi32(_mm256_add_epi32(x, bias), 16);
    const __m256i nan = _mm256_cmpgt_epi32(ax, inf);
    h = _mm256_blendv_epi8(h, _mm256_or_si256(hi, set1(0x40)), nan);
    if (saturate) {
      const __m256i to_inf =
          _mm256_andnot_si256(_mm256_cmpgt_epi32(ax, _mm256_sub_epi32(inf, set1(1))),
                              _mm256_cmpeq_epi32(_mm256_and_si256(h, set1(0x7FFF)), set1(0x7F80)));
      h = _mm256_blendv_epi8(
          h, _mm256_or_si256(_mm256_and_si256(h, set1(0x8000)), set1(kBfloatMaxBits)), to_inf);
    }
    // Every lane is at most 0xFFFF, so the saturating pack is a plain narrowing.
    const __m128i v = _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
  });
}

void add_f32(const float* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    for (size_t j = 0; j < 4 * kLanes; j += kLanes)
      _mm256_storeu_ps(out + i + j,
                       _mm256_add_ps(_mm256_loadu_ps(out + i + j), _mm256_loadu_ps(in + i + j)));
  }
  for (; i + kLanes <= n; i += kLanes)
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), _mm256_loadu_ps(in + i)));
  if (i < n) {
    const __m256i mask = first_lanes(n - i);
    _mm256_maskstore_ps(
        out + i, mask,
        _mm256_add_ps(_mm256_maskload_ps(out + i, mask), _mm256_maskload_ps(in + i, mask)));
  }
}

#include "compression/cpu/elementwise_kernels.inc"

}  // namespace

const CpuKernels* avx2_kernels() {
  static const CpuKernels table = {"avx2",     quant_encode, quant_decode, f16_to_f32, bf16_to_f32,
                                   f32_to_f16, f32_to_bf16,  add_f32,      add3_f32,   feedback};
  return &table;
}

}  // namespace gradpack::cpu
