// SPDX-License-Identifier: Apache-2.0
#include "collectives/options.h"

namespace gradpack::coll {

Status parse_codec_request(std::string_view text, CodecRequest* out) {
  *out = CodecRequest{};
  if (text.empty() || text == "off") return OkStatus();
  std::string_view spec = text;
  CodecRequest r;
  r.mode = CodecRequest::Mode::kFixed;
  if (text == "auto" || text.substr(0, 5) == "auto:") {
    r.mode = CodecRequest::Mode::kAuto;
    spec = text.size() > 5 ? text.substr(5) : std::string_view("q8");
    if (spec == "none" || spec == "off") {
      return InvalidArgument("codec \"" + std::string(text) +
                             "\": auto needs a lossy codec to choose (auto:q8)");
    }
  }
  GP_RETURN_IF_ERROR(parse_codec_spec(spec, &r.spec));
  r.canonical = r.spec.canonical();
  *out = std::move(r);
  return OkStatus();
}

AllreduceOptions AllreduceOptions::internal(const CodecRequest& codec) {
  AllreduceOptions o;
  o.codec = codec;
  o.error_feedback = false;
  return o;
}

Status validate(const AllreduceOptions& o) {
  if (o.segment_bytes != 0 && o.segment_bytes < 4096) {
    return InvalidArgument("gp_allreduce_opts_t.segment_bytes " + std::to_string(o.segment_bytes) +
                           " is below 4096 (0 takes the default)");
  }
  if (o.key.size() > 4096) {
    return InvalidArgument("gp_allreduce_opts_t.key must be 1 to 4096 characters");
  }
  if (o.residual_bits != 0 && o.residual_bits != 32 && o.residual_bits != 16) {
    return InvalidArgument("gp_allreduce_opts_t.residual_bits " + std::to_string(o.residual_bits) +
                           " is not 0 (default), 32 (fp32) or 16 (bf16)");
  }
  return OkStatus();
}

}  // namespace gradpack::coll
