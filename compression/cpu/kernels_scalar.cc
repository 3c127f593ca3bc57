// SPDX-License-Identifier: Apache-2.0
// The scalar kernels: the reference every other table is tested against.
#include <algorithm>

#include "common/float16.h"
#include "compression/cpu/kernels.h"
#include "compression/quantize/quant_ref.h"

namespace gradpack::cpu {
namespace {

// Appends `bits`-wide codes LSB-first into a byte stream.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : out_(out) {}
  void put(uint32_t code, int bits) {
    acc_ |= static_cast<uint64_t>(code) << n_;
    n_ += bits;
    while (n_ >= 8) {
      *out_++ = static_cast<uint8_t>(acc_);
      acc_ >>= 8;
      n_ -= 8;
    }
  }
  void flush() {
    if (n_ > 0) *out_++ = static_cast<uint8_t>(acc_);
    acc_ = 0;
    n_ = 0;
  }

 private:
  uint8_t* out_;
  uint64_t acc_ = 0;
  int n_ = 0;
};

class BitReader {
 public:
  explicit BitReader(const uint8_t* in) : in_(in) {}
  uint32_t get(int bits) {
    while (n_ < bits) {
      acc_ |= static_cast<uint64_t>(*in_++) << n_;
      n_ += 8;
    }
    uint32_t code = static_cast<uint32_t>(acc_) & ((1u << bits) - 1u);
    acc_ >>= bits;
    n_ -= bits;
    return code;
  }

 private:
  const uint8_t* in_;
  uint64_t acc_ = 0;
  int n_ = 0;
};

size_t quant_encode(const float* x, float* r, size_t n, uint64_t first, const QuantParams& p,
                    float* scales, uint8_t* codes) {
  const int32_t l = quant::levels(p.bits);
  size_t nonfinite = 0;
  BitWriter writer(codes);
  for (size_t b0 = 0, blk = 0; b0 < n; b0 += p.block, ++blk) {
    const size_t m = std::min<size_t>(p.block, n - b0);
    const float* xb = x + b0;
    float* rb = r ? r + b0 : nullptr;
    uint32_t absmax = 0;
    for (size_t i = 0; i < m; ++i) {
      float v = rb ? xb[i] + rb[i] : xb[i];
      absmax = std::max(absmax, float_bits(v) & quant::kAbsMask);
    }
    const quant::BlockScale s = quant::block_scale(absmax, p.bits);
    scales[blk] = s.scale;
    if (!s.finite) {
      ++nonfinite;
      for (size_t i = 0; i < m; ++i) writer.put(static_cast<uint32_t>(l), p.bits);
      continue;
    }
    const uint64_t e0 = first + b0;
    for (size_t i = 0; i < m; ++i) {
      float v = rb ? xb[i] + rb[i] : xb[i];
      int32_t q;
      if (p.stochastic) {
        uint64_t e = e0 + i;
        q = quant::quantize_stochastic(
            v, s.inv, quant::uniform(quant::high_key(p.key, e), static_cast<uint32_t>(e)), l);
      } else {
        q = quant::quantize_nearest(v, s.inv);
      }
      writer.put(static_cast<uint32_t>(q + l), p.bits);
      if (rb) rb[i] = v - quant::dequantize(q, s.scale);
    }
  }
  writer.flush();
  return nonfinite;
}

void quant_decode(const float* scales, const uint8_t* codes, size_t n, const QuantParams& p,
                  float* out, bool accumulate) {
  const int32_t l = quant::levels(p.bits);
  BitReader reader(codes);
  for (size_t b0 = 0, blk = 0; b0 < n; b0 += p.block, ++blk) {
    const size_t m = std::min<size_t>(p.block, n - b0);
    const float scale = scales[blk];
    for (size_t i = 0; i < m; ++i) {
      float d = quant::dequantize(static_cast<int32_t>(reader.get(p.bits)) - l, scale);
      out[b0 + i] = accumulate ? out[b0 + i] + d : d;
    }
  }
}

void f16_to_f32(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = gradpack::f16_to_f32(in[i]);
}
void bf16_to_f32(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = gradpack::bf16_to_f32(in[i]);
}
void f32_to_f16(const float* in, uint16_t* out, size_t n, bool saturate) {
  for (size_t i = 0; i < n; ++i)
    out[i] = saturate ? f32_to_f16_saturate(in[i]) : gradpack::f32_to_f16(in[i]);
}
void f32_to_bf16(const float* in, uint16_t* out, size_t n, bool saturate) {
  for (size_t i = 0; i < n; ++i)
    out[i] = saturate ? f32_to_bf16_saturate(in[i]) : gradpack::f32_to_bf16(in[i]);
}
void add_f32(const float* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] += in[i];
}

#include "compression/cpu/elementwise_kernels.inc"

}  // namespace

const CpuKernels& scalar_kernels() {
  static const CpuKernels table = {"scalar",   quant_encode, quant_decode, f16_to_f32, bf16_to_f32,
                                   f32_to_f16, f32_to_bf16,  add_f32,      add3_f32,   feedback};
  return table;
}

}  // namespace gradpack::cpu
