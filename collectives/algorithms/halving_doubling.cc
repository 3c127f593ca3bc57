// SPDX-License-Identifier: Apache-2.0
// Recursive halving-doubling allreduce.
//
// With p' = 2^floor(log2 p) and r = p - p', the first 2r ranks pair up: each even one sends its
// whole buffer to the odd one above it (which reduces) and sits out until the odd one sends the
// result back. The p' remaining ranks then run, on renumbered ranks,
//  - recursive doubling for small buffers: log2 p' steps exchanging (and reducing) the whole
//    buffer with the partner at distance 1, 2, 4, ...;
//  - Rabenseifner otherwise: a recursive-halving reduce-scatter (each step sends the half of the
//    current range the partner keeps, and reduces the half this rank keeps), then a
//    recursive-doubling allgather retracing the halvings in reverse.

#include <algorithm>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {
namespace {

struct Fold {
  int pow2 = 1;      // p'
  int extra = 0;     // r
  int newrank = -1;  // -1: this rank sits out
};

Fold fold_of(int p, int me) {
  Fold f;
  while (f.pow2 * 2 <= p) f.pow2 *= 2;
  f.extra = p - f.pow2;
  if (me < 2 * f.extra) {
    f.newrank = me % 2 == 1 ? me / 2 : -1;
  } else {
    f.newrank = me - f.extra;
  }
  return f;
}

int index_of_newrank(const Fold& f, int newrank) {
  return newrank < f.extra ? 2 * newrank + 1 : newrank + f.extra;
}

}  // namespace

void hd_allreduce_inplace(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole,
                          size_t elem_size) {
  const int p = static_cast<int>(group.size());
  if (p == 1) return;
  const Fold f = fold_of(p, me);
  const size_t seg = b.segment();
  if (me < 2 * f.extra && f.newrank < 0) {  // even: hand the data over, get the result back
    const int partner = group[static_cast<size_t>(me) + 1];
    for_segments(whole, seg, [&](const Span& s) { b.send(partner, s); });
    for_segments(whole, seg, [&](const Span& s) { b.recv(partner, s); });
    return;
  }
  if (me < 2 * f.extra) {
    const int partner = group[static_cast<size_t>(me - 1)];
    for_segments(whole, seg, [&](const Span& s) { b.recv_reduce(partner, s, s); });
  }
  const int nr = f.newrank;
  auto peer = [&](int mask) { return group[static_cast<size_t>(index_of_newrank(f, nr ^ mask))]; };
  const bool small =
      whole.count * elem_size <= kSmallMessageBytes || whole.count < static_cast<size_t>(f.pow2);
  if (small) {
    for (int mask = 1; mask < f.pow2; mask <<= 1) {
      const int partner = peer(mask);
      for_segments(whole, seg, [&](const Span& s) {
        b.send(partner, s);
        b.recv_reduce(partner, s, s);
      });
    }
  } else {
    // Halving: keep the lower half when this rank's bit for `mask` is 0.
    std::vector<Span> given;  // the half sent away at each step, for the allgather
    Span range = whole;
    for (int mask = f.pow2 / 2; mask >= 1; mask >>= 1) {
      const int partner = peer(mask);
      const Span lower{range.buf, range.offset, range.count / 2};
      const Span upper{range.buf, range.offset + lower.count, range.count - lower.count};
      const bool keep_lower = (nr & mask) == 0;
      const Span keep = keep_lower ? lower : upper;
      const Span give = keep_lower ? upper : lower;
      for_segments(give, seg, [&](const Span& s) { b.send(partner, s); });
      for_segments(keep, seg, [&](const Span& s) { b.recv_reduce(partner, s, s); });
      given.push_back(give);
      range = keep;
    }
    // Doubling: send the range held so far, receive the partner's (the half given away).
    for (int mask = 1, step = static_cast<int>(given.size()) - 1; mask < f.pow2;
         mask <<= 1, --step) {
      const int partner = peer(mask);
      const Span& theirs = given[static_cast<size_t>(step)];
      for_segments(range, seg, [&](const Span& s) { b.send(partner, s); });
      for_segments(theirs, seg, [&](const Span& s) { b.recv(partner, s); });
      range = Span{range.buf, std::min(range.offset, theirs.offset), range.count + theirs.count};
    }
  }
  if (me < 2 * f.extra) {
    const int partner = group[static_cast<size_t>(me - 1)];
    for_segments(whole, seg, [&](const Span& s) { b.send(partner, s); });
  }
}

Status hd_plan(const PlanRequest& req, Plan* out) {
  if (req.collective != Collective::kAllReduce) return ring_plan(req, out);
  PlanBuilder b(req, out);
  std::vector<int> group(static_cast<size_t>(req.nranks));
  for (int r = 0; r < req.nranks; ++r) group[static_cast<size_t>(r)] = r;
  const Span whole{Buf::kRecv, 0, req.count};
  for_segments(whole, b.segment(), [&](const Span& s) {
    b.copy(Span{Buf::kSend, s.offset, s.count}, s);
  });
  hd_allreduce_inplace(b, group, req.rank, whole, req.elem_size);
  return OkStatus();
}

}  // namespace gradpack::coll::algo
