// SPDX-License-Identifier: Apache-2.0
#include "collectives/plan.h"

#include <string>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll {

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::kAllReduce:
      return "allreduce";
    case Collective::kReduceScatter:
      return "reducescatter";
    case Collective::kAllGather:
      return "allgather";
    case Collective::kBroadcast:
      return "broadcast";
    case Collective::kBarrier:
      return "barrier";
    case Collective::kSendRecv:
      return "sendrecv";
  }
  return "unknown";
}

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::kAuto:
      return "auto";
    case Algorithm::kRing:
      return "ring";
    case Algorithm::kHalvingDoubling:
      return "hd";
    case Algorithm::kTree:
      return "tree";
    case Algorithm::kHierarchical:
      return "hier";
    case Algorithm::kDirect:
      return "direct";
    case Algorithm::kSparse:
      return "sparse";
  }
  return "unknown";
}

Status parse_algorithm(const std::string& text, Algorithm* out) {
  for (Algorithm a :
       {Algorithm::kAuto, Algorithm::kRing, Algorithm::kHalvingDoubling, Algorithm::kTree,
        Algorithm::kHierarchical, Algorithm::kDirect, Algorithm::kSparse}) {
    if (text == algorithm_name(a)) {
      *out = a;
      return OkStatus();
    }
  }
  return InvalidArgument("unknown algorithm \"" + text +
                         "\"; expected auto, ring, hd, tree, hier, direct or sparse");
}

Status validate_plan_request(const PlanRequest& r) {
  if (r.nranks < 1) return InvalidArgument("plan: nranks must be at least 1");
  if (r.rank < 0 || r.rank >= r.nranks)
    return InvalidArgument("plan: rank " + std::to_string(r.rank) + " is not in 0.." +
                           std::to_string(r.nranks - 1));
  if (r.elem_size == 0) return InvalidArgument("plan: elem_size must be positive");
  if (r.segment_bytes < r.elem_size)
    return InvalidArgument("plan: segment_bytes (" + std::to_string(r.segment_bytes) +
                           ") is smaller than one element");
  if (r.collective == Collective::kSendRecv &&
      (r.send_peer < 0 || r.send_peer >= r.nranks || r.recv_peer < 0 || r.recv_peer >= r.nranks)) {
    return InvalidArgument("sendrecv: peers " + std::to_string(r.send_peer) + " and " +
                           std::to_string(r.recv_peer) + " must be ranks of " +
                           std::to_string(r.nranks));
  }
  if (r.collective == Collective::kBroadcast && (r.root < 0 || r.root >= r.nranks))
    return InvalidArgument("plan: broadcast root " + std::to_string(r.root) + " is not a rank");
  if (!r.host_of_rank.empty()) {
    if (r.host_of_rank.size() != static_cast<size_t>(r.nranks))
      return InvalidArgument("plan: host_of_rank has " + std::to_string(r.host_of_rank.size()) +
                             " entries for " + std::to_string(r.nranks) + " ranks");
    for (int h : r.host_of_rank) {
      if (h < 0 || h >= r.nranks) return InvalidArgument("plan: host index out of range");
    }
  }
  for (size_t l = 0; l < r.switch_of_rank.size(); ++l) {
    const std::vector<int>& level = r.switch_of_rank[l];
    if (level.size() != static_cast<size_t>(r.nranks))
      return InvalidArgument("plan: switch level " + std::to_string(l) + " has " +
                             std::to_string(level.size()) + " entries for " +
                             std::to_string(r.nranks) + " ranks");
    std::vector<int> of_host(static_cast<size_t>(r.nranks), -1);  // host indices < nranks
    for (int q = 0; q < r.nranks; ++q) {
      const int sw = level[static_cast<size_t>(q)];
      if (sw < 0) return InvalidArgument("plan: negative switch index");
      if (r.host_of_rank.empty()) continue;
      int& seen = of_host[static_cast<size_t>(r.host_of_rank[static_cast<size_t>(q)])];
      if (seen >= 0 && seen != sw)
        return InvalidArgument("plan: rank " + std::to_string(q) +
                               " shares a host with another rank but not switch level " +
                               std::to_string(l));
      seen = sw;
    }
  }
  for (int leaf : r.leaves) {
    if (leaf < 0 || leaf >= r.nranks) return InvalidArgument("plan: leaf rank out of range");
  }
  if (r.compressed && r.collective != Collective::kAllReduce) {
    return InvalidArgument("plan: only all-reduce can be compressed");
  }
  return OkStatus();
}

Status make_plan(Algorithm algorithm, const PlanRequest& request, Plan* out) {
  GP_RETURN_IF_ERROR(validate_plan_request(request));
  *out = Plan{};
  const bool small = request.count * request.elem_size <= algo::kSmallMessageBytes;
  // Reduce-scatter and allgather have only a ring; broadcast a chain (large) and a binomial tree
  // (small); barrier one dissemination plan. The algorithm name records what actually runs.
  switch (request.collective) {
    case Collective::kReduceScatter:
    case Collective::kAllGather:
      if (algorithm == Algorithm::kAuto) return InvalidArgument("make_plan: resolve kAuto first");
      out->algorithm = "ring";
      return algo::ring_plan(request, out);
    case Collective::kBroadcast: {
      bool chain = false;
      switch (algorithm) {
        case Algorithm::kAuto:
          return InvalidArgument("make_plan: resolve kAuto first");
        case Algorithm::kRing:
          chain = true;
          break;
        case Algorithm::kHalvingDoubling:
        case Algorithm::kTree:
          chain = false;
          break;
        case Algorithm::kHierarchical:
          chain = !small;
          break;
        case Algorithm::kDirect:
        case Algorithm::kSparse:
          return Unsupported(std::string("the ") + algorithm_name(algorithm) +
                             " algorithm is for compressed all-reduce only");
      }
      out->algorithm = chain ? "chain" : "binomial";
      return algo::broadcast_plan(request, chain, out);
    }
    case Collective::kBarrier:
      out->algorithm = "dissemination";
      return algo::barrier_plan(request, out);
    case Collective::kSendRecv:
      out->algorithm = "p2p";
      return algo::sendrecv_plan(request, out);
    case Collective::kAllReduce:
      break;
  }
  out->algorithm = algorithm_name(algorithm);
  if (request.compressed) {
    switch (algorithm) {
      case Algorithm::kDirect:
        return algo::direct_plan(request, out);
      case Algorithm::kSparse:
        return algo::sparse_plan(request, out);
      case Algorithm::kRing:
        return algo::ring_compressed_plan(request, out);
      case Algorithm::kHierarchical:
        return algo::hier_compressed_plan(request, out);
      default:
        return Unsupported(std::string("compressed all-reduce has no ") +
                           algorithm_name(algorithm) +
                           " algorithm; use direct, sparse, ring or hier (docs/algorithms.md)");
    }
  }
  switch (algorithm) {
    case Algorithm::kDirect:
    case Algorithm::kSparse:
      return Unsupported(std::string("the ") + algorithm_name(algorithm) +
                         " algorithm is for compressed all-reduce only: give a codec");
    case Algorithm::kRing:
      return algo::ring_plan(request, out);
    case Algorithm::kHalvingDoubling:
      return algo::hd_plan(request, out);
    case Algorithm::kTree:
      return algo::tree_plan(request, out);
    case Algorithm::kHierarchical:
      return algo::hier_plan(request, out);
    case Algorithm::kAuto:
      break;
  }
  return InvalidArgument("make_plan: resolve kAuto with select_algorithm first");
}

}  // namespace gradpack::coll
