// SPDX-License-Identifier: Apache-2.0
// Re-planning of large all-reduces when a link degrades (issue 12, docs/topology.md "Re-planning
// when a link degrades"); the model is topology/replan.h.
//
// The communicator tells the Replanner about every large uncompressed all-reduce it ran by the
// selector's choice (note_call). Every GRADPACK_REPLAN_BYTES of such buffers, at the same call on
// every rank (the calls and their sizes are the same everywhere), the ranks agree on the rates
// their sends measured since the last agreement (one all-reduce MAX of an nranks² matrix of
// doubles) and all decide from that one matrix which ranks are leaves. A decision that changes
// the plan takes effect at the next call, on every rank. GRADPACK_REPLAN=off: never.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "collectives/executor/host_executor.h"
#include "collectives/plan.h"
#include "common/settings.h"
#include "common/status.h"

namespace gradpack::coll {

class Replanner {
 public:
  // One rank per host and at least three ranks, or it stays off (several ranks per host: the
  // leaves would have to move whole hosts; not done).
  void configure(const Settings& settings, int rank, int nranks,
                 const std::vector<int>& host_of_rank);

  bool enabled() const { return enabled_; }
  uint64_t rebuilds() const { return rebuilds_; }
  uint64_t agreements() const { return agreements_; }
  const std::vector<int>& leaves() const { return leaves_; }

  // A large all-reduce the selector plans: with leaves, the plan becomes the hierarchical one with
  // each leaf on its partner's host (the pipelined chain in and out of the leaf, the multi-level
  // or ring part among the others).
  bool adjust(PlanRequest* request, Algorithm* algorithm) const;

  // In place: every value becomes its maximum over the ranks (a collective).
  using AgreeMax = std::function<Status(double* values, size_t count)>;
  // After such an all-reduce of `bytes`: counts it, and when due agrees and decides. `sent`:
  // the executor's send times since the last agreement (taken only when due).
  Status note_call(size_t bytes,
                   const std::function<std::vector<HostExecutor::PeerSendTime>()>& sent,
                   const PlanRequest& shape, const AgreeMax& agree);

  // Tests: this rank's measured rates are multiplied by `scale` before the agreement (a rank that
  // sees its links differently from the others).
  void scale_local_rates_for_testing(double scale) { test_scale_ = scale; }
  // Tests: agree every `bytes` instead of GRADPACK_REPLAN_BYTES.
  void set_interval_bytes_for_testing(uint64_t bytes) { interval_bytes_ = bytes; }

 private:
  Status agree_and_decide(const std::vector<HostExecutor::PeerSendTime>& sent,
                          const PlanRequest& shape, const AgreeMax& agree);

  bool enabled_ = false;
  int rank_ = 0;
  int nranks_ = 1;
  uint64_t interval_bytes_ = 0;
  uint64_t bytes_since_ = 0;
  uint64_t rebuilds_ = 0;
  uint64_t agreements_ = 0;
  double test_scale_ = 1.0;
  std::vector<int> leaves_;
  std::vector<int> leaf_host_of_rank_;  // host_of_rank with each leaf on its partner's host
  std::vector<std::vector<int>> leaf_switch_of_rank_;  // ... and under its partner's switches
};

}  // namespace gradpack::coll
