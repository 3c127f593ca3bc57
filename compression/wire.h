// SPDX-License-Identifier: Apache-2.0
// The frame: a versioned, self-describing header followed by the payload (docs/wire-format.md).
//
// read_frame_header() is the gate every received byte passes: it checks the magic, version,
// checksum, every field's range and that the lengths add up to exactly the bytes given, so the
// decoders behind it index only inside sections whose sizes it proved.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/status.h"
#include "compression/spec.h"
#include "gradpack/gradpack.h"

namespace gradpack {

constexpr uint8_t kFrameMagic[4] = {'G', 'P', 'K', 'W'};
constexpr uint8_t kFrameVersion = 1;
constexpr size_t kFrameHeaderBytes = 56;
// Counts above this are refused, which keeps every size computation below 2^63.
constexpr uint64_t kMaxFrameCount = uint64_t{1} << 56;

enum class IndexEncoding : uint8_t { kNone = 0, kDeltaVarint = 1, kBitmap = 2 };

constexpr uint8_t kFlagStochastic = 1u << 0;
constexpr uint8_t kKnownFlags = kFlagStochastic;

struct FrameHeader {
  CodecKind codec = CodecKind::kNone;
  gp_dtype_t dtype = GP_FLOAT32;
  uint8_t flags = 0;
  uint8_t bits = 0;  // quant: 2..16; top-k: 0 (fp32 values) or 2..16
  IndexEncoding index_encoding = IndexEncoding::kNone;
  uint32_t block = 0;  // quantized values: elements per scale
  uint64_t count = 0;
  uint64_t kept = 0;  // top-k: elements sent; otherwise == count
  uint64_t index_bytes = 0;
  uint64_t payload_bytes = 0;
};

// Where each section of the payload lies, as offsets from the payload's start.
struct FrameLayout {
  uint64_t index_offset = 0, index_bytes = 0;    // top-k indices
  uint64_t values_offset = 0, values_bytes = 0;  // raw/16-bit/fp32 top-k values
  uint64_t scales_offset = 0, blocks = 0;        // quantized: one fp32 scale per block
  uint64_t codes_offset = 0, codes_bytes = 0;    // quantized: packed codes
  uint64_t payload_bytes = 0;
};

// Bytes of the scale + code sections for n quantized values.
uint64_t quant_section_bytes(uint64_t n, int bits, uint32_t block);

// Computes the layout implied by the header's fields (index_bytes taken as given for varint).
// Fails with kCorruptData if the fields are inconsistent.
Status frame_layout(const FrameHeader& h, FrameLayout* layout);

// Serializes h (with its checksum) into out[0..kFrameHeaderBytes).
void write_frame_header(const FrameHeader& h, uint8_t* out);

// The header of a q<b> frame of `count` values encoded from `dtype`: everything in it follows
// from the spec, the count and the input dtype, so a receiver can know it before the frame comes
// (the NCCL interposer checks received headers against it on the device).
FrameHeader quant_frame_header(const QuantSpec& q, uint64_t count, gp_dtype_t dtype);

// Parses and validates a frame: the header, and that in_bytes is exactly header + payload.
Status read_frame_header(const void* in, size_t in_bytes, FrameHeader* h, FrameLayout* layout);

}  // namespace gradpack
