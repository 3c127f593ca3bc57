// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/config.h"

namespace gradpack::interposer {

namespace {

// Bumped whenever the interposer's schedule or frames change shape.
constexpr uint64_t kProtocolVersion = 2;

uint64_t fnv1a(uint64_t h, const std::string& s) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t wire_hash(const Config& c) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, "gradpack-nccl/" + std::to_string(kProtocolVersion));
  h = fnv1a(h, c.enabled ? c.canonical : std::string("off"));
  h = fnv1a(h, std::to_string(c.segment_bytes));
  return h;
}

}  // namespace

Config load_config(const Settings& settings) {
  Config c;
  c.min_bytes = static_cast<uint64_t>(settings.get_int(SettingId::kMinBytes));
  c.error_feedback = settings.get(SettingId::kErrorFeedback) == "on";
  c.residual_bits = settings.get(SettingId::kResidualBits) == "16" ? 16 : 32;
  c.residual_max_bytes = static_cast<uint64_t>(settings.get_int(SettingId::kResidualMaxBytes));
  c.segment_bytes = static_cast<size_t>(settings.get_int(SettingId::kSegmentBytes));
  const std::string& text = settings.get(SettingId::kCompress);
  c.wire_hash = wire_hash(c);
  if (text.empty() || text == "off" || text == "none") {
    c.why = "GRADPACK_COMPRESS is " + (text.empty() ? std::string("unset") : text) +
            ": every ncclAllReduce goes to NCCL (set GRADPACK_COMPRESS=q8 to compress)";
    return c;
  }
  if (text == "auto" || text.rfind("auto:", 0) == 0) {
    c.why = "GRADPACK_COMPRESS=" + text +
            ": the ncclAllReduce interposer does not support auto yet; set a q<b> codec "
            "(GRADPACK_COMPRESS=q8) and GRADPACK_MIN_BYTES instead";
    return c;
  }
  Status st = parse_codec_spec(text, &c.spec);
  if (!st.ok()) {
    c.why = "GRADPACK_COMPRESS=" + text + " does not parse: " + st.message();
    return c;
  }
  if (c.spec.kind != CodecKind::kQuant) {
    c.why = "GRADPACK_COMPRESS=" + text +
            ": the ncclAllReduce interposer compresses with q<b> codecs only (q8, q4:block=128, "
            "...); top-k, fp16 and bf16 are for gp_allreduce";
    return c;
  }
  c.canonical = c.spec.canonical();
  c.enabled = true;
  c.wire_hash = wire_hash(c);
  return c;
}

const char* candidate(const Call& call) {
  if (!call.float_dtype) return "dtype is not float32, float16 or bfloat16";
  if (!call.sum_or_avg) return "op is not sum or avg";
  if (call.nranks < 2) return "communicator has one rank";
  if (call.count == 0) return "count is 0";
  return nullptr;
}

const char* local_ok(const Config& config, const Call& call) {
  if (!config.enabled) return "compression is off on this rank";
  if (call.count * call.elem_size < config.min_bytes) return "smaller than GRADPACK_MIN_BYTES";
  return nullptr;
}

}  // namespace gradpack::interposer
