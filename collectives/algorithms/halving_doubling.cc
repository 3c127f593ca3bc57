// SPDX-License-Identifier: Apache-2.0
// Recursive halving-doubling allreduce.
//
// With p' = 2^floor(log2 p) and r = p - p', r pairs of ranks fold (the first 2r in rank order:
// each even one sends its whole buffer to the odd one above it, which reduces) and the giver sits
// out until its partner sends the result back. The p' remaining ranks then run, renumbered,
//  - recursive doubling for small buffers: log2 p' steps exchanging (and reducing) the whole
//    buffer with the partner at distance 1, 2, 4, ...;
//  - Rabenseifner otherwise: a recursive-halving reduce-scatter (each step sends the half of the
//    current range the partner keeps, and reduces the half this rank keeps), then a
//    recursive-doubling allgather retracing the halvings in reverse.
//
// When the switch tree is known (PlanRequest::switch_of_rank) the members are taken in tree order
// (levels.cc): the doubling's first steps (partners at distance 1, 2, ...) then stay under one
// host or switch and only the last ones cross uplinks; the extra ranks of a non-power-of-two size
// fold onto a partner of their own host, else of their own switch, where one is left; and the
// halving of a large buffer starts with the near partners, so the large halves stay local and
// only the last, smallest ones cross.

#include <algorithm>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {
namespace {

// Which members fold onto which before the power-of-two part: member i hands its buffer to
// partner[i] when gives[i], and the p' survivors run the doubling in `survivors` order.
struct Fold {
  std::vector<int> survivors;  // member indices
  std::vector<int> partner;    // -1: not folded
  std::vector<bool> gives;
};

// Pairs r = p - p' members. Pass k pairs members that are next to each other among those not yet
// paired and share keys[k] (the finest locality first: host, then each switch level); a last pass
// pairs neighbours whatever their keys. With no keys that is the classic fold (0,1), (2,3), ...
// of the first 2r members. Enough pairs always remain for the last pass: r <= p / 2.
Fold fold_members(int p, const std::vector<std::vector<int>>& keys) {
  int pow2 = 1;
  while (pow2 * 2 <= p) pow2 *= 2;
  int need = p - pow2;
  Fold f;
  f.partner.assign(static_cast<size_t>(p), -1);
  f.gives.assign(static_cast<size_t>(p), false);
  auto same_key = [&](size_t pass, int a, int b) {  // the last pass: any two are alike
    return pass == keys.size() ||
           keys[pass][static_cast<size_t>(a)] == keys[pass][static_cast<size_t>(b)];
  };
  for (size_t pass = 0; pass <= keys.size() && need > 0; ++pass) {
    int previous = -1;  // the last unpaired member seen in this pass
    for (int i = 0; i < p && need > 0; ++i) {
      if (f.partner[static_cast<size_t>(i)] >= 0) continue;
      if (previous < 0 || !same_key(pass, previous, i)) {
        previous = i;
        continue;
      }
      f.partner[static_cast<size_t>(previous)] = i;
      f.partner[static_cast<size_t>(i)] = previous;
      f.gives[static_cast<size_t>(previous)] = true;
      previous = -1;
      --need;
    }
  }
  for (int i = 0; i < p; ++i) {
    if (!f.gives[static_cast<size_t>(i)]) f.survivors.push_back(i);
  }
  return f;
}

// Rabenseifner among the survivors: recursive halving, then doubling retracing it. `masks` is the
// halving order; the doubling runs it backwards.
void halving_doubling(PlanBuilder& b, const std::vector<int>& peers, int nr, const Span& whole,
                      const std::vector<int>& masks) {
  const size_t seg = b.segment();
  std::vector<Span> given;  // the half sent away at each step, for the allgather
  Span range = whole;
  for (int mask : masks) {  // keep the lower half when this rank's bit for `mask` is 0
    const int partner = peers[static_cast<size_t>(nr ^ mask)];
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
  for (size_t step = masks.size(); step-- > 0;) {  // send what is held, receive the partner's
    const int partner = peers[static_cast<size_t>(nr ^ masks[step])];
    const Span& theirs = given[step];
    for_segments(range, seg, [&](const Span& s) { b.send(partner, s); });
    for_segments(theirs, seg, [&](const Span& s) { b.recv(partner, s); });
    range = Span{range.buf, std::min(range.offset, theirs.offset), range.count + theirs.count};
  }
}

}  // namespace

void hd_allreduce_inplace(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole,
                          size_t elem_size, const HdLayout& layout) {
  const int p = static_cast<int>(group.size());
  if (p == 1) return;
  const Fold f = fold_members(p, layout.fold_keys);
  const size_t seg = b.segment();
  const int partner = f.partner[static_cast<size_t>(me)] < 0
                          ? -1
                          : group[static_cast<size_t>(f.partner[static_cast<size_t>(me)])];
  if (f.gives[static_cast<size_t>(me)]) {  // hand the data over, get the result back
    for_segments(whole, seg, [&](const Span& s) { b.send(partner, s); });
    for_segments(whole, seg, [&](const Span& s) { b.recv(partner, s); });
    return;
  }
  if (partner >= 0) {
    for_segments(whole, seg, [&](const Span& s) { b.recv_reduce(partner, s, s); });
  }
  const int pow2 = static_cast<int>(f.survivors.size());
  std::vector<int> peers;  // the survivors' ranks, in doubling order
  for (int m : f.survivors) peers.push_back(group[static_cast<size_t>(m)]);
  const int nr =
      static_cast<int>(std::find(f.survivors.begin(), f.survivors.end(), me) - f.survivors.begin());
  const bool small =
      whole.count * elem_size <= kSmallMessageBytes || whole.count < static_cast<size_t>(pow2);
  if (small) {  // recursive doubling: the whole buffer with the partner at 1, 2, 4, ...
    for (int mask = 1; mask < pow2; mask <<= 1) {
      const int peer = peers[static_cast<size_t>(nr ^ mask)];
      for_segments(whole, seg, [&](const Span& s) {
        b.send(peer, s);
        b.recv_reduce(peer, s, s);
      });
    }
  } else {
    std::vector<int> masks;  // far partners first, or near first (the large halves stay local)
    for (int mask = pow2 / 2; mask >= 1; mask >>= 1) masks.push_back(mask);
    if (layout.near_first) std::reverse(masks.begin(), masks.end());
    halving_doubling(b, peers, nr, whole, masks);
  }
  if (partner >= 0) {
    for_segments(whole, seg, [&](const Span& s) { b.send(partner, s); });
  }
}

Status hd_plan(const PlanRequest& req, Plan* out) {
  if (req.collective != Collective::kAllReduce) return ring_plan(req, out);
  PlanBuilder b(req, out);
  const Span whole{Buf::kRecv, 0, req.count};
  for_segments(whole, b.segment(), [&](const Span& s) {
    b.copy(Span{Buf::kSend, s.offset, s.count}, s);
  });
  const TreeLayout tree = tree_layout(req);
  HdLayout layout;
  layout.fold_keys = tree.locality;
  layout.near_first = !req.switch_of_rank.empty();
  hd_allreduce_inplace(b, tree.order, tree.me, whole, req.elem_size, layout);
  return OkStatus();
}

}  // namespace gradpack::coll::algo
