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

Status hier_plan(const PlanRequest& req, Plan* out) {
  if (req.collective != Collective::kAllReduce) return ring_plan(req, out);
  PlanBuilder b(req, out);
  const int p = req.nranks;
  auto host = [&](int r) {
    return req.host_of_rank.empty() ? r : req.host_of_rank[static_cast<size_t>(r)];
  };
  std::vector<int> local;    // ranks of this host, ascending; local[0] is the leader
  std::vector<int> leaders;  // lowest rank of every host, ascending
  std::vector<bool> host_seen;
  for (int r = 0; r < p; ++r) {
    const auto h = static_cast<size_t>(host(r));
    if (h >= host_seen.size()) host_seen.resize(h + 1, false);
    if (!host_seen[h]) {
      host_seen[h] = true;
      leaders.push_back(r);
    }
    if (host(r) == host(req.rank)) local.push_back(r);
  }
  const int me_local =
      static_cast<int>(std::find(local.begin(), local.end(), req.rank) - local.begin());
  const Span whole{Buf::kRecv, 0, req.count};
  for_segments(whole, b.segment(), [&](const Span& s) {
    b.copy(Span{Buf::kSend, s.offset, s.count}, s);
  });
  chain_reduce(b, local, me_local, whole);
  if (me_local == 0) {
    const int me_leader =
        static_cast<int>(std::find(leaders.begin(), leaders.end(), req.rank) - leaders.begin());
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
