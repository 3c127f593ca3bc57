// SPDX-License-Identifier: Apache-2.0
// Pipelined double binary tree allreduce.
//
// Two binary trees over the ranks each carry half of the buffer. Both are the in-order tree on
// nodes 1..p (the height of a node is its lowest set bit); tree B renumbers the nodes so that the
// ranks interior in tree A are leaves in tree B and the other way round. In both trees, segments
// flow up (each interior rank reduces its children's segment into its own and passes it to its
// parent), then the root's result flows down. Deps are per segment, so the up and down waves
// pipeline. When the switch tree is known the nodes are the ranks in tree order (levels.cc), so
// that a node's nearest neighbours, its children low in the tree, share its host or switch and
// only the edges near the roots cross uplinks.

#include <algorithm>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {
namespace {

struct TreeLinks {
  int parent = -1;
  std::vector<int> children;
};

int lowbit(int v) { return v & -v; }
// Parent of v in the infinite in-order binary tree on 1, 2, 3, ...: v's lowest set bit gives its
// height; the parent is the neighbour at distance lowbit(v) whose height is one more.
int tree_up(int v) { return (v & (2 * lowbit(v))) != 0 ? v - lowbit(v) : v + lowbit(v); }

// Links of node v (1..p) in that tree cut to 1..p: the root is the largest power of two <= p, the
// leaves are the odd nodes, and a missing right child is replaced by its in-range descendant.
TreeLinks tree_links(int p, int v) {
  TreeLinks links;
  int root = 1;
  while (root * 2 <= p) root *= 2;
  if (v != root) {
    int u = tree_up(v);
    while (u > p) u = tree_up(u);
    links.parent = u;
  }
  const int half = lowbit(v) / 2;
  if (half > 0) {
    links.children.push_back(v - half);
    int c = v + half;
    while (c > p && lowbit(c) > 1) c -= lowbit(c) / 2;
    if (c <= p) links.children.push_back(c);
  }
  return links;
}

// Tree A: rank = node - 1, so its interior ranks are the odd ones. Tree B maps node v to rank
// p - v (mirror) for even p and to v mod p (shift) for odd p; either way its interior ranks are
// even, so every rank forwards (with up to two children) in one tree only and is a leaf in the
// other: at most 2 S bytes sent per rank.
TreeLinks links_of(int p, int rank, bool second) {
  auto to_rank = [&](int v) { return !second ? v - 1 : (p % 2 == 0 ? p - v : v % p); };
  const int v = !second ? rank + 1 : (p % 2 == 0 ? p - rank : (rank == 0 ? p : rank));
  TreeLinks links = tree_links(p, v);
  if (links.parent > 0) links.parent = to_rank(links.parent);
  for (int& c : links.children) c = to_rank(c);
  return links;
}

}  // namespace

Status tree_plan(const PlanRequest& req, Plan* out) {
  if (req.collective != Collective::kAllReduce) return ring_plan(req, out);
  PlanBuilder b(req, out);
  const size_t n = req.count;
  const Span whole{Buf::kRecv, 0, n};
  for_segments(whole, b.segment(), [&](const Span& s) {
    b.copy(Span{Buf::kSend, s.offset, s.count}, s);
  });
  if (req.nranks == 1) return OkStatus();
  const Span halves[2] = {Span{Buf::kRecv, 0, n / 2}, Span{Buf::kRecv, n / 2, n - n / 2}};
  // Positions in tree order (rank order on a flat network): a node's children are its neighbours
  // at distance 1, 2, 4, ..., so the lower levels of both trees stay under one switch.
  const TreeLayout layout = tree_layout(req);
  TreeLinks trees[2] = {links_of(req.nranks, layout.me, false),
                        links_of(req.nranks, layout.me, true)};
  for (TreeLinks& t : trees) {
    if (t.parent >= 0) t.parent = layout.order[static_cast<size_t>(t.parent)];
    for (int& c : t.children) c = layout.order[static_cast<size_t>(c)];
  }
  const size_t seg = b.segment();
  const size_t nseg = (halves[1].count + seg - 1) / seg;  // the larger half
  auto piece = [&](int t, size_t j) {
    const Span& h = halves[t];
    const size_t begin = std::min(h.count, j * seg);
    return Span{h.buf, h.offset + begin, std::min(seg, h.count - begin)};
  };
  for (size_t j = 0; j < nseg; ++j) {  // up: reduce towards the roots
    for (int t = 0; t < 2; ++t) {
      const Span s = piece(t, j);
      if (s.count == 0) continue;
      for (int child : trees[t].children) b.recv_reduce(child, s, s);
      if (trees[t].parent >= 0) b.send(trees[t].parent, s);
    }
  }
  for (size_t j = 0; j < nseg; ++j) {  // down: broadcast the result
    for (int t = 0; t < 2; ++t) {
      const Span s = piece(t, j);
      if (s.count == 0) continue;
      if (trees[t].parent >= 0) b.recv(trees[t].parent, s);
      for (int child : trees[t].children) b.send(child, s);
    }
  }
  return OkStatus();
}

}  // namespace gradpack::coll::algo
