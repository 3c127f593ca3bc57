// SPDX-License-Identifier: Apache-2.0
// Groups of collectives (gp_group_start / gp_group_end): the calls a thread makes on a
// communicator between the two are checked and queued, then run together, the uncompressed
// all-reduces of one dtype, op, algorithm and segment size packed into one buffer and reduced by
// one all-reduce. Many small all-reduces then cost one collective's latency instead of one each.
//
// The thread-local bookkeeping (nesting depth, which communicators have queues) lives in the C
// ABI (api/c_api.cc); this file knows one communicator's queue and how to run it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "collectives/call.h"
#include "collectives/communicator.h"
#include "common/status.h"
#include "gradpack/gradpack.h"

namespace gradpack::coll {

// Runs `call` on `comm` now (the communicator's own checks apply).
Status run_call(Communicator& comm, const CollectiveCall& call);

// The calls of one group on one communicator, in the order they were made.
class CallQueue {
 public:
  explicit CallQueue(Communicator* comm) : comm_(comm) {}

  Communicator* communicator() const { return comm_; }
  // Checks `call` the way running it would (Communicator::check_call) and queues it; a call that
  // would fail is refused with that error and not queued.
  Status add(const CollectiveCall& call);
  // Runs the queue: each fusable all-reduce (Communicator::check_call) joins the batch of its
  // dtype, op, algorithm and segment size, which runs, packed into *scratch (at most
  // GRADPACK_GROUP_FUSE_BYTES), where its first member was queued; every other call runs where it
  // was queued. The first error stops the queue and is returned.
  Status run(std::vector<uint8_t>* scratch);

 private:
  struct Entry {
    CollectiveCall call;
    bool fusable = false;
    int batch = -1;  // index into batches_, fusable entries only
  };
  struct Batch {
    std::vector<size_t> members;  // indices into entries_
    size_t bytes = 0;
    bool done = false;
  };
  void assign_batches(size_t fuse_bytes);
  Status run_batch(Batch& batch, std::vector<uint8_t>* scratch);

  Communicator* comm_;
  std::vector<Entry> entries_;
  std::vector<Batch> batches_;
};

}  // namespace gradpack::coll
