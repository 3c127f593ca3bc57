// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/config.h"

namespace gradpack::interposer {

Config load_config(const Settings& settings) {
  Config c;
  c.min_bytes = static_cast<uint64_t>(settings.get_int(SettingId::kMinBytes));
  c.error_feedback = settings.get(SettingId::kErrorFeedback) == "on";
  c.segment_bytes = static_cast<size_t>(settings.get_int(SettingId::kSegmentBytes));
  const std::string& text = settings.get(SettingId::kCompress);
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
  return c;
}

const char* ineligible(const Config& config, const Call& call) {
  if (!config.enabled) return "compression is off";
  if (!call.float_dtype) return "dtype is not float32, float16 or bfloat16";
  if (!call.sum_or_avg) return "op is not sum or avg";
  if (call.nranks < 2) return "communicator has one rank";
  if (call.count == 0) return "count is 0";
  if (call.count * call.elem_size < config.min_bytes) return "smaller than GRADPACK_MIN_BYTES";
  if (call.in_user_group) return "called inside ncclGroupStart/ncclGroupEnd";
  if (call.capturing) return "stream is being captured into a CUDA graph";
  return nullptr;
}

}  // namespace gradpack::interposer
