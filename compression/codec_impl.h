// SPDX-License-Identifier: Apache-2.0
// What the codec families share: the arguments of one encode or decode, and fp32 staging of
// 16-bit inputs and outputs in cache-sized chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "compression/codec.h"
#include "compression/cpu/kernels.h"
#include "compression/spec.h"
#include "compression/wire.h"

namespace gradpack {

// Elements staged per chunk when the data is not fp32 (a multiple of every block size <= it).
constexpr size_t kStageElements = 1 << 14;

struct EncodeArgs {
  const CodecSpec& spec;
  const cpu::CpuKernels& k;
  const void* in;
  size_t count;
  gp_dtype_t dtype;
  float* residual;   // null: no error feedback
  uint8_t* payload;  // room for the largest payload of this spec
  uint32_t key;      // stochastic stream key of this call
  std::vector<float>& scratch;
  FrameHeader* header;  // the family fills its fields and payload_bytes
  CodecStats* stats;
};

struct DecodeArgs {
  const FrameHeader& h;
  const FrameLayout& l;
  const uint8_t* payload;
  void* out;
  gp_dtype_t dtype;
  bool accumulate;
  const cpu::CpuKernels& k;
};

inline bool is_float(gp_dtype_t d) {
  return d == GP_FLOAT32 || d == GP_FLOAT16 || d == GP_BFLOAT16;
}

// The checks of a decode call against a validated header: the count matches, the dtype is known
// and can hold the frame's values, out is there.
Status check_decode_target(const FrameHeader& h, size_t count, gp_dtype_t dtype, const void* out);

// fp32 view of in[off, off + n): in itself for fp32, else converted into tmp (n floats).
const float* load_f32(const cpu::CpuKernels& k, const void* in, gp_dtype_t dtype, size_t off,
                      size_t n, float* tmp);
// out[off, off + n) = src (or += src, summed in fp32 and rounded once), converting to dtype.
// tmp: n floats of scratch for 16-bit outputs.
void store_f32(const cpu::CpuKernels& k, const float* src, void* out, gp_dtype_t dtype, size_t off,
               size_t n, bool accumulate, float* tmp);

// Families. *_max_payload: the most payload bytes for count elements (dtype already accepted).
size_t float_max_payload(const CodecSpec& spec, size_t count, gp_dtype_t dtype);
Status float_encode(const EncodeArgs& a);
Status float_decode(const DecodeArgs& a);

size_t quant_max_payload(const CodecSpec& spec, size_t count);
Status quant_encode(const EncodeArgs& a);
Status quant_decode(const DecodeArgs& a);

size_t topk_max_payload(const CodecSpec& spec, size_t count);
Status topk_encode(const EncodeArgs& a);
Status topk_decode(const DecodeArgs& a);

}  // namespace gradpack
