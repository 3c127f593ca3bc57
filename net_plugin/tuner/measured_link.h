// The link figures CollNet's connect measured (Communicator::link_model), kept for the tuner: the
// tuner has no communicator to measure with. Keyed by NCCL's commId, which NCCL passes to both
// faces' init (comm->commHash), so a tuner sees only its own communicator's figures. Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "collectives/auto_model.h"

namespace gradpack::plugin {

// Records what one collComm of communicator `comm_id` measured among model.nranks nodes with
// `codec` (a canonical spec).
void publish_measured_link(uint64_t comm_id, const std::string& codec,
                           const coll::LinkModel& model);

// The figures communicator `comm_id` measured among `nodes` nodes with `codec`, the slowest of
// its collComms' (the lowest rates, the highest latencies: a pure function of the set, whatever
// order they were published in); false if none.
bool measured_link(uint64_t comm_id, int nodes, const std::string& codec, coll::LinkModel* out);

// Drops communicator `comm_id`'s figures (its tuner context is finalized).
void forget_measured_links(uint64_t comm_id);

// Changes with every publish: a cheap test, on NCCL's hot path, for "anything new?".
uint64_t measured_link_generation();

}  // namespace gradpack::plugin
