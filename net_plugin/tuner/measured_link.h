// SPDX-License-Identifier: Apache-2.0
// The link figures CollNet's connect measured, kept for the tuner: the tuner has no communicator
// to measure with. Keyed by NCCL's commId, which NCCL passes to both faces' init
// (comm->commHash), so a tuner sees only its own communicator's figures. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "topology/cost_model.h"
#include "topology/link_probe.h"

namespace gradpack::plugin {

struct MeasuredLink {
  // The model's figures (topology/link_probe.h): latencies, link rate, codec rates.
  topology::LinkModel model;
  // Timed all-reduces of the small sizes, where the model is least sure
  // (topology::probe_small_sizes): the smallest probed size from which the codec won at every
  // larger probed size; kNoProbedWin if it won at none; 0 if nothing was probed.
  static constexpr size_t kNoProbedWin = topology::kNoProbedWin;
  size_t probed_win_bytes = 0;
};

// Records what one collComm of communicator `comm_id` measured among link.model.nranks nodes with
// `codec` (a canonical spec).
void publish_measured_link(uint64_t comm_id, const std::string& codec, const MeasuredLink& link);

// What communicator `comm_id` measured among `nodes` nodes with `codec`, the slowest of its
// collComms' (the lowest rates, the highest latencies, the largest probed win: a pure function of
// the set, whatever order they were published in); false if nothing.
bool measured_link(uint64_t comm_id, int nodes, const std::string& codec, MeasuredLink* out);

// Drops communicator `comm_id`'s figures (its tuner context is finalized).
void forget_measured_links(uint64_t comm_id);

// Changes with every publish: a cheap test, on NCCL's hot path, for "anything new?".
uint64_t measured_link_generation();

}  // namespace gradpack::plugin
