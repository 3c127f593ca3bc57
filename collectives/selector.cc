#include "collectives/selector.h"

#include <set>

#include "collectives/algorithms/algorithms.h"
#include "common/settings.h"

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

}  // namespace gradpack::coll
