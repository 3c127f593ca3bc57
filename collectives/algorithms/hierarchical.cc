// Hierarchical (two-level) allreduce.
//
// Ranks are grouped by host_of_rank. Inside a host, a pipelined chain reduces the buffer to the
// host's leader (its lowest rank); the leaders allreduce among themselves (ring, or recursive
// halving-doubling for small buffers); then a pipelined chain broadcasts the result back inside
// each host. Only the leaders talk across hosts, so the network sees 2(N-1) ring steps for N
// hosts instead of 2(p-1), and intra-host links carry the rest.

#include <algorithm>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {

void host_groups(const PlanRequest& req, std::vector<int>* local, std::vector<int>* leaders,
                 int* me_local, int* me_leader) {
  auto host = [&](int r) {
    return req.host_of_rank.empty() ? r : req.host_of_rank[static_cast<size_t>(r)];
  };
  local->clear();
  leaders->clear();
  std::vector<bool> host_seen;
  for (int r = 0; r < req.nranks; ++r) {
    const auto h = static_cast<size_t>(host(r));
    if (h >= host_seen.size()) host_seen.resize(h + 1, false);
    if (!host_seen[h]) {
      host_seen[h] = true;
      leaders->push_back(r);
    }
    if (host(r) == host(req.rank)) local->push_back(r);
  }
  auto index_of = [&](const std::vector<int>& v) {
    auto it = std::find(v.begin(), v.end(), req.rank);
    return it == v.end() ? -1 : static_cast<int>(it - v.begin());
  };
  *me_local = index_of(*local);
  *me_leader = index_of(*leaders);
}

Status hier_plan(const PlanRequest& req, Plan* out) {
  if (req.collective != Collective::kAllReduce) return ring_plan(req, out);
  PlanBuilder b(req, out);
  std::vector<int> local, leaders;
  int me_local = 0, me_leader = -1;
  host_groups(req, &local, &leaders, &me_local, &me_leader);
  const Span whole{Buf::kRecv, 0, req.count};
  for_segments(whole, b.segment(), [&](const Span& s) {
    b.copy(Span{Buf::kSend, s.offset, s.count}, s);
  });
  chain_reduce(b, local, me_local, whole);
  if (me_local == 0) {
    if (req.count * req.elem_size <= kSmallMessageBytes) {
      hd_allreduce_inplace(b, leaders, me_leader, whole, req.elem_size);
    } else {
      ring_allreduce_inplace(b, leaders, me_leader, whole);
    }
  }
  chain_broadcast(b, local, me_local, whole);
  return OkStatus();
}

}  // namespace gradpack::coll::algo
