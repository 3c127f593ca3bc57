// SPDX-License-Identifier: Apache-2.0
// The options of an all-reduce inside the library. The C ABI (api/) checks a caller's
// gp_allreduce_opts_t once (struct_size, offsetof, enum ranges) and parses its codec text into a
// CodecRequest; gradpack's own all-reduces (the link probes, the NCCL faces) fill these directly.
// Nothing is parsed again on the way to the executor.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "collectives/plan.h"
#include "common/status.h"
#include "compression/spec.h"

namespace gradpack::coll {

// A codec option (gp_allreduce_opts_t.codec, GRADPACK_COMPRESS), parsed: "off" (or "") → kOff;
// "auto" or "auto:<spec>" → kAuto (compress with <spec>, q8 by default, where the cost model
// predicts a win); any other codec spec, "none" included → kFixed.
struct CodecRequest {
  enum class Mode : uint8_t { kOff, kFixed, kAuto };
  Mode mode = Mode::kOff;
  CodecSpec spec;         // kFixed, kAuto
  std::string canonical;  // spec.canonical() (kFixed, kAuto): the codec cache's key

  bool off() const { return mode == Mode::kOff; }
  bool automatic() const { return mode == Mode::kAuto; }
  // kFixed with codec "none": uncompressed unless a compressed algorithm is asked for.
  bool none() const { return mode == Mode::kFixed && spec.kind == CodecKind::kNone; }
};

// kInvalidArgument naming the bad part (auto with "none" or "off" included).
Status parse_codec_request(std::string_view text, CodecRequest* out);

struct AllreduceOptions {
  Algorithm algorithm = Algorithm::kAuto;  // kAuto: GRADPACK_ALGO, else the selector's choice
  size_t segment_bytes = 0;                // 0: GRADPACK_SEGMENT_BYTES; else at least 4096
  std::optional<CodecRequest> codec;       // none: GRADPACK_COMPRESS
  std::optional<bool> error_feedback;      // none: GRADPACK_ERROR_FEEDBACK (lossy codecs only)
  std::string key;                         // the bucket; "": recv address and count
  int residual_bits = 0;                   // 0: GRADPACK_RESIDUAL_BITS; else 32 (fp32) or 16 (bf16)

  // gradpack's own all-reduces: `codec`, no error feedback (they keep no residuals).
  static AllreduceOptions internal(const CodecRequest& codec);
  static AllreduceOptions uncompressed() { return internal(CodecRequest{}); }
};

// The checks on values any face may get wrong (the messages name gp_allreduce_opts_t's fields,
// the only way a user sets them).
Status validate(const AllreduceOptions& options);

}  // namespace gradpack::coll
