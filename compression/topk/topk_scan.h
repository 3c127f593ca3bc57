// SPDX-License-Identifier: Apache-2.0
// The two hot loops of top-k selection, the streaming pass and the cut, in one function per
// instruction set (scalar, AVX2, AVX-512) that all give the same result.
//
// This header holds declarations only: it is included by files built with SIMD flags, where an
// inline function could be emitted with instructions that the CPU running the program lacks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradpack::topk {

// Candidate indices and keys. They live in the codec's float scratch memory, hence may_alias.
typedef uint64_t __attribute__((__may_alias__)) IndexWord;
typedef uint32_t __attribute__((__may_alias__)) KeyWord;

// The rank key of a value: |v| as an integer bit pattern, NaN and ±Inf sharing the top key.
// key(v) = min(bits(v) & 0x7FFFFFFF, 0x7F800000).
constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kTopKey = 0x7F800000u;

// Scans n elements: v = x[i] + r[i] (v = x[i] when r is null). Every element whose key is >= thr
// is a candidate: (base + i, v, r[i]) is appended to idx/val/old (old only when r is not null).
// Then r[i] = v for every element except a candidate with a NaN or Inf v, whose r[i] stays: most
// elements are not sent, and the few that are get their residual rewritten afterwards.
// Returns the number of candidates written; idx, val and old need room for that many plus 16 (the
// SIMD versions store whole vectors). n < 2^32.
using ScanFn = size_t (*)(const float* x, float* r, size_t n, uint32_t thr, uint64_t base,
                          IndexWord* idx, float* val, float* old);

size_t scan_scalar(const float* x, float* r, size_t n, uint32_t thr, uint64_t base, IndexWord* idx,
                   float* val, float* old);
// Only to be called when cpu::cpu_has_avx2() / cpu::cpu_has_avx512() say so.
size_t scan_avx2(const float* x, float* r, size_t n, uint32_t thr, uint64_t base, IndexWord* idx,
                 float* val, float* old);
size_t scan_avx512(const float* x, float* r, size_t n, uint32_t thr, uint64_t base, IndexWord* idx,
                   float* val, float* old);

// Keeps, in place and in order, the c candidates inside a cut: those whose key is above cut_key,
// and the first `need` whose key equals it. A dropped candidate whose v is NaN or Inf keeps the
// residual the streaming pass left alone: a non-finite value never enters the residual. old may
// be null. Returns the number kept.
using CutFn = size_t (*)(IndexWord* idx, float* val, float* old, size_t c, uint32_t cut_key,
                         uint64_t need);

size_t cut_scalar(IndexWord* idx, float* val, float* old, size_t c, uint32_t cut_key,
                  uint64_t need);
size_t cut_avx512(IndexWord* idx, float* val, float* old, size_t c, uint32_t cut_key,
                  uint64_t need);

// Writes the keys of the c values whose key lies in [lo, hi] to keys, in order, and returns how
// many. keys needs room for that many plus 16 (the SIMD version stores whole vectors).
using GatherFn = size_t (*)(const float* val, size_t c, uint32_t lo, uint32_t hi, KeyWord* keys);

size_t gather_scalar(const float* val, size_t c, uint32_t lo, uint32_t hi, KeyWord* keys);
size_t gather_avx512(const float* val, size_t c, uint32_t lo, uint32_t hi, KeyWord* keys);

// The widest versions this CPU runs, narrowed by GRADPACK_CPU_ISA when that names one.
ScanFn select_scan();
CutFn select_cut();
GatherFn select_gather();

}  // namespace gradpack::topk
