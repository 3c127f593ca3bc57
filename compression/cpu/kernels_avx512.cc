// SPDX-License-Identifier: Apache-2.0
// The AVX-512 kernels (F, BW, VL, DQ, VBMI): 16 values per vector, the same bits as the scalar
// table (kernels_scalar.cc; tests/compression/simd_test.cc checks it).
//
// Quantized encode makes two passes over each block: the first forms v = x + r and finds the
// block's absmax, the second quantizes v, packs the codes and writes the residual. With a
// residual, blocks of 64, 128 and 256 values keep v in registers between the passes, so x and r
// are read once; otherwise the encoder goes a chunk of blocks at a time, reading v again from L1
// and computing the chunk's scales together. Codes of 16 values take 2 * bits bytes and every block
// starts on a byte (blocks are multiples of 8), so packing never crosses a vector. Stores that
// would pass the end of the code stream, and the last partial vector of a block, go through masks
// or a small staging buffer.

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own "undefined" vectors (GCC bug
// 105593); the warning points into the header, so silence it there only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

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

constexpr size_t kLanes = 16;
using Full = std::true_type;   // a whole vector of values
using Part = std::false_type;  // the first k < 16 lanes, under a mask

__mmask16 first_lanes(size_t k) { return static_cast<__mmask16>((1u << k) - 1u); }

__m512i set1(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }

__m512i iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }

// quant::mix32 on 16 lanes.
__m512i mix32(__m512i x) {
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  x = _mm512_mullo_epi32(x, set1(0x7FEB352Du));
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
  x = _mm512_mullo_epi32(x, set1(0x846CA68Bu));
  return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}

template <class F>
GP_INLINE __m512 load_f(const float* p, F, __mmask16 mask) {
  if constexpr (F::value) {
    return _mm512_loadu_ps(p);
  } else {
    return _mm512_maskz_loadu_ps(mask, p);
  }
}

template <class F>
GP_INLINE void store_f(float* p, __m512 v, F, __mmask16 mask) {
  if constexpr (F::value) {
    _mm512_storeu_ps(p, v);
  } else {
    _mm512_mask_storeu_ps(p, mask, v);
  }
}

// ---- code packing: 16 codes (32-bit lanes, each < 2^bits) to 2 * bits bytes, LSB-first ----

// Bytes pack_direct<B> may touch at dst (the generic form stores 16 bytes at dst and at dst +
// bits).
template <int B>
size_t pack_extent(int bits) {
  if constexpr (B == 0) {
    return static_cast<size_t>(bits) + 16;
  } else {
    return 2 * B;
  }
}

template <int B>
GP_INLINE void pack_direct(uint8_t* dst, __m512i c, int bits) {
  if constexpr (B == 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(c));
  } else if constexpr (B == 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtepi32_epi16(c));
  } else if constexpr (B == 4) {
    // Each 64-bit lane: c0 | c1 << 4 in its low byte.
    const __m512i pairs = _mm512_or_si512(c, _mm512_srli_epi64(c, 28));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi64_epi8(pairs));
  } else if constexpr (B == 2) {
    const __m128i bytes = _mm512_cvtepi32_epi8(c);
    const __m128i nib = _mm_maddubs_epi16(bytes, _mm_set1_epi16(0x0401));  // c0 + 4 c1
    const __m128i byte = _mm_madd_epi16(nib, _mm_set1_epi32(0x00100001));  // + 16 (...)
    const uint32_t word = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_cvtepi32_epi8(byte)));
    std::memcpy(dst, &word, 4);
  } else {
    // Pairs into 64-bit lanes (2b bits), pairs of those into the low half of each 128-bit lane
    // (4b <= 64 bits), then the two halves of each group of 8 into 128 bits (8b bits).
    const __m512i w = _mm512_maskz_or_epi32(0x5555, c, _mm512_srli_epi64(c, 32 - bits));
    const __m512i y = _mm512_or_si512(
        w, _mm512_sll_epi64(_mm512_bsrli_epi128(w, 8), _mm_cvtsi32_si128(2 * bits)));
    const __m512i q = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 2, 2, 6, 6), y);
    const __m256i x = _mm512_castsi512_si256(q);         // x0 x1 x2 x3
    const __m256i hi = _mm512_extracti64x4_epi64(q, 1);  // x1 x1 x3 x3
    const long long s = 4 * bits;
    const __m256i lo_part = _mm256_maskz_mov_epi64(0x5, x);  // x0 0 x2 0
    const __m256i up = _mm256_sllv_epi64(hi, _mm256_setr_epi64x(s, 64, s, 64));
    const __m256i down = _mm256_srlv_epi64(hi, _mm256_setr_epi64x(64, 64 - s, 64, 64 - s));
    const __m256i g = _mm256_or_si256(lo_part, _mm256_or_si256(up, down));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(g));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + bits), _mm256_extracti128_si256(g, 1));
  }
}

