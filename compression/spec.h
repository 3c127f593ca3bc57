// SPDX-License-Identifier: Apache-2.0
// Codec specs: the strings users write ("q8:block=128", "topk:0.01+q8") and their parsed form.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace gradpack {

// Values are written into frame headers: never renumber.
enum class CodecKind : uint8_t { kNone = 0, kFp16 = 1, kBf16 = 2, kQuant = 3, kTopk = 4 };

enum class Rounding : uint8_t { kNearest = 0, kStochastic = 1 };

constexpr int kMinBits = 2;
constexpr int kMaxBits = 16;
constexpr uint32_t kDefaultBlock = 256;
constexpr uint32_t kMaxBlock = 1u << 24;

struct QuantSpec {
  int bits = 0;  // 0: not quantized (top-k values stay fp32)
  uint32_t block = kDefaultBlock;
  Rounding rounding = Rounding::kNearest;
  uint64_t seed = 0;
};

struct CodecSpec {
  CodecKind kind = CodecKind::kNone;
  double fraction = 0.0;  // top-k: share of elements kept, in (0, 1]
  QuantSpec quant;        // q<b>, or the values of top-k

  // Every parameter spelled out: "q8:block=256:round=nearest:seed=0", "topk:0.01+q8:...".
  std::string canonical() const;
};

// Parses a spec; a bad one is kInvalidArgument with a message that names the bad part.
Status parse_codec_spec(std::string_view text, CodecSpec* out);

const char* codec_kind_name(CodecKind kind);

}  // namespace gradpack
