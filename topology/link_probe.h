// SPDX-License-Identifier: Apache-2.0
// Measuring the link model (cost_model.h) among the ranks of a communicator. Every procedure here
// is collective: each rank makes the same calls in the same order, and every figure that comes out
// is the slowest rank's (one all-reduce MAX), so every rank holds the same model and decides the
// same thing from it.
#pragma once

#include <cstddef>
#include <limits>

#include "common/status.h"
#include "compression/codec.h"
#include "topology/cost_model.h"

namespace gradpack::topology {

// What measuring needs from a communicator (the collectives layer implements it).
class ProbeTarget {
 public:
  virtual ~ProbeTarget() = default;
  virtual int rank() const = 0;
  virtual int nranks() const = 0;
  // A sum of `count` fp32 across the ranks: uncompressed, or (`compressed`) with the codec being
  // measured and without error feedback.
  virtual Status allreduce(const float* in, float* out, size_t count, bool compressed) = 0;
  // Every rank sends `bytes` to rank + 1 and receives as many from rank - 1.
  virtual Status ring_exchange(const void* send, void* recv, size_t bytes) = 0;
  // In place: every value becomes its largest over the ranks.
  virtual Status agree_max(double* values, size_t count) = 0;
};

// The model of `codec` (the codec the target's compressed all-reduce uses): the codec's encode and
// decode rates on 16 MiB of gradient-like fp32 and the compressed latency, measured now; the
// uncompressed latency and link rate measured now too when `network` is null, else taken from it.
Status measure_link(ProbeTarget& target, Codec& codec, const LinkModel* network, LinkModel* out);

// Small sizes, where the model is least sure (a small all-reduce's time is mostly overheads the
// model only estimates, and shaped links let short bursts through faster than their rate): fp32
// sums of kProbeMinBytes to kProbeMaxBytes timed uncompressed and compressed, alternating,
// kProbeRounds times; each rank's best time per size and way, then the slowest rank's. *win_bytes:
// the smallest probed size from which the codec was at least 1/kAutoMargin faster at every larger
// probed size, or kNoProbedWin if it won at none.
inline constexpr size_t kProbeMinBytes = size_t{16} << 10;
inline constexpr size_t kProbeMaxBytes = size_t{512} << 10;
inline constexpr int kProbeRounds = 3;
inline constexpr size_t kNoProbedWin = std::numeric_limits<size_t>::max();
Status probe_small_sizes(ProbeTarget& target, size_t* win_bytes);

}  // namespace gradpack::topology