// Writes the codes of 16 lanes whose first `valid` bytes are wanted, never past `end`. Bytes past
// `valid` but before `end` may be written with junk that the next vector overwrites.
template <int B>
GP_INLINE void pack(uint8_t* dst, __m512i c, size_t valid, size_t extent, const uint8_t* end,
                    int bits) {
  if (static_cast<size_t>(end - dst) >= extent) {
    pack_direct<B>(dst, c, bits);
  } else {
    alignas(64) uint8_t tmp[64];
    pack_direct<B>(tmp, c, bits);
    std::memcpy(dst, tmp, valid);
  }
}

// Runs gen(i, Full/Part, mask) over the m values of one block and packs the codes it returns
// (zero in lanes outside the mask, so pad bits stay zero).
template <int B, class Gen>
GP_INLINE void emit_block(size_t m, int bits, uint8_t* out, const uint8_t* end, Gen&& gen) {
  const size_t ubits = static_cast<size_t>(bits);
  const size_t extent = pack_extent<B>(bits);
  const size_t full = m / kLanes * kLanes;
  size_t i = 0;
  if (full > 0 && static_cast<size_t>(end - out) >= (full - kLanes) / 8 * ubits + extent) {
    // Every whole vector of the block can be stored directly (the usual case).
    for (; i < full; i += kLanes)
      pack_direct<B>(out + i / 8 * ubits, gen(i, Full{}, __mmask16(0xFFFF)), bits);
  } else {
    for (; i < full; i += kLanes)
      pack<B>(out + i / 8 * ubits, gen(i, Full{}, __mmask16(0xFFFF)), 2 * ubits, extent, end, bits);
  }
  if (i < m) {
    const size_t k = m - i;
    pack<B>(out + i / 8 * ubits, gen(i, Part{}, first_lanes(k)), (k * ubits + 7) / 8, extent, end,
            bits);
  }
}

template <bool kRes>
GP_INLINE uint32_t block_absmax(const float* x, const float* r, size_t m) {
  const __m512i abs_mask = set1(quant::kAbsMask);
  auto absbits = [&](size_t i, auto full, __mmask16 mask) {
    __m512 v = load_f(x + i, full, mask);
    if constexpr (kRes) v = _mm512_add_ps(v, load_f(r + i, full, mask));
    return _mm512_and_si512(_mm512_castps_si512(v), abs_mask);
  };
  __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 2 * kLanes <= m; i += 2 * kLanes) {
    a0 = _mm512_max_epu32(a0, absbits(i, Full{}, 0xFFFF));
    a1 = _mm512_max_epu32(a1, absbits(i + kLanes, Full{}, 0xFFFF));
  }
  if (i + kLanes <= m) {
    a0 = _mm512_max_epu32(a0, absbits(i, Full{}, 0xFFFF));
    i += kLanes;
  }
  // Masked-off lanes load as +0 and do not move the max.
  if (i < m) a1 = _mm512_max_epu32(a1, absbits(i, Part{}, first_lanes(m - i)));
  return _mm512_reduce_max_epu32(_mm512_max_epu32(a0, a1));
}

