// SPDX-License-Identifier: Apache-2.0
// What the ncclAllReduce interposer compresses: its settings (read once from GRADPACK_*) and the
// rule that decides, call by call, whether gradpack runs it or NCCL does. Plain C++ (no CUDA, no
// NCCL) so the rules are unit-tested on any machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/settings.h"
#include "common/status.h"
#include "compression/spec.h"
#include "gradpack/gradpack.h"

namespace gradpack::interposer {

struct Config {
  // False: every call goes to NCCL; `why` says why (logged once at the first call).
  bool enabled = false;
  std::string why;
  CodecSpec spec;          // the q<b> codec of compressed calls
  std::string canonical;   // spec.canonical(), for logs
  uint64_t min_bytes = 0;  // GRADPACK_MIN_BYTES
  bool error_feedback = true;
  size_t segment_bytes = 1 << 20;  // GRADPACK_SEGMENT_BYTES: the frames' grain
};

// Reads the interposer's settings. Never fails: a setting it cannot use (GRADPACK_COMPRESS=auto,
// a top-k or fp16 spec, a spec that does not parse) gives enabled == false and a `why` naming
// the setting and what to set instead, because the interposer must never break the caller's
// NCCL calls over a configuration problem.
Config load_config(const Settings& settings);

// One ncclAllReduce call as the rule sees it (the interposer maps NCCL's enums to these).
struct Call {
  bool float_dtype = false;  // fp32, fp16 or bf16
  size_t elem_size = 4;
  bool sum_or_avg = false;
  size_t count = 0;
  int nranks = 1;
  bool in_user_group = false;  // the caller is between ncclGroupStart and ncclGroupEnd
  bool capturing = false;      // the stream is being captured into a CUDA graph
};

// nullptr when gradpack runs the call; otherwise why NCCL runs it (a constant string).
const char* ineligible(const Config& config, const Call& call);

}  // namespace gradpack::interposer
