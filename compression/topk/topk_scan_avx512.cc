// SPDX-License-Identifier: Apache-2.0
// The streaming pass of top-k with AVX-512 (built with -mavx512f and friends; called only when
// the CPU has them). Candidates are packed with a register compress and a whole-vector store,
// which is fast on every AVX-512 CPU (a compress straight to memory is slow on some).

// GCC 12 warns that the intrinsics' own _mm512_undefined_* placeholders "may be used
// uninitialized"; they are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>

#include "compression/topk/topk_scan.h"

namespace gradpack::topk {
namespace {

struct Consts {
  __m512i abs_mask = _mm512_set1_epi32(static_cast<int>(kAbsMask));
  __m512i top = _mm512_set1_epi32(static_cast<int>(kTopKey));
  __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // key(v) >= thr is |v|'s bits >= thr, as thr <= kTopKey; a larger thr admits nothing.
  __m512i t;
  __m512i base;
  Consts(uint32_t thr, uint64_t base64)
      : t(_mm512_set1_epi32(static_cast<int>(thr <= kTopKey ? thr : 0xFFFFFFFFu))),
        base(_mm512_set1_epi64(static_cast<long long>(base64))) {}
};

inline __m512i abs_bits(const Consts& k, __m512 v) {
  return _mm512_and_si512(_mm512_castps_si512(v), k.abs_mask);
}

inline __m512i key_of(const Consts& k, __m512 v) { return _mm512_min_epu32(abs_bits(k, v), k.top); }

// Appends the lanes of m: v, their residual from before (when old is not null) and index.
inline size_t emit(const Consts& k, __mmask16 m, __m512 v, __m512 prev, size_t i, IndexWord* idx,
                   float* val, float* old, size_t c) {
  _mm512_storeu_ps(val + c, _mm512_maskz_compress_ps(m, v));
  if (old != nullptr) _mm512_storeu_ps(old + c, _mm512_maskz_compress_ps(m, prev));
  const __m512i local = _mm512_maskz_compress_epi32(
      m, _mm512_add_epi32(k.lanes, _mm512_set1_epi32(static_cast<int>(i))));
  const __m512i lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(local));
  const __m512i hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(local, 1));
  _mm512_storeu_si512(idx + c, _mm512_add_epi64(lo, k.base));
  _mm512_storeu_si512(idx + c + 8, _mm512_add_epi64(hi, k.base));
  return c + static_cast<size_t>(__builtin_popcount(m));
}