// quant::block_scale for up to 16 blocks at once: the same correctly rounded divisions, so the
// same bits. Writes each block's scale to `scale` and its multiplier to `inv`.
void block_scales(const uint32_t* absmax, size_t count, int bits, float* scale, float* inv) {
  const __m512 l = _mm512_set1_ps(static_cast<float>(quant::levels(bits)));
  for (size_t j = 0; j < count; j += kLanes) {
    const __mmask16 lanes = count - j >= kLanes ? __mmask16(0xFFFF) : first_lanes(count - j);
    const __m512i a = _mm512_maskz_loadu_epi32(lanes, absmax + j);
    const __mmask16 nonfinite = _mm512_cmpge_epu32_mask(a, set1(kFloatInfBits));
    const __mmask16 normal = _mm512_mask_cmpge_epu32_mask(lanes, a, set1(quant::kTinyAbsmaxBits)) &
                             static_cast<__mmask16>(~nonfinite);
    // Only the normal lanes divide (masked lanes raise no flags): tiny blocks get 0 and 0,
    // non-finite ones a NaN scale and inv 0.
    const __m512 af = _mm512_castsi512_ps(a);
    __m512 s = _mm512_maskz_div_ps(normal, af, l);
    s = _mm512_mask_mov_ps(s, nonfinite, _mm512_castsi512_ps(set1(quant::kNanScaleBits)));
    _mm512_mask_storeu_ps(scale + j, lanes, s);
    _mm512_mask_storeu_ps(inv + j, lanes, _mm512_maskz_div_ps(normal, l, af));
  }
}

// One block's quantizer: its multiplier and scale, and where it sits in the stochastic stream.
template <bool kStochastic, bool kRes>
class BlockQuantizer {
 public:
  // For the m values of a block whose first element is element e0 of the stream.
  BlockQuantizer(float scale, float inv, int32_t l, uint32_t key, uint64_t e0, size_t m)
      : inv_(_mm512_set1_ps(inv)),
        scale_(_mm512_set1_ps(scale)),
        l_(_mm512_set1_epi32(l)),
        neg_l_(_mm512_set1_epi32(-l)) {
    if constexpr (kStochastic) {
      // Element e draws mix32(lo32(e) ^ high_key(e)). The high key changes where lo32(e) wraps,
      // at most once in a block (blocks are < 2^32).
      lo0_ = static_cast<uint32_t>(e0);
      wraps_ = lo0_ > UINT32_MAX - static_cast<uint32_t>(m - 1);
      hk0_ = set1(quant::high_key(key, e0));
      hk1_ = set1(quant::high_key(key, e0 + m - 1));
    }
  }

  // The codes of v, values i... of the block (zero outside `mask`); with kRes, stores the
  // residual v - decode(code) to r.
  template <class F>
  GP_INLINE __m512i operator()(__m512 v, size_t i, float* r, F full, __mmask16 mask) const {
    __m512i q;
    if constexpr (kStochastic) {
      const __m512i lo = _mm512_add_epi32(set1(lo0_ + static_cast<uint32_t>(i)), iota());
      __m512i hk = hk0_;
      if (wraps_) hk = _mm512_mask_mov_epi32(hk0_, _mm512_cmplt_epu32_mask(lo, set1(lo0_)), hk1_);
      const __m512i h = _mm512_srli_epi32(mix32(_mm512_xor_si512(lo, hk)), 8);
      const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(h), _mm512_set1_ps(5.9604644775390625e-8f));
      const __m512 t = _mm512_add_ps(_mm512_mul_ps(v, inv_), u);
      q = _mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      q = _mm512_min_epi32(_mm512_max_epi32(q, neg_l_), l_);
    } else {
      q = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv_));  // MXCSR rounding, as nearbyint
    }
    if constexpr (kRes) {
      const __m512 d = _mm512_mul_ps(_mm512_cvtepi32_ps(q), scale_);
      store_f(r, _mm512_sub_ps(v, d), full, mask);
    }
    if constexpr (F::value) {
      return _mm512_add_epi32(q, l_);
    } else {
      return _mm512_maskz_add_epi32(mask, q, l_);
    }
  }

 private:
  __m512 inv_, scale_;
  __m512i l_, neg_l_;
  uint32_t lo0_ = 0;
  bool wraps_ = false;
  __m512i hk0_ = _mm512_setzero_si512(), hk1_ = _mm512_setzero_si512();
};

