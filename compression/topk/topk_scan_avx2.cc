// SPDX-License-Identifier: Apache-2.0
// The streaming pass of top-k with AVX2 (built with -mavx2; called only when the CPU has it). It
// has the structure of the AVX-512 pass (topk_scan_avx512.cc), with two 8-lane halves per 16
// elements and candidates unpacked lane by lane.
#include <immintrin.h>

#include <algorithm>

#include "compression/topk/topk_scan.h"

namespace gradpack::topk {
namespace {

// Elements [begin, end) one at a time, appending after the c candidates so far.
size_t scan_elements(const float* x, float* r, size_t begin, size_t end, uint32_t thr,
                     uint64_t base, IndexWord* idx, float* val, float* old, size_t c) {
  for (size_t i = begin; i < end; ++i) {
    const float v = r != nullptr ? x[i] + r[i] : x[i];
    uint32_t key;
    __builtin_memcpy(&key, &v, sizeof key);
    key &= kAbsMask;
    key = key < kTopKey ? key : kTopKey;
    if (key >= thr) {
      idx[c] = base + i;
      val[c] = v;
      if (r != nullptr) old[c] = r[i];
      ++c;
    }
    if (r != nullptr && !(key == kTopKey && key >= thr)) r[i] = v;
  }
  return c;
}

struct Consts {
  __m256i abs_mask = _mm256_set1_epi32(static_cast<int>(kAbsMask));
  // Keys and |v| bits are below 2^31 as signed integers: |v| bits > thr - 1 is key >= thr for
  // thr <= kTopKey (thr - 1 is -1 for thr = 0); a larger thr admits nothing.
  __m256i below;
  __m256i top_below = _mm256_set1_epi32(static_cast<int>(kTopKey - 1));
  explicit Consts(uint32_t thr)
      : below(_mm256_set1_epi32(thr <= kTopKey ? static_cast<int>(thr) - 1 : 0x7FFFFFFF)) {}
};

inline __m256i abs_bits(const Consts& k, __m256 v) {
  return _mm256_and_si256(_mm256_castps_si256(v), k.abs_mask);
}

// The lanes of 16 values whose |v| bits pass `limit` (bit j: element j).
inline unsigned above(__m256i bits0, __m256i bits1, __m256i limit) {
  const unsigned m0 = static_cast<unsigned>(
      _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(bits0, limit))));
  const unsigned m1 = static_cast<unsigned>(
      _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(bits1, limit))));
  return m0 | m1 << 8;
}

// Groups of 64 runs of 16 elements: a first loop with no data-dependent branch sets r = v, sets
// the residual from before aside and notes the runs that hold a candidate; a second visits just
// those, still in L1. r + 0 is 32-byte aligned (the caller peels to it).
size_t scan_residual(const float* x, float* r, size_t n, uint32_t thr, uint64_t base,
                     IndexWord* idx, float* val, float* old) {
  const Consts k(thr);
  alignas(32) float group_prev[64 * 16];
  alignas(32) float lanes[16];
  size_t c = 0;
  for (size_t i0 = 0; i0 < n; i0 += 64 * 16) {
    const size_t runs = std::min<size_t>(64, (n - i0) / 16);
    uint64_t marked = 0;
    for (size_t j = 0; j < runs; ++j) {
      const size_t i = i0 + 16 * j;
      const __m256 p0 = _mm256_load_ps(r + i);
      const __m256 p1 = _mm256_load_ps(r + i + 8);
      const __m256 v0 = _mm256_add_ps(_mm256_loadu_ps(x + i), p0);
      const __m256 v1 = _mm256_add_ps(_mm256_loadu_ps(x + i + 8), p1);
      _mm256_store_ps(group_prev + 16 * j, p0);
      _mm256_store_ps(group_prev + 16 * j + 8, p1);
      _mm256_store_ps(r + i, v0);
      _mm256_store_ps(r + i + 8, v1);
      const unsigned m = above(abs_bits(k, v0), abs_bits(k, v1), k.below);
      marked |= static_cast<uint64_t>(m != 0) << j;
    }
    while (marked != 0) {
      const size_t j = static_cast<size_t>(__builtin_ctzll(marked));
      marked &= marked - 1;
      const size_t i = i0 + 16 * j;
      const __m256 v0 = _mm256_load_ps(r + i);
      const __m256 v1 = _mm256_load_ps(r + i + 8);
      const __m256i b0 = abs_bits(k, v0), b1 = abs_bits(k, v1);
      unsigned m = above(b0, b1, k.below);
      // A candidate with NaN or Inf keeps its residual.
      unsigned nonfinite = m & above(b0, b1, k.top_below);
      _mm256_store_ps(lanes, v0);
      _mm256_store_ps(lanes + 8, v1);
      const float* prev = group_prev + 16 * j;
      for (; nonfinite != 0; nonfinite &= nonfinite - 1) {
        const unsigned e = static_cast<unsigned>(__builtin_ctz(nonfinite));
        r[i + e] = prev[e];
      }
      for (; m != 0; m &= m - 1) {
        const unsigned e = static_cast<unsigned>(__builtin_ctz(m));
        idx[c] = base + i + e;
        val[c] = lanes[e];
        old[c] = prev[e];
        ++c;
      }
    }
  }
  return c;
}

