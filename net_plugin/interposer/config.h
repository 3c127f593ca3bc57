// SPDX-License-Identifier: Apache-2.0
// What the ncclAllReduce interposer compresses: its settings (read once from GRADPACK_*) and the
// rules that decide, call by call, whether gradpack may run it. Plain C++ (no CUDA, no NCCL) so
// the rules are unit-tested on any machine.
//
// Two kinds of rule, because every rank of a communicator must take the same path (one rank in
// NCCL's ring while its peers post gradpack's sends is a hang):
//   - argument rules (candidate()): dtype, op, rank count and element count, which NCCL requires
//     to be the same on every rank, so every rank decides alike;
//   - this rank's own rules (local_ok()): compression on, the size threshold, and (in the
//     interposer) the runtime and the memory, which may differ between processes. They are never
//     acted on alone: they are this rank's vote in the agreement (comm_state.h).
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
  // False: this rank votes against compressing every call; `why` says why (logged once).
  bool enabled = false;
  std::string why;
  CodecSpec spec;          // the q<b> codec of compressed calls
  std::string canonical;   // spec.canonical(), for logs
  uint64_t min_bytes = 0;  // GRADPACK_MIN_BYTES
  bool error_feedback = true;
  int residual_bits = 32;                     // GRADPACK_RESIDUAL_BITS: 32 (fp32) or 16 (bf16)
  uint64_t residual_max_bytes = 8ull << 30;   // GRADPACK_RESIDUAL_MAX_BYTES (0: no cap)
  size_t segment_bytes = 1 << 20;             // GRADPACK_SEGMENT_BYTES: the frames' grain
  // What must be equal on every rank for their frames and schedules to fit together: the
  // protocol version, the codec and the segment size (and whether compression is on at all).
  uint64_t wire_hash = 0;
};

// Reads the interposer's settings. Never fails: a setting it cannot use (GRADPACK_COMPRESS=auto,
// a top-k or fp16 spec, a spec that does not parse) gives enabled == false and a `why` naming
// the setting and what to set instead, because the interposer must never break the caller's
// NCCL calls over a configuration problem.
Config load_config(const Settings& settings);

// One ncclAllReduce call as the rules see it (the interposer maps NCCL's enums to these).
struct Call {
  bool float_dtype = false;  // fp32, fp16 or bf16
  size_t elem_size = 4;
  bool sum_or_avg = false;
  size_t count = 0;
  int nranks = 1;
};

// nullptr when the call's arguments allow gradpack to run it; otherwise why NCCL runs it (a
// constant string). The same answer on every rank of a correct NCCL program.
const char* candidate(const Call& call);
// nullptr when this rank would compress a candidate call; otherwise why not (a constant string).
const char* local_ok(const Config& config, const Call& call);

}  // namespace gradpack::interposer