// Values per chunk in the general encoder: it finds the absmax of every block of a chunk, then
// the scales of all of them, then quantizes the chunk, which is still in L1. Batching the scales
// keeps their divisions off the path between a block's two passes.
constexpr size_t kChunk = 2048;
constexpr size_t kMaxChunkBlocks = kChunk / 8;

// A prefetch never faults, so it may point past the end of the arrays (computed as an integer,
// which is not a pointer out of bounds).
GP_INLINE void prefetch_ahead(const float* p, size_t values) {
  _mm_prefetch(
      reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + values * sizeof(float)),
      _MM_HINT_T0);
}

// The general encoder: any block size, any n. Returns the number of non-finite blocks.
template <int B, bool kStochastic, bool kRes>
size_t encode_chunked(const float* x, float* r, size_t n, uint64_t first, const QuantParams& p,
                      float* scales, uint8_t* codes, const uint8_t* end) {
  const int bits = B != 0 ? B : p.bits;
  const size_t ubits = static_cast<size_t>(bits);
  const int32_t l = quant::levels(bits);
  const size_t block = p.block;
  const size_t chunk_blocks = std::max<size_t>(1, kChunk / block);
  const __m512i vl = _mm512_set1_epi32(l);
  alignas(64) uint32_t absmax[kMaxChunkBlocks];
  alignas(64) float inv[kMaxChunkBlocks];
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
        emit_block<B>(m, bits, out, end, [&](size_t, auto, __mmask16 mask) {
          return _mm512_maskz_mov_epi32(mask, vl);
        });
        continue;
      }
      const BlockQuantizer<kStochastic, kRes> quantizer(scales[blk0 + j], inv[j], l, p.key,
                                                        first + b0, m);
      emit_block<B>(m, bits, out, end, [&](size_t i, auto full, __mmask16 mask) {
        // Fetch the next chunk while this one is quantized from L1, so that the memory system
        // keeps streaming between the passes.
        prefetch_ahead(xb + i, kChunk);
        if constexpr (kRes) prefetch_ahead(rb + i, kChunk);
        __m512 v = load_f(xb + i, full, mask);
        if constexpr (kRes) v = _mm512_add_ps(v, load_f(rb + i, full, mask));
        return quantizer(v, i, kRes ? rb + i : nullptr, full, mask);
      });
    }
  }
  return nonfinite;
}

// How far ahead the register encoder prefetches x and r (4 KiB each): measured best on Zen 5 for
// buffers far larger than L3; without it a single thread leaves DRAM a third idle.
constexpr size_t kPrefetchValues = 1024;

