// SPDX-License-Identifier: Apache-2.0
// Ring algorithms: chunked, pipelined reduce-scatter and allgather around the group.
//
// The buffer is cut into one block per rank and every block into segments of at most
// segment_bytes. In step s of the reduce-scatter, rank i sends block i-s-1 to its right neighbour
// and receives block i-s-2 from its left one, reducing it into its own copy; a segment is
// forwarded as soon as it is reduced, so segments of consecutive steps overlap. After p-1 steps
// rank i holds the reduced block i; the allgather then circulates the reduced blocks the same way.

#include <algorithm>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {
namespace {

int wrap(int i, int p) { return ((i % p) + p) % p; }

}  // namespace

void ring_reduce_scatter_inplace(PlanBuilder& b, const std::vector<int>& group, int me,
                                 const Span& whole) {
  const int p = static_cast<int>(group.size());
  if (p == 1) return;
  const int right = group[wrap(me + 1, p)];
  const int left = group[wrap(me - 1, p)];
  for (int s = 0; s < p - 1; ++s) {
    const Span out = block_of(whole, p, wrap(me - s - 1, p));
    const Span in = block_of(whole, p, wrap(me - s - 2, p));
    for_segments(out, b.segment(), [&](const Span& seg) { b.send(right, seg); });
    for_segments(in, b.segment(), [&](const Span& seg) { b.recv_reduce(left, seg, seg); });
  }
}

void ring_allgather(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole) {
  const int p = static_cast<int>(group.size());
  if (p == 1) return;
  const int right = group[wrap(me + 1, p)];
  const int left = group[wrap(me - 1, p)];
  for (int s = 0; s < p - 1; ++s) {
    const Span out = block_of(whole, p, wrap(me - s, p));
    const Span in = block_of(whole, p, wrap(me - s - 1, p));
    for_segments(out, b.segment(), [&](const Span& seg) { b.send(right, seg); });
    for_segments(in, b.segment(), [&](const Span& seg) { b.recv(left, seg); });
  }
}

void ring_allreduce_inplace(PlanBuilder& b, const std::vector<int>& group, int me,
                            const Span& whole) {
  ring_reduce_scatter_inplace(b, group, me, whole);
  ring_allgather(b, group, me, whole);
}

namespace {

std::vector<int> all_ranks(int nranks) {
  std::vector<int> group(static_cast<size_t>(nranks));
  for (int r = 0; r < nranks; ++r) group[static_cast<size_t>(r)] = r;
  return group;
}

// Reduce-scatter from kSend (never written) into kRecv. Partial sums travel through two scratch
// blocks used alternately, so a block can be received while the previous one is still sent.
void ring_reduce_scatter(PlanBuilder& b, const PlanRequest& req) {
  const int p = req.nranks;
  const int me = req.rank;
  const size_t n = req.count;
  const Span send_all{Buf::kSend, 0, n * static_cast<size_t>(p)};
  const Span mine{Buf::kRecv, 0, n};
  if (p == 1) {
    b.copy(Span{Buf::kSend, 0, n}, mine);
    return;
  }
  const int right = wrap(me + 1, p);
  const int left = wrap(me - 1, p);
  auto slot = [n](int s) { return Span{Buf::kScratch, static_cast<size_t>(s % 2) * n, n}; };
  for (int s = 0; s < p - 1; ++s) {
    // Step 0 sends this rank's own contribution; later steps forward what step s-1 reduced.
    const Span out = s == 0 ? block_of(send_all, p, wrap(me - 1, p)) : slot(s - 1);
    const Span own = block_of(send_all, p, wrap(me - s - 2, p));
    const Span in = s == p - 2 ? mine : slot(s);
    for_segments(out, b.segment(), [&](const Span& seg) { b.send(right, seg); });
    for (size_t done = 0; done < n; done += b.segment()) {
      const size_t k = std::min(b.segment(), n - done);
      b.recv_reduce(left, Span{own.buf, own.offset + done, k}, Span{in.buf, in.offset + done, k});
    }
  }
}

}  // namespace

Status ring_plan(const PlanRequest& req, Plan* out) {
  PlanBuilder b(req, out);
  const std::vector<int> group = all_ranks(req.nranks);
  const size_t n = req.count;
  switch (req.collective) {
    case Collective::kAllReduce: {
      const Span whole{Buf::kRecv, 0, n};
      for_segments(whole, b.segment(), [&](const Span& seg) {
        b.copy(Span{Buf::kSend, seg.offset, seg.count}, seg);
      });
      // Along the switch tree when it is known (any order works: every block goes round).
      const std::vector<int> ring = req.switch_of_rank.empty() ? group : tree_order(req);
      const int me = static_cast<int>(std::find(ring.begin(), ring.end(), req.rank) - ring.begin());
      ring_allreduce_inplace(b, ring, me, whole);
      return OkStatus();
    }
    case Collective::kReduceScatter:
      ring_reduce_scatter(b, req);
      return OkStatus();
    case Collective::kAllGather: {
      const Span whole{Buf::kRecv, 0, n * static_cast<size_t>(req.nranks)};
      const Span mine = block_of(whole, req.nranks, req.rank);
      for_segments(mine, b.segment(), [&](const Span& seg) {
        b.copy(Span{Buf::kSend, seg.offset - mine.offset, seg.count}, seg);
      });
      ring_allgather(b, group, req.rank, whole);
      return OkStatus();
    }
    case Collective::kBroadcast:
      return broadcast_plan(req, /*chain=*/true, out);
    case Collective::kBarrier:
      return barrier_plan(req, out);
    case Collective::kSendRecv:
      return sendrecv_plan(req, out);
  }
  return Internal("ring_plan: unknown collective");
}

}  // namespace gradpack::coll::algo
