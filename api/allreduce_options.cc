// SPDX-License-Identifier: Apache-2.0
#include "api/allreduce_options.h"

#include <cstddef>
#include <string>

namespace gradpack::api {

Status from_c_options(const gp_allreduce_opts_t* opts, coll::AllreduceOptions* out) {
  *out = coll::AllreduceOptions{};
  if (opts == nullptr) return OkStatus();
  auto has = [&](size_t end) { return opts->struct_size >= end; };
  if (!has(offsetof(gp_allreduce_opts_t, segment_bytes) + sizeof(size_t))) {
    return InvalidArgument("gp_allreduce_opts_t.struct_size is " +
                           std::to_string(opts->struct_size) +
                           ": fill the options with gp_allreduce_opts_init() first");
  }
  if (opts->algorithm < GP_ALGO_AUTO || opts->algorithm > GP_ALGO_SPARSE) {
    return InvalidArgument("gp_allreduce_opts_t.algorithm " +
                           std::to_string(static_cast<int>(opts->algorithm)) +
                           " is not a gp_algo_t");
  }
  out->algorithm = static_cast<coll::Algorithm>(opts->algorithm);
  out->segment_bytes = opts->segment_bytes;
  if (has(offsetof(gp_allreduce_opts_t, codec) + sizeof(const char*)) && opts->codec != nullptr) {
    coll::CodecRequest codec;
    GP_RETURN_IF_ERROR(coll::parse_codec_request(opts->codec, &codec));
    out->codec = std::move(codec);
  }
  if (has(offsetof(gp_allreduce_opts_t, error_feedback) + sizeof(int))) {
    if (opts->error_feedback < -1 || opts->error_feedback > 1) {
      return InvalidArgument("gp_allreduce_opts_t.error_feedback " +
                             std::to_string(opts->error_feedback) +
                             " is not -1 (default), 0 (off) or 1 (on)");
    }
    if (opts->error_feedback >= 0) out->error_feedback = opts->error_feedback == 1;
  }
  if (has(offsetof(gp_allreduce_opts_t, key) + sizeof(const char*)) && opts->key != nullptr) {
    out->key = opts->key;
    if (out->key.empty() || out->key.size() > 4096) {
      return InvalidArgument("gp_allreduce_opts_t.key must be 1 to 4096 characters");
    }
  }
  if (has(offsetof(gp_allreduce_opts_t, residual_bits) + sizeof(int))) {
    out->residual_bits = opts->residual_bits;
  }
  return OkStatus();
}

}  // namespace gradpack::api