// Whole blocks of kVecs * 16 values (64, 128 or 256), each held in registers between its two
// passes, so x and r are read once. Returns the number of non-finite blocks.
template <int kVecs, int B, bool kStochastic, bool kRes>
size_t encode_in_registers(const float* x, float* r, size_t nblocks, uint64_t first,
                           const QuantParams& p, float* scales, uint8_t* codes,
                           const uint8_t* end) {
  constexpr size_t kBlock = kVecs * kLanes;
  const int bits = B != 0 ? B : p.bits;
  const size_t ubits = static_cast<size_t>(bits);
  const int32_t l = quant::levels(bits);
  const size_t extent = pack_extent<B>(bits);
  const __m512i abs_mask = set1(quant::kAbsMask);
  size_t nonfinite = 0;
  for (size_t blk = 0; blk < nblocks; ++blk) {
    const float* xb = x + blk * kBlock;
    float* rb = kRes ? r + blk * kBlock : nullptr;
    uint8_t* out = codes + blk * kBlock / 8 * ubits;
    __m512 v[kVecs];
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) {
      prefetch_ahead(xb + j * kLanes, kPrefetchValues);
      if constexpr (kRes) prefetch_ahead(rb + j * kLanes, kPrefetchValues);
      v[j] = _mm512_loadu_ps(xb + j * kLanes);
      if constexpr (kRes) v[j] = _mm512_add_ps(v[j], _mm512_loadu_ps(rb + j * kLanes));
      const __m512i a = _mm512_and_si512(_mm512_castps_si512(v[j]), abs_mask);
      if (j % 2 == 0) {
        a0 = _mm512_max_epu32(a0, a);
      } else {
        a1 = _mm512_max_epu32(a1, a);
      }
    }
    const quant::BlockScale s =
        quant::block_scale(_mm512_reduce_max_epu32(_mm512_max_epu32(a0, a1)), bits);
    scales[blk] = s.scale;
    // The last block's stores may need to stop exactly at the end of the codes.
    const bool direct = static_cast<size_t>(end - out) >= (kBlock - kLanes) / 8 * ubits + extent;
    auto put = [&](int j, __m512i c) {
      uint8_t* dst = out + j * 2 * ubits;
      if (direct) {
        pack_direct<B>(dst, c, bits);
      } else {
        pack<B>(dst, c, 2 * ubits, extent, end, bits);
      }
    };
    if (!s.finite) {
      ++nonfinite;
      for (int j = 0; j < kVecs; ++j) put(j, _mm512_set1_epi32(l));
      continue;
    }
    const BlockQuantizer<kStochastic, kRes> quantizer(s.scale, s.inv, l, p.key,
                                                      first + blk * kBlock, kBlock);
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j)
      put(j, quantizer(v[j], j * kLanes, kRes ? rb + j * kLanes : nullptr, Full{}, 0xFFFF));
  }
  return nonfinite;
}

template <int B, bool kStochastic, bool kRes>
size_t quant_encode_t(const float* x, float* r, size_t n, uint64_t first, const QuantParams& p,
                      float* scales, uint8_t* codes) {
  const size_t ubits = static_cast<size_t>(B != 0 ? B : p.bits);
  const uint8_t* end = codes + (n * ubits + 7) / 8;
  const size_t whole = n / p.block;
  size_t done = 0, nonfinite = 0;
  // Registers pay off when there is a residual (x and r read once instead of twice); without one
  // the chunked form streams better from DRAM (measured on Zen 5: 1.5x against 1.15x memcpy).
  switch (kRes ? p.block : 0) {
    case 64:
      nonfinite =
          encode_in_registers<4, B, kStochastic, kRes>(x, r, whole, first, p, scales, codes, end);
      done = whole * p.block;
      break;
    case 128:
      nonfinite =
          encode_in_registers<8, B, kStochastic, kRes>(x, r, whole, first, p, scales, codes, end);
      done = whole * p.block;
      break;
    case 256:
      nonfinite =
          encode_in_registers<16, B, kStochastic, kRes>(x, r, whole, first, p, scales, codes, end);
      done = whole * p.block;
      break;
    default:
      break;
  }
  if (done == n) return nonfinite;
  return nonfinite + encode_chunked<B, kStochastic, kRes>(
                         x + done, kRes ? r + done : nullptr, n - done, first + done, p,
                         scales + done / p.block, codes + done / 8 * ubits, end);
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

// ---- decode: 2 * bits bytes to 16 codes ----

// Bytes unpack_direct<B> reads at src.
template <int B>
size_t unpack_extent(int bits) {
  if constexpr (B == 0) {
    (void)bits;
    return 32;
  } else {
    return 2 * B;
  }
}

template <int B>
GP_INLINE __m512i unpack_direct(const uint8_t* src, int bits) {
  if constexpr (B == 8) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
  } else if constexpr (B == 16) {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
  } else if constexpr (B == 4) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src));
    const __m512i w = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));  // each byte twice
    const __m512i sh = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    return _mm512_and_si512(_mm512_srlv_epi32(w, sh), set1(0xF));
  } else if constexpr (B == 2) {
    uint32_t word;
    std::memcpy(&word, src, 4);
    const __m128i b =
        _mm_shuffle_epi8(_mm_cvtsi32_si128(static_cast<int>(word)),
                         _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
    const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6);
    return _mm512_and_si512(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(b), sh), set1(0x3));
  } else {
    const simd::CodeGather& g = simd::kGather64[bits];
    const __m512i bytes =
        _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
    const __m512i win = _mm512_permutexvar_epi8(_mm512_load_si512(g.index), bytes);
    const __m512i code = _mm512_srlv_epi32(win, _mm512_load_si512(g.shift));
    return _mm512_and_si512(code, set1((1u << bits) - 1u));
  }
}