// Groups of 64 vectors (4 KiB of x). A first loop streams a group with no data-dependent
// branch: v = x + r, r = v stored in every lane that is not a candidate (a masked store), and
// the mask of each vector set aside. The candidates' lanes of r keep the residual from before,
// so nothing is copied aside (a buffer of those residuals on the stack cost up to a third more:
// its stores and the streaming loads can alias in the low address bits). A second loop visits
// just the vectors that hold a candidate, still in L1: v = x + r again (the same sum, bit for
// bit), packed with the residual from before, and r = v stored in their lanes except where v is
// NaN or Inf. A branch per vector would mispredict often: at 1 % density about one vector in
// five holds a candidate. r + 0 is 64-byte aligned (the caller peels to it): a vector that
// straddles two cache lines makes the read-modify-write of r about a third slower.
size_t scan_residual(const float* x, float* r, size_t n, const Consts& consts, IndexWord* idx,
                     float* val, float* old) {
  const Consts k = consts;  // a local copy stays in registers (stores could alias the original)
  alignas(64) uint16_t masks[64];
  size_t c = 0;
  for (size_t i0 = 0; i0 < n; i0 += 64 * 16) {
    const size_t vectors = std::min<size_t>(64, (n - i0) / 16);
    // Two vectors per step (vectors is even but for the last group of a call).
    size_t j = 0;
    for (; j + 2 <= vectors; j += 2) {
      const size_t i = i0 + 16 * j;
      const __m512 v0 = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_load_ps(r + i));
      const __m512 v1 = _mm512_add_ps(_mm512_loadu_ps(x + i + 16), _mm512_load_ps(r + i + 16));
      const __mmask16 m0 = _mm512_cmpge_epu32_mask(abs_bits(k, v0), k.t);
      const __mmask16 m1 = _mm512_cmpge_epu32_mask(abs_bits(k, v1), k.t);
      _mm512_mask_store_ps(r + i, _knot_mask16(m0), v0);
      _mm512_mask_store_ps(r + i + 16, _knot_mask16(m1), v1);
      masks[j] = m0;
      masks[j + 1] = m1;
    }
    for (; j < vectors; ++j) {
      const size_t i = i0 + 16 * j;
      const __m512 v = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_load_ps(r + i));
      const __mmask16 m = _mm512_cmpge_epu32_mask(abs_bits(k, v), k.t);
      _mm512_mask_store_ps(r + i, _knot_mask16(m), v);
      masks[j] = m;
    }
    for (; j < 64; ++j) masks[j] = 0;
    // A bit for each vector with a candidate.
    const __m512i w0 = _mm512_load_si512(masks);
    const __m512i w1 = _mm512_load_si512(masks + 32);
    uint64_t marked = static_cast<uint64_t>(_mm512_test_epi16_mask(w0, w0)) |
                      static_cast<uint64_t>(_mm512_test_epi16_mask(w1, w1)) << 32;
    while (marked != 0) {
      const size_t at = static_cast<size_t>(__builtin_ctzll(marked));
      marked &= marked - 1;
      const size_t i = i0 + 16 * at;
      const __mmask16 m = masks[at];
      const __m512 prev = _mm512_maskz_load_ps(m, r + i);
      const __m512 v = _mm512_maskz_add_ps(m, _mm512_maskz_loadu_ps(m, x + i), prev);
      // A candidate with NaN or Inf keeps its residual.
      const __mmask16 nonfinite = _mm512_mask_cmpge_epu32_mask(m, abs_bits(k, v), k.top);
      _mm512_mask_store_ps(r + i, static_cast<__mmask16>(m & ~nonfinite), v);
      c = emit(k, m, v, prev, i, idx, val, old, c);
    }
  }
  return c;
}

// Without a residual: the same groups, reading x only.
size_t scan_input(const float* x, size_t n, const Consts& consts, IndexWord* idx, float* val) {
  const Consts k = consts;
  size_t c = 0;
  for (size_t i0 = 0; i0 + 16 <= n; i0 += 64 * 16) {
    const size_t vectors = (n - i0) / 16 < 64 ? (n - i0) / 16 : 64;
    uint64_t marked = 0;
    for (size_t j = 0; j < vectors; ++j) {
      const __m512 v = _mm512_loadu_ps(x + i0 + 16 * j);
      const __mmask16 m = _mm512_cmpge_epu32_mask(abs_bits(k, v), k.t);
      marked |= static_cast<uint64_t>(m != 0) << j;
    }
    while (marked != 0) {
      const size_t i = i0 + 16 * static_cast<size_t>(__builtin_ctzll(marked));
      marked &= marked - 1;
      const __m512 v = _mm512_loadu_ps(x + i);
      const __mmask16 m = _mm512_cmpge_epu32_mask(abs_bits(k, v), k.t);
      c = emit(k, m, v, v, i, idx, val, nullptr, c);
    }
  }
  return c;
}

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

}  // namespace

size_t scan_avx512(const float* x, float* r, size_t n, uint32_t thr, uint64_t base, IndexWord* idx,
                   float* val, float* old) {
  // Whole vectors start where the written (or else the read) array is 64-byte aligned: a vector
  // that straddles two cache lines costs about a third more on the streaming pass.
  const uintptr_t anchor = reinterpret_cast<uintptr_t>(r != nullptr ? r : x);
  const size_t head = std::min<size_t>(n, (64 - anchor % 64) % 64 / sizeof(float));
  const size_t body = (n - head) / 16 * 16;
  size_t c = scan_elements(x, r, 0, head, thr, base, idx, val, old, 0);
  const Consts k(thr, base + head);
  const float* xb = x + head;
  c += r != nullptr ? scan_residual(xb, r + head, body, k, idx + c, val + c, old + c)
                    : scan_input(xb, body, k, idx + c, val + c);
  // The compiler leaves the upper halves of the vector registers dirty when the function ends in
  // a call: then every SSE instruction of the caller (built for plain x86-64) waits on the merge
  // of its register's upper bits, which made the cut after the scan five times slower.
  _mm256_zeroupper();
  return scan_elements(x, r, head + body, n, thr, base, idx, val, old, c);
}

