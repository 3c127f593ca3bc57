// SPDX-License-Identifier: Apache-2.0
// The block quantizer family ("q<b>"): frame assembly around the CPU kernels.
#include "compression/quantize/quant_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/float16.h"
#include "compression/codec_impl.h"

namespace gradpack {
namespace {

// Elements per staged chunk: a whole number of blocks.
size_t stage_elements(uint32_t block) {
  return block >= kStageElements ? block : kStageElements / block * block;
}

}  // namespace

cpu::QuantParams quant_params(const QuantSpec& q, uint32_t key) {
  cpu::QuantParams p;
  p.bits = q.bits;
  p.block = q.block;
  p.stochastic = q.rounding == Rounding::kStochastic;
  p.key = key;
  return p;
}

uint64_t quant_encode_values(const cpu::CpuKernels& k, const void* in, gp_dtype_t dtype,
                             size_t count, float* residual, const cpu::QuantParams& p,
                             std::vector<float>& scratch, uint8_t* out) {
  const uint64_t blocks = (count + p.block - 1) / p.block;
  float* scales = reinterpret_cast<float*>(out);
  uint8_t* codes = out + blocks * 4;
  if (dtype == GP_FLOAT32)
    return k.quant_encode(static_cast<const float*>(in), residual, count, 0, p, scales, codes);
  const size_t chunk = stage_elements(p.block);
  scratch.resize(chunk);
  uint64_t nonfinite = 0;
  for (size_t off = 0; off < count; off += chunk) {
    const size_t n = std::min(chunk, count - off);
    const float* x = load_f32(k, in, dtype, off, n, scratch.data());
    nonfinite += k.quant_encode(x, residual ? residual + off : nullptr, n, off, p,
                                scales + off / p.block, codes + off / 8 * p.bits);
  }
  return nonfinite;
}

Status quant_check_values(const uint8_t* section, uint64_t n, int bits, uint32_t block) {
  const uint64_t blocks = (n + block - 1) / block;
  for (uint64_t b = 0; b < blocks; ++b) {
    uint32_t s;
    std::memcpy(&s, section + 4 * b, 4);
    // A scale is +0, a positive finite value, or the NaN of a non-finite block.
    if (s < kFloatInfBits || (s & 0x7FFFFFFFu) > kFloatInfBits) continue;
    return CorruptData("frame rejected: block " + std::to_string(b) +
                       " has a negative or infinite scale");
  }
  const uint64_t pad_bits = (8 - (n * bits) % 8) % 8;
  if (pad_bits != 0) {
    const uint8_t last = section[blocks * 4 + (n * bits + 7) / 8 - 1];
    if ((last >> (8 - pad_bits)) != 0)
      return CorruptData("frame rejected: code padding is not zero");
  }
  return OkStatus();
}

void quant_decode_values(const cpu::CpuKernels& k, const uint8_t* section, uint64_t n,
                         const cpu::QuantParams& p, void* out, gp_dtype_t dtype, bool accumulate,
                         std::vector<float>& scratch) {
  const uint64_t blocks = (n + p.block - 1) / p.block;
  const float* scales = reinterpret_cast<const float*>(section);
  const uint8_t* codes = section + blocks * 4;
  if (dtype == GP_FLOAT32) {
    k.quant_decode(scales, codes, n, p, static_cast<float*>(out), accumulate);
    return;
  }
  const size_t chunk = stage_elements(p.block);
  scratch.resize(2 * chunk);
  for (size_t off = 0; off < n; off += chunk) {
    const size_t m = std::min<size_t>(chunk, n - off);
    k.quant_decode(scales + off / p.block, codes + off / 8 * p.bits, m, p, scratch.data(), false);
    store_f32(k, scratch.data(), out, dtype, off, m, accumulate, scratch.data() + chunk);
  }
}

size_t quant_max_payload(const CodecSpec& spec, size_t count) {
  return quant_section_bytes(count, spec.quant.bits, spec.quant.block);
}

Status quant_encode(const EncodeArgs& a) {
  const cpu::QuantParams p = quant_params(a.spec.quant, a.key);
  a.header->bits = static_cast<uint8_t>(p.bits);
  a.header->block = p.block;
  a.header->flags = p.stochastic ? kFlagStochastic : 0;
  a.header->payload_bytes = quant_section_bytes(a.count, p.bits, p.block);
  a.stats->nonfinite_blocks +=
      quant_encode_values(a.k, a.in, a.dtype, a.count, a.residual, p, a.scratch, a.payload);
  return OkStatus();
}

Status quant_decode(const DecodeArgs& a) {
  cpu::QuantParams p;
  p.bits = a.h.bits;
  p.block = a.h.block;
  const uint8_t* section = a.payload + a.l.scales_offset;
  GP_RETURN_IF_ERROR(quant_check_values(section, a.h.count, p.bits, p.block));
  std::vector<float> scratch;
  quant_decode_values(a.k, section, a.h.count, p, a.out, a.dtype, a.accumulate, scratch);
  return OkStatus();
}

}  // namespace gradpack
