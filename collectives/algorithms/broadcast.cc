// SPDX-License-Identifier: Apache-2.0
// Broadcast (pipelined chain, binomial tree) and barrier (dissemination), plus the chain reduce
// and chain broadcast that the hierarchical allreduce uses inside a host.

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {

void chain_reduce(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole) {
  const size_t last = group.size() - 1;
  const size_t i = static_cast<size_t>(me);
  for_segments(whole, b.segment(), [&](const Span& s) {
    if (i < last) b.recv_reduce(group[i + 1], s, s);
    if (i > 0) b.send(group[i - 1], s);
  });
}

void chain_broadcast(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole) {
  const size_t last = group.size() - 1;
  const size_t i = static_cast<size_t>(me);
  for_segments(whole, b.segment(), [&](const Span& s) {
    if (i > 0) b.recv(group[i - 1], s);
    if (i < last) b.send(group[i + 1], s);
  });
}

// Binomial tree on ranks relative to the root: v receives from v - lowbit(v) and sends to
// v + 2^k for every 2^k < lowbit(v), largest subtree first. log2 p rounds.
void binomial_broadcast(PlanBuilder& b, const std::vector<int>& group, int me, int root,
                        const Span& whole) {
  const int p = static_cast<int>(group.size());
  const int v = (me - root + p) % p;
  auto rank_of = [&](int rel) { return group[static_cast<size_t>((rel + root) % p)]; };
  int lowbit = 1;
  while (lowbit < p && (v & lowbit) == 0) lowbit <<= 1;  // v == 0: the first power >= p
  std::vector<int> children;
  for (int k = lowbit >> 1; k >= 1; k >>= 1) {
    if (v + k < p) children.push_back(rank_of(v + k));
  }
  for_segments(whole, b.segment(), [&](const Span& s) {
    if (v != 0) b.recv(rank_of(v - lowbit), s);
    for (int c : children) b.send(c, s);
  });
}

Status broadcast_plan(const PlanRequest& req, bool chain, Plan* out) {
  PlanBuilder b(req, out);
  const Span whole{Buf::kRecv, 0, req.count};
  if (req.rank == req.root) {
    for_segments(whole, b.segment(), [&](const Span& s) {
      b.copy(Span{Buf::kSend, s.offset, s.count}, s);
    });
  }
  std::vector<int> group(static_cast<size_t>(req.nranks));
  if (chain) {  // the chain starts at the root: group[i] = root + i
    for (int i = 0; i < req.nranks; ++i)
      group[static_cast<size_t>(i)] = (req.root + i) % req.nranks;
    chain_broadcast(b, group, (req.rank - req.root + req.nranks) % req.nranks, whole);
  } else {
    for (int i = 0; i < req.nranks; ++i) group[static_cast<size_t>(i)] = i;
    binomial_broadcast(b, group, req.rank, req.root, whole);
  }
  return OkStatus();
}

// Dissemination: in round k every rank signals rank+2^k and waits for rank-2^k. After
// ceil(log2 p) rounds every rank has (transitively) heard from every other one.
Status barrier_plan(const PlanRequest& req, Plan* out) {
  PlanBuilder b(req, out);
  const int p = req.nranks;
  int64_t last_recv = -1;
  for (int dist = 1; dist < p; dist <<= 1) {
    Op send;
    send.kind = OpKind::kSend;
    send.peer = (req.rank + dist) % p;
    send.src = Span{Buf::kRecv, 0, 0};
    if (last_recv >= 0) send.deps.push_back(static_cast<uint32_t>(last_recv));
    const uint32_t sent = b.add_raw(send);
    Op recv;
    recv.kind = OpKind::kRecv;
    recv.peer = (req.rank - dist + p) % p;
    recv.dst = Span{Buf::kRecv, 0, 0};
    recv.deps.push_back(sent);
    last_recv = b.add_raw(recv);
  }
  return OkStatus();
}

}  // namespace gradpack::coll::algo