template <int B>
GP_INLINE __m512i unpack(const uint8_t* src, size_t valid, size_t extent, const uint8_t* end,
                         int bits) {
  if (static_cast<size_t>(end - src) >= extent) return unpack_direct<B>(src, bits);
  alignas(64) uint8_t tmp[64] = {};
  std::memcpy(tmp, src, valid);
  return unpack_direct<B>(tmp, bits);
}

template <int B, bool kAccumulate>
void quant_decode_t(const float* scales, const uint8_t* codes, size_t n, const QuantParams& p,
                    float* out) {
  const int bits = B != 0 ? B : p.bits;
  const __m512i vl = _mm512_set1_epi32(quant::levels(bits));
  const size_t block = p.block;
  const uint8_t* end = codes + (n * static_cast<size_t>(bits) + 7) / 8;
  const size_t extent = unpack_extent<B>(bits);
  const size_t bytes = 2 * static_cast<size_t>(bits);
  for (size_t b0 = 0, blk = 0; b0 < n; b0 += block, ++blk) {
    const size_t m = std::min(block, n - b0);
    const uint8_t* in = codes + b0 / 8 * static_cast<size_t>(bits);
    float* o = out + b0;
    const __m512 scale = _mm512_set1_ps(scales[blk]);
    auto value = [&](__m512i c) {
      return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c, vl)), scale);
    };
    size_t i = 0;
    for (; i + kLanes <= m; i += kLanes) {
      __m512 d = value(unpack<B>(in + i / 8 * bits, bytes, extent, end, bits));
      if constexpr (kAccumulate) d = _mm512_add_ps(_mm512_loadu_ps(o + i), d);
      _mm512_storeu_ps(o + i, d);
    }
    if (i < m) {
      const size_t k = m - i;
      const __mmask16 mask = first_lanes(k);
      __m512 d = value(unpack<B>(in + i / 8 * bits, (k * bits + 7) / 8, extent, end, bits));
      if constexpr (kAccumulate) d = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o + i), d);
      _mm512_mask_storeu_ps(o + i, mask, d);
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

// ---- 16-bit conversions ----

// Runs body(i, Full/Part, mask) over n elements, 16 at a time.
template <class Body>
void for_lanes(size_t n, Body&& body) {
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) body(i, Full{}, __mmask16(0xFFFF));
  if (i < n) body(i, Part{}, first_lanes(n - i));
}

template <class F>
__m256i load_h(const uint16_t* p, F, __mmask16 mask) {
  if constexpr (F::value) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  } else {
    return _mm256_maskz_loadu_epi16(mask, p);
  }
}

template <class F>
void store_h(uint16_t* p, __m256i h, F, __mmask16 mask) {
  if constexpr (F::value) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
  } else {
    _mm256_mask_storeu_epi16(p, mask, h);
  }
}

void f16_to_f32(const uint16_t* in, float* out, size_t n) {
  for_lanes(n, [&](size_t i, auto full, __mmask16 mask) {
    const __m256i h = load_h(in + i, full, mask);
    __m512 f = _mm512_cvtph_ps(h);
    // Inf and NaN bit for bit as the reference writes them, whatever F16C does to NaN payloads.
    const __m512i w = _mm512_cvtepu16_epi32(h);
    const __mmask16 special =
        _mm512_cmpeq_epi32_mask(_mm512_and_si512(w, set1(0x7C00)), set1(0x7C00));
    const __m512i bits = _mm512_or_si512(
        _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(w, set1(0x8000)), 16), set1(0x70000000)),
        _mm512_slli_epi32(_mm512_and_si512(w, set1(0x7FFF)), 13));
    f = _mm512_mask_mov_ps(f, special, _mm512_castsi512_ps(bits));
    store_f(out + i, f, full, mask);
  });
}

