// SPDX-License-Identifier: Apache-2.0
#include "collectives/selector.h"

#include <set>

#include "collectives/algorithms/algorithms.h"
#include "common/settings.h"
#include "topology/cost_model.h"

namespace gradpack::coll {
namespace {

int floor_log2(int x) {
  int k = 0;
  while ((2 << k) <= x) ++k;
  return k;
}

// Latency steps (messages in sequence) of a one-segment allreduce.
int hd_steps(int p) {
  const bool pow2 = (p & (p - 1)) == 0;
  return floor_log2(p) + (pow2 ? 0 : 2);  // + fold and unfold
}
int tree_steps(int p) { return 2 * floor_log2(p); }  // up and down the balanced tree

}  // namespace

Algorithm select_algorithm(const PlanRequest& req) {
  const size_t bytes = req.count * req.elem_size;
  const bool small = bytes <= algo::kSmallMessageBytes;
  switch (req.collective) {
    case Collective::kBroadcast:
      return small ? Algorithm::kTree : Algorithm::kRing;
    case Collective::kReduceScatter:
    case Collective::kAllGather:
    case Collective::kBarrier:
    case Collective::kSendRecv:
      return Algorithm::kRing;
    case Collective::kAllReduce:
      break;
  }
  const int p = req.nranks;
  if (p <= 2) return small ? Algorithm::kHalvingDoubling : Algorithm::kRing;
  if (small) {
    return tree_steps(p) < hd_steps(p) ? Algorithm::kTree : Algorithm::kHalvingDoubling;
  }
  // Switches above the hosts: over oversubscribed uplinks the multi-level plan sends each host's
  // share across an uplink once each way, where a ring (even in tree order) sends 2(p-1)/p of
  // the buffer through each uplink it crosses; over full-rate uplinks the tree-ordered ring
  // keeps every link busy with fewer steps (measured: docs/topology.md).
  if (!req.switch_of_rank.empty()) {
    const std::set<int> leaves(req.switch_of_rank[0].begin(), req.switch_of_rank[0].end());
    if (leaves.size() > 1) {
      return req.uplinks_oversubscribed ? Algorithm::kHierarchical : Algorithm::kRing;
    }
  }
  if (!req.host_of_rank.empty()) {
    const std::set<int> hosts(req.host_of_rank.begin(), req.host_of_rank.end());
    const bool shared_host = hosts.size() < static_cast<size_t>(p);
    if (hosts.size() > 1 && shared_host) return Algorithm::kHierarchical;
  }
  return Algorithm::kRing;
}

Status resolve_algorithm(Algorithm forced, const PlanRequest& request, Algorithm* out) {
  if (forced != Algorithm::kAuto) {
    *out = forced;
    return OkStatus();
  }
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  Algorithm from_env = Algorithm::kAuto;
  GP_RETURN_IF_ERROR(parse_algorithm(settings->get(SettingId::kAlgo), &from_env));
  *out = from_env != Algorithm::kAuto ? from_env : select_algorithm(request);
  return OkStatus();
}

Status select_compressed_algorithm(Algorithm requested, bool from_options, const PlanRequest& shape,
                                   const CodecSet& codecs, gp_dtype_t dtype, Algorithm* out) {
  Algorithm algorithm = requested;
  switch (algorithm) {
    case Algorithm::kHalvingDoubling:
    case Algorithm::kTree:
      if (from_options) {
        return InvalidArgument(std::string("compressed all-reduce has no ") +
                               algorithm_name(algorithm) +
                               " algorithm: use direct, sparse, hier or ring (docs/algorithms.md)");
      }
      algorithm = Algorithm::kAuto;
      break;
    case Algorithm::kSparse:
      if (!codecs.topk) {
        return InvalidArgument("the sparse algorithm all-gathers top-k frames: codec \"" +
                               codecs.canonical + "\" is not top-k (use direct)");
      }
      break;
    default:
      break;
  }
  if (algorithm == Algorithm::kAuto) {
    algorithm = select_algorithm(shape) == Algorithm::kHierarchical ? Algorithm::kHierarchical
                                                                    : Algorithm::kDirect;
    if (codecs.topk &&
        topology::sparse_wins(shape.nranks, codecs.worker->max_encoded_bytes(shape.count, dtype),
                              codecs.server->max_encoded_bytes(shape.count, dtype))) {
      algorithm = Algorithm::kSparse;
    }
  }
  *out = algorithm;
  return OkStatus();
}

Status uncompressed_algorithm(Algorithm requested, bool from_options, bool automatic,
                              Algorithm* out) {
  *out = requested;
  if (requested != Algorithm::kDirect && requested != Algorithm::kSparse) return OkStatus();
  if (from_options && !automatic) {
    return InvalidArgument(std::string("algorithm ") + algorithm_name(requested) +
                           " needs a codec (gp_allreduce_opts_t.codec or GRADPACK_COMPRESS)");
  }
  *out = Algorithm::kAuto;
  return OkStatus();
}

}  // namespace gradpack::coll