size_t cut_avx512(IndexWord* idx, float* val, float* old, size_t c, uint32_t cut_key,
                  uint64_t need) {
  const Consts k(cut_key, 0);
  size_t out = 0;
  size_t i = 0;
  // Each vector is loaded before anything is stored, and out <= i: the stores only overwrite
  // candidates already read.
  for (; i + 16 <= c; i += 16) {
    const __m512 v = _mm512_loadu_ps(val + i);
    const __m512i key = key_of(k, v);
    const __mmask16 above = _mm512_cmpgt_epu32_mask(key, k.t);
    const uint32_t ties = _mm512_cmpeq_epu32_mask(key, k.t);
    // The first `need` ties, lowest index first.
    const uint32_t tie_count = static_cast<uint32_t>(__builtin_popcount(ties));
    const uint32_t taken =
        need >= tie_count ? ties : _pdep_u32((1u << static_cast<unsigned>(need)) - 1, ties);
    need -= static_cast<uint64_t>(__builtin_popcount(taken));
    const __mmask16 keep = static_cast<__mmask16>(above | taken);
    const __m512i lo = _mm512_loadu_si512(idx + i);
    const __m512i hi = _mm512_loadu_si512(idx + i + 8);
    __m512 prev = _mm512_setzero_ps();
    if (old != nullptr) prev = _mm512_loadu_ps(old + i);
    const __mmask8 keep_lo = static_cast<__mmask8>(keep);
    const __mmask8 keep_hi = static_cast<__mmask8>(keep >> 8);
    const size_t n_lo = static_cast<size_t>(__builtin_popcount(keep_lo));
    _mm512_storeu_ps(val + out, _mm512_maskz_compress_ps(keep, v));
    if (old != nullptr) _mm512_storeu_ps(old + out, _mm512_maskz_compress_ps(keep, prev));
    _mm512_storeu_si512(idx + out, _mm512_maskz_compress_epi64(keep_lo, lo));
    _mm512_storeu_si512(idx + out + n_lo, _mm512_maskz_compress_epi64(keep_hi, hi));
    out += static_cast<size_t>(__builtin_popcount(keep));
  }
  for (; i < c; ++i) {
    uint32_t key;
    __builtin_memcpy(&key, val + i, sizeof key);
    key &= kAbsMask;
    key = key < kTopKey ? key : kTopKey;
    const bool tie = key == cut_key && need > 0;
    need -= tie;
    const bool keep = key > cut_key || tie;
    const uint64_t index = idx[i];
    const float v = val[i];
    idx[out] = index;
    val[out] = v;
    if (old != nullptr) old[out] = old[i];
    out += keep;
  }
  return out;
}

size_t gather_avx512(const float* val, size_t c, uint32_t lo, uint32_t hi, KeyWord* keys) {
  const Consts k(0, 0);
  const __m512i vlo = _mm512_set1_epi32(static_cast<int>(lo));
  const __m512i vhi = _mm512_set1_epi32(static_cast<int>(hi));
  size_t m = 0;
  size_t i = 0;
  for (; i + 16 <= c; i += 16) {
    const __m512i key = key_of(k, _mm512_loadu_ps(val + i));
    const __mmask16 in = _mm512_mask_cmple_epu32_mask(_mm512_cmpge_epu32_mask(key, vlo), key, vhi);
    _mm512_storeu_si512(keys + m, _mm512_maskz_compress_epi32(in, key));
    m += static_cast<size_t>(__builtin_popcount(in));
  }
  for (; i < c; ++i) {
    uint32_t key;
    __builtin_memcpy(&key, val + i, sizeof key);
    key &= kAbsMask;
    key = key < kTopKey ? key : kTopKey;
    keys[m] = key;
    m += key >= lo && key <= hi;
  }
  return m;
}

}  // namespace gradpack::topk