void bf16_to_f32(const uint16_t* in, float* out, size_t n) {
  for_lanes(n, [&](size_t i, auto full, __mmask16 mask) {
    const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(load_h(in + i, full, mask)), 16);
    store_f(out + i, _mm512_castsi512_ps(w), full, mask);
  });
}

void f32_to_f16(const float* in, uint16_t* out, size_t n, bool saturate) {
  const __m512i sign = set1(0x80000000u);
  for_lanes(n, [&](size_t i, auto full, __mmask16 mask) {
    __m512i x = _mm512_castps_si512(load_f(in + i, full, mask));
    const __m512i ax = _mm512_andnot_si512(sign, x);
    const __m512i sx = _mm512_and_si512(x, sign);
    // NaN becomes the canonical quiet NaN of its sign, which F16C turns into sign | 0x7E00.
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(ax, set1(kFloatInfBits));
    x = _mm512_mask_or_epi32(x, nan, sx, set1(quant::kNanScaleBits));
    if (saturate) {
      // Finite values above 65504 round to 65504 (0x7BFF) instead of Inf.
      const __mmask16 big = _mm512_cmpgt_epu32_mask(ax, set1(0x477FE000u)) &
                            _mm512_cmplt_epu32_mask(ax, set1(kFloatInfBits));
      x = _mm512_mask_or_epi32(x, big, sx, set1(0x477FE000u));
    }
    const __m256i h = _mm512_cvtps_ph(_mm512_castsi512_ps(x), _MM_FROUND_TO_NEAREST_INT);
    store_h(out + i, h, full, mask);
  });
}

void f32_to_bf16(const float* in, uint16_t* out, size_t n, bool saturate) {
  for_lanes(n, [&](size_t i, auto full, __mmask16 mask) {
    const __m512i x = _mm512_castps_si512(load_f(in + i, full, mask));
    const __m512i ax = _mm512_and_si512(x, set1(quant::kAbsMask));
    const __m512i hi = _mm512_srli_epi32(x, 16);
    const __m512i bias = _mm512_add_epi32(set1(0x7FFF), _mm512_and_si512(hi, set1(1)));
    __m512i h = _mm512_srli_epi32(_mm512_add_epi32(x, bias), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(ax, set1(kFloatInfBits));
    h = _mm512_mask_or_epi32(h, nan, hi, set1(0x40));
    if (saturate) {
      const __mmask16 inf =
          _mm512_cmpeq_epi32_mask(_mm512_and_si512(h, set1(0x7FFF)), set1(0x7F80)) &
          _mm512_cmplt_epu32_mask(ax, set1(kFloatInfBits));
      h = _mm512_mask_or_epi32(h, inf, _mm512_and_si512(h, set1(0x8000)), set1(kBfloatMaxBits));
    }
    store_h(out + i, _mm512_cvtepi32_epi16(h), full, mask);
  });
}

void add_f32(const float* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    for (size_t j = 0; j < 4 * kLanes; j += kLanes)
      _mm512_storeu_ps(out + i + j,
                       _mm512_add_ps(_mm512_loadu_ps(out + i + j), _mm512_loadu_ps(in + i + j)));
  }
  for_lanes(n - i, [&](size_t j, auto full, __mmask16 mask) {
    store_f(out + i + j,
            _mm512_add_ps(load_f(out + i + j, full, mask), load_f(in + i + j, full, mask)), full,
            mask);
  });
}

#include "compression/cpu/elementwise_kernels.inc"

}  // namespace

const CpuKernels* avx512_kernels() {
  static const CpuKernels table = {"avx512",   quant_encode, quant_decode, f16_to_f32, bf16_to_f32,
                                   f32_to_f16, f32_to_bf16,  add_f32,      add3_f32,   feedback};
  return &table;
}

}  // namespace gradpack::cpu
