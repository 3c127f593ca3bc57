// SPDX-License-Identifier: Apache-2.0
// CPU kernels behind the codecs, in one table per instruction set: scalar (the reference),
// AVX2 and AVX-512. The table is chosen once, at run time, from the CPU and GRADPACK_CPU_ISA; no
// file is built with -march=native, so one binary runs everywhere.
//
// Every kernel of a SIMD table gives the same bits as the scalar one (tests/compression/simd_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace gradpack::cpu {

struct QuantParams {
  int bits = 8;
  uint32_t block = 256;
  bool stochastic = false;
  uint32_t key = 0;  // quant::stream_key() of this encode call
};

struct CpuKernels {
  const char* name;

  // Encodes n values v = x + r (v = x when r is null) that start at element `first` of the stream
  // (first is a multiple of p.block; it positions the stochastic-rounding stream). Writes
  // ceil(n / block) scales and ceil(n * bits / 8) code bytes (pad bits zero) and, when r is not
  // null, r = v - decode(...) for every finite block. Returns the number of non-finite blocks.
  size_t (*quant_encode)(const float* x, float* r, size_t n, uint64_t first, const QuantParams& p,
                         float* scales, uint8_t* codes);

  // Decodes n values from scales and codes: out = d, or out += d when accumulate.
  void (*quant_decode)(const float* scales, const uint8_t* codes, size_t n, const QuantParams& p,
                       float* out, bool accumulate);

  // 16-bit conversions (IEEE, nearest even). saturate: finite values never become Inf.
  void (*f16_to_f32)(const uint16_t* in, float* out, size_t n);
  void (*bf16_to_f32)(const uint16_t* in, float* out, size_t n);
  void (*f32_to_f16)(const float* in, uint16_t* out, size_t n, bool saturate);
  void (*f32_to_bf16)(const float* in, uint16_t* out, size_t n, bool saturate);

  // out[i] += in[i].
  void (*add_f32)(const float* in, float* out, size_t n);
  // out[i] = a[i] + b[i] (out aliases neither).
  void (*add3_f32)(const float* a, const float* b, float* out, size_t n);

  // Error feedback of the element-wise codecs: r[i] = v[i] - sent[i] where v[i] is finite; a NaN
  // or Inf v[i] leaves r[i]. Returns how many v[i] were not finite. r aliases neither input.
  size_t (*feedback)(const float* v, const float* sent, float* r, size_t n);
};

const CpuKernels& scalar_kernels();
// nullptr when this build has no such table; the caller also checks the CPU supports it.
const CpuKernels* avx2_kernels();
const CpuKernels* avx512_kernels();

bool cpu_has_avx2();
bool cpu_has_avx512();

// The table for this process: GRADPACK_CPU_ISA, or the widest the CPU supports.
Status select_kernels(const CpuKernels** out);

// The choice every runtime-dispatched kernel family shares (these codec kernels, the reduction
// kernels of collectives/reduce): `tables` are the family's scalar, avx2 and avx512 tables (null
// when this build lacks one), `what` names the family in messages. isa_table_by_name() picks one
// by name (kInvalidArgument for an unknown name, kUnsupported when the build or the CPU lacks it);
// select_isa_table() applies GRADPACK_CPU_ISA, or takes the widest the CPU supports.
struct IsaTables {
  const void* scalar;
  const void* avx2;
  const void* avx512;
  const char* what;
};
Status isa_table_by_name(const char* isa, const IsaTables& tables, const void** out);
Status select_isa_table(const IsaTables& tables, const void** out);
// The table for an explicit ISA name ("scalar", "avx2", "avx512"); kUnsupported if the CPU or
// the build lacks it.
Status kernels_by_name(const char* isa, const CpuKernels** out);

}  // namespace gradpack::cpu
