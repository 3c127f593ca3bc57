// SPDX-License-Identifier: Apache-2.0
// Codec: the C++ object behind gp_codec_t. One codec = one parsed spec + the state an encoder
// keeps between calls (its stochastic-rounding stream position and scratch space), so it is used
// by one thread at a time. Decoding needs no codec: frames describe themselves.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "compression/cpu/kernels.h"
#include "compression/spec.h"
#include "gradpack/gradpack.h"

namespace gradpack {

struct CodecStats {
  uint64_t encodes = 0;
  uint64_t nonfinite_blocks = 0;  // blocks (or elements, for element-wise codecs) sent as NaN/Inf
};

class Codec {
 public:
  static Status create(std::string_view spec, std::unique_ptr<Codec>* out);
  // With an explicit kernel table (tests compare tables).
  static Status create(std::string_view spec, const cpu::CpuKernels& kernels,
                       std::unique_ptr<Codec>* out);
  // From a parsed spec (parse_codec_spec's, or one derived from it by changing fields within
  // their ranges): nothing is parsed again.
  static Status create(const CodecSpec& spec, std::unique_ptr<Codec>* out);

  const CodecSpec& spec() const { return spec_; }
  const std::string& canonical() const { return canonical_; }
  const CodecStats& stats() const { return stats_; }
  const cpu::CpuKernels& kernels() const { return *kernels_; }

  // Largest frame encode() can write for count elements of dtype; 0 if dtype is not accepted.
  size_t max_encoded_bytes(size_t count, gp_dtype_t dtype) const;

  Status encode(const void* in, size_t count, gp_dtype_t dtype, float* residual, void* out,
                size_t out_capacity, size_t* out_bytes);
  // Writes the frame that plain encode call number `call_index` writes (the stochastic-rounding
  // stream is quant::stream_key(seed, call_index)), whatever calls came before: for callers that
  // number their calls themselves (the GPU codecs, the interposer's fake device). Like any encode
  // it advances stats().encodes by one.
  Status encode(const void* in, size_t count, gp_dtype_t dtype, float* residual, void* out,
                size_t out_capacity, size_t* out_bytes, uint64_t call_index);

 private:
  Codec() = default;
  CodecSpec spec_;
  std::string canonical_;
  const cpu::CpuKernels* kernels_ = nullptr;
  CodecStats stats_;
  std::vector<float> scratch_;
};

// Decodes a frame into out (see gp_codec_decode). Uses the process's kernel table unless given one.
Status decode_frame(const void* in, size_t in_bytes, void* out, size_t count, gp_dtype_t dtype,
                    bool accumulate, const cpu::CpuKernels* kernels = nullptr);

Status read_frame_info(const void* in, size_t in_bytes, gp_frame_info_t* info);

}  // namespace gradpack
