// SPDX-License-Identifier: Apache-2.0
#include "collectives/replanner.h"

#include "collectives/algorithms/algorithms.h"
#include "common/log.h"
#include "topology/host.h"
#include "topology/replan.h"

namespace gradpack::coll {

void Replanner::configure(const Settings& settings, int rank, int nranks,
                          const std::vector<int>& host_of_rank) {
  rank_ = rank;
  nranks_ = nranks;
  interval_bytes_ = static_cast<uint64_t>(settings.get_int(SettingId::kReplanBytes));
  const bool one_per_host = host_of_rank.empty() || topology::host_count(host_of_rank) ==
                                                        static_cast<int>(host_of_rank.size());
  enabled_ = settings.get(SettingId::kReplan) == "on" && nranks >= 3 && one_per_host;
  if (settings.get(SettingId::kReplan) == "on" && !one_per_host && rank == 0) {
    GP_LOG_INFO(kTopo, "re-planning is off: hosts run several ranks");
  }
}

bool Replanner::adjust(PlanRequest* request, Algorithm* algorithm) const {
  if (leaves_.empty() || request->collective != Collective::kAllReduce || request->compressed ||
      request->count * request->elem_size <= algo::kSmallMessageBytes) {
    return false;
  }
  request->host_of_rank = leaf_host_of_rank_;
  request->switch_of_rank = leaf_switch_of_rank_;
  request->leaves = leaves_;
  *algorithm = Algorithm::kHierarchical;
  return true;
}

Status Replanner::note_call(size_t bytes,
                            const std::function<std::vector<HostExecutor::PeerSendTime>()>& sent,
                            const PlanRequest& shape, const AgreeMax& agree) {
  if (!enabled_ || bytes <= algo::kSmallMessageBytes) return OkStatus();
  bytes_since_ += bytes;
  if (bytes_since_ < interval_bytes_) return OkStatus();
  bytes_since_ = 0;
  return agree_and_decide(sent(), shape, agree);
}

Status Replanner::agree_and_decide(const std::vector<HostExecutor::PeerSendTime>& sent,
                                   const PlanRequest& shape, const AgreeMax& agree) {
  const auto n = static_cast<size_t>(nranks_);
  topology::LinkRates rates;
  rates.nranks = nranks_;
  rates.Bps.assign(n * n, 0.0);
  for (size_t p = 0; p < sent.size() && p < n; ++p) {
    if (sent[p].bytes < topology::kMinMeasuredBytes || sent[p].busy_s <= 0) continue;
    rates.Bps[static_cast<size_t>(rank_) * n + p] =
        test_scale_ * static_cast<double>(sent[p].bytes) / sent[p].busy_s;
  }
  GP_RETURN_IF_ERROR(agree(rates.Bps.data(), rates.Bps.size()));
  ++agreements_;
  topology::ReplanInput in;
  in.rates = std::move(rates);
  in.order = algo::tree_order(shape);
  if (!shape.switch_of_rank.empty()) in.leaf_switch = shape.switch_of_rank[0];
  in.leaves = leaves_;
  in.pieces = algo::kMaxLevelPieces;
  const topology::ReplanChoice choice = topology::choose_leaves(in);
  GP_LOG_DEBUG(kTopo, "rank %d: link check %llu: %s", rank_,
               static_cast<unsigned long long>(agreements_), choice.why.c_str());
  if (!choice.rebuild) return OkStatus();
  ++rebuilds_;
  leaves_ = choice.leaves;
  leaf_host_of_rank_ = shape.host_of_rank;
  if (leaf_host_of_rank_.empty()) {
    leaf_host_of_rank_.resize(n);
    for (size_t r = 0; r < n; ++r) leaf_host_of_rank_[r] = static_cast<int>(r);
  }
  leaf_switch_of_rank_ = shape.switch_of_rank;
  std::string plan = leaves_.empty() ? "no leaves" : "";
  for (size_t i = 0; i < leaves_.size(); ++i) {
    const auto leaf = static_cast<size_t>(leaves_[i]);
    const auto partner = static_cast<size_t>(choice.partners[i]);
    leaf_host_of_rank_[leaf] = leaf_host_of_rank_[partner];
    for (std::vector<int>& level : leaf_switch_of_rank_) level[leaf] = level[partner];
    plan += (i ? ", rank " : "rank ") + std::to_string(leaves_[i]) + " a leaf of rank " +
            std::to_string(choice.partners[i]);
  }
  if (rank_ == 0) {
    GP_LOG_INFO(kTopo, "re-planned large all-reduces (rebuild %llu): %s (%s)",
                static_cast<unsigned long long>(rebuilds_), plan.c_str(), choice.why.c_str());
  }
  return OkStatus();
}

}  // namespace gradpack::coll