// Without a residual: the same groups, reading x only.
size_t scan_input(const float* x, size_t n, uint32_t thr, uint64_t base, IndexWord* idx,
                  float* val) {
  const Consts k(thr);
  alignas(32) float lanes[16];
  size_t c = 0;
  for (size_t i0 = 0; i0 < n; i0 += 64 * 16) {
    const size_t runs = std::min<size_t>(64, (n - i0) / 16);
    uint64_t marked = 0;
    for (size_t j = 0; j < runs; ++j) {
      const size_t i = i0 + 16 * j;
      const unsigned m = above(abs_bits(k, _mm256_loadu_ps(x + i)),
                               abs_bits(k, _mm256_loadu_ps(x + i + 8)), k.below);
      marked |= static_cast<uint64_t>(m != 0) << j;
    }
    while (marked != 0) {
      const size_t i = i0 + 16 * static_cast<size_t>(__builtin_ctzll(marked));
      marked &= marked - 1;
      const __m256 v0 = _mm256_loadu_ps(x + i);
      const __m256 v1 = _mm256_loadu_ps(x + i + 8);
      unsigned m = above(abs_bits(k, v0), abs_bits(k, v1), k.below);
      _mm256_store_ps(lanes, v0);
      _mm256_store_ps(lanes + 8, v1);
      for (; m != 0; m &= m - 1) {
        const unsigned e = static_cast<unsigned>(__builtin_ctz(m));
        idx[c] = base + i + e;
        val[c] = lanes[e];
        ++c;
      }
    }
  }
  return c;
}

}  // namespace

size_t scan_avx2(const float* x, float* r, size_t n, uint32_t thr, uint64_t base, IndexWord* idx,
                 float* val, float* old) {
  // Whole runs start where the written (or else the read) array is 32-byte aligned.
  const uintptr_t anchor = reinterpret_cast<uintptr_t>(r != nullptr ? r : x);
  const size_t head = std::min<size_t>(n, (32 - anchor % 32) % 32 / sizeof(float));
  const size_t body = (n - head) / 16 * 16;
  size_t c = scan_elements(x, r, 0, head, thr, base, idx, val, old, 0);
  c += r != nullptr
           ? scan_residual(x + head, r + head, body, thr, base + head, idx + c, val + c, old + c)
           : scan_input(x + head, body, thr, base + head, idx + c, val + c);
  // Clean upper register halves for the caller's SSE code (see topk_scan_avx512.cc).
  _mm256_zeroupper();
  return scan_elements(x, r, head + body, n, thr, base, idx, val, old, c);
}

}  // namespace gradpack::topk
