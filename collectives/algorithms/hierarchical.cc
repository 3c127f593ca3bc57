// SPDX-License-Identifier: Apache-2.0
// Hierarchical (two-level) allreduce.
//
// Ranks are grouped by host_of_rank. Inside a host, a pipelined chain reduces the buffer to the
// host's leader (its lowest rank); the leaders allreduce among themselves (ring, or recursive
// halving-doubling for small buffers); then a pipelined chain broadcasts the result back inside
// each host. Only the leaders talk across hosts, so the network sees 2(N-1) ring steps for N
// hosts instead of 2(p-1), and intra-host links carry the rest. When the switches above the hosts
// are known (PlanRequest::switch_of_rank) the leaders' part has a level per switch level instead
// (levels.cc).

#include "collectives/algorithms/algorithms.h"
#include "topology/host.h"

namespace gradpack::coll::algo {

Status hier_plan(const PlanRequest& req, Plan* out) {
  if (req.collective != Collective::kAllReduce) return ring_plan(req, out);
  PlanBuilder b(req, out);
  const topology::HostGroups hosts = topology::host_groups(req.host_of_rank, req.nranks, req.rank);
  const Span whole{Buf::kRecv, 0, req.count};
  for_segments(whole, b.segment(), [&](const Span& s) {
    b.copy(Span{Buf::kSend, s.offset, s.count}, s);
  });
  // Switches above the hosts: a level per switch level. Large buffers: the leaders' ring in
  // pieces, so that a host's chain overlaps with it. Leaves never lead their host.
  if (!req.switch_of_rank.empty() || !req.leaves.empty() ||
      req.count * req.elem_size > kSmallMessageBytes) {
    multilevel_allreduce(b, req, whole, /*compressed=*/false);
    return OkStatus();
  }
  chain_reduce(b, hosts.local, hosts.me_local, whole);
  if (hosts.me_local == 0) {
    if (req.count * req.elem_size <= kSmallMessageBytes) {
      hd_allreduce_inplace(b, hosts.leaders, hosts.me_leader, whole, req.elem_size);
    } else {
      ring_allreduce_inplace(b, hosts.leaders, hosts.me_leader, whole);
    }
  }
  chain_broadcast(b, hosts.local, hosts.me_local, whole);
  return OkStatus();
}

}  // namespace gradpack::coll::algo
