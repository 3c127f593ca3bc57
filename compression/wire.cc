// SPDX-License-Identifier: Apache-2.0
#include "compression/wire.h"

#include <cstring>
#include <string>

#include "common/crc32c.h"
#include "common/little_endian.h"

namespace gradpack {
namespace {

Status corrupt(const std::string& why) { return CorruptData("frame rejected: " + why); }

bool is_float_dtype(gp_dtype_t d) { return d == GP_FLOAT32 || d == GP_FLOAT16 || d == GP_BFLOAT16; }

}  // namespace

uint64_t quant_section_bytes(uint64_t n, int bits, uint32_t block) {
  uint64_t blocks = (n + block - 1) / block;
  return blocks * 4 + (n * static_cast<uint64_t>(bits) + 7) / 8;
}

Status frame_layout(const FrameHeader& h, FrameLayout* out) {
  FrameLayout l;
  const uint64_t n = h.count;
  if (n > kMaxFrameCount) return corrupt("element count " + std::to_string(n) + " is too large");
  bool quantized_values = false;
  uint64_t values = n;  // number of values in the value section
  switch (h.codec) {
    case CodecKind::kNone: {
      size_t size = dtype_size(h.dtype);
      if (h.bits != 0 || h.block != 0 || h.index_encoding != IndexEncoding::kNone || h.flags != 0)
        return corrupt("a none frame carries quantizer fields");
      l.values_bytes = n * size;
      break;
    }
    case CodecKind::kFp16:
    case CodecKind::kBf16:
      if (h.bits != 0 || h.block != 0 || h.index_encoding != IndexEncoding::kNone || h.flags != 0)
        return corrupt("a 16-bit frame carries quantizer fields");
      l.values_bytes = n * 2;
      break;
    case CodecKind::kQuant:
      if (h.bits < kMinBits || h.bits > kMaxBits) return corrupt("bits out of range");
      if (h.index_encoding != IndexEncoding::kNone) return corrupt("quant frame with indices");
      quantized_values = true;
      break;
    case CodecKind::kTopk: {
      if (h.kept > n) return corrupt("top-k keeps more elements than the frame has");
      values = h.kept;
      if (h.index_encoding == IndexEncoding::kBitmap) {
        if (h.index_bytes != (n + 7) / 8) return corrupt("bitmap size does not match the count");
      } else if (h.index_encoding == IndexEncoding::kDeltaVarint) {
        if (h.index_bytes < h.kept || h.index_bytes > h.kept * 10)
          return corrupt("varint index section size is impossible for the kept count");
      } else {
        return corrupt("unknown index encoding");
      }
      l.index_bytes = h.index_bytes;
      if (h.bits == 0) {
        if (h.block != 0 || h.flags != 0) return corrupt("fp32 top-k carries quantizer fields");
        l.values_bytes = values * 4;
      } else {
        if (h.bits < kMinBits || h.bits > kMaxBits) return corrupt("bits out of range");
        quantized_values = true;
      }
      break;
    }
    default:
      return corrupt("unknown codec " + std::to_string(static_cast<int>(h.codec)));
  }
  if (h.codec != CodecKind::kTopk && (h.kept != n || h.index_bytes != 0))
    return corrupt("kept/index fields set on a frame without indices");
  if (h.codec != CodecKind::kNone && !is_float_dtype(h.dtype))
    return corrupt("lossy frame of a non-float dtype");
  if (dtype_size(h.dtype) == 0) return corrupt("unknown dtype");
  if (quantized_values) {
    if (h.block < 8 || h.block > kMaxBlock || h.block % 8 != 0)
      return corrupt("block size is not a multiple of 8 in 8..2^24");
    if ((h.flags & ~kKnownFlags) != 0) return corrupt("unknown flags");
    l.blocks = (values + h.block - 1) / h.block;
    l.codes_bytes = (values * h.bits + 7) / 8;
  }
  l.index_offset = 0;
  l.values_offset = l.index_bytes;
  l.scales_offset = l.index_bytes;
  l.codes_offset = l.scales_offset + l.blocks * 4;
  l.payload_bytes = l.index_bytes + l.values_bytes + l.blocks * 4 + l.codes_bytes;
  *out = l;
  return OkStatus();
}

FrameHeader quant_frame_header(const QuantSpec& q, uint64_t count, gp_dtype_t dtype) {
  FrameHeader h;
  h.codec = CodecKind::kQuant;
  h.dtype = dtype;
  h.count = count;
  h.kept = count;
  h.bits = static_cast<uint8_t>(q.bits);
  h.block = q.block;
  h.flags = q.rounding == Rounding::kStochastic ? kFlagStochastic : 0;
  h.payload_bytes = quant_section_bytes(count, q.bits, q.block);
  return h;
}

void write_frame_header(const FrameHeader& h, uint8_t* out) {
  std::memset(out, 0, kFrameHeaderBytes);
  std::memcpy(out, kFrameMagic, 4);
  out[4] = kFrameVersion;
  out[5] = static_cast<uint8_t>(h.codec);
  out[6] = static_cast<uint8_t>(h.dtype);
  out[7] = h.flags;
  out[8] = h.bits;
  out[9] = static_cast<uint8_t>(h.index_encoding);
  store_le<uint32_t>(out + 12, h.block);
  store_le<uint64_t>(out + 16, h.count);
  store_le<uint64_t>(out + 24, h.kept);
  store_le<uint64_t>(out + 32, h.index_bytes);
  store_le<uint64_t>(out + 40, h.payload_bytes);
  store_le<uint32_t>(out + 52, crc32c(out, 52));
}

Status read_frame_header(const void* in, size_t in_bytes, FrameHeader* out, FrameLayout* layout) {
  const auto* p = static_cast<const uint8_t*>(in);
  if (p == nullptr || in_bytes < kFrameHeaderBytes)
    return corrupt("truncated: " + std::to_string(in_bytes) + " bytes is shorter than the " +
                   std::to_string(kFrameHeaderBytes) + "-byte header");
  if (std::memcmp(p, kFrameMagic, 4) != 0) return corrupt("bad magic (not a gradpack frame)");
  if (p[4] != kFrameVersion)
    return corrupt("wire format version " + std::to_string(p[4]) +
                   " is not supported (this build "
                   "reads version " +
                   std::to_string(kFrameVersion) + ")");
  if (load_le<uint32_t>(p + 52) != crc32c(p, 52)) return corrupt("header checksum mismatch");
  if (p[10] != 0 || p[11] != 0 || load_le<uint32_t>(p + 48) != 0)
    return corrupt("reserved bytes are set");
  FrameHeader h;
  h.codec = static_cast<CodecKind>(p[5]);
  h.dtype = static_cast<gp_dtype_t>(p[6]);
  h.flags = p[7];
  h.bits = p[8];
  h.index_encoding = static_cast<IndexEncoding>(p[9]);
  h.block = load_le<uint32_t>(p + 12);
  h.count = load_le<uint64_t>(p + 16);
  h.kept = load_le<uint64_t>(p + 24);
  h.index_bytes = load_le<uint64_t>(p + 32);
  h.payload_bytes = load_le<uint64_t>(p + 40);
  if (p[6] > GP_UINT8) return corrupt("unknown dtype " + std::to_string(p[6]));
  FrameLayout l;
  GP_RETURN_IF_ERROR(frame_layout(h, &l));
  if (l.payload_bytes != h.payload_bytes)
    return corrupt("payload length " + std::to_string(h.payload_bytes) + " does not match the " +
                   std::to_string(l.payload_bytes) + " bytes its fields imply");
  if (in_bytes - kFrameHeaderBytes != h.payload_bytes)
    return corrupt(
        std::string(in_bytes - kFrameHeaderBytes < h.payload_bytes ? "truncated" : "oversized") +
        ": " + std::to_string(in_bytes) + " bytes given, header says " +
        std::to_string(kFrameHeaderBytes + h.payload_bytes));
  *out = h;
  *layout = l;
  return OkStatus();
}

}  // namespace gradpack
