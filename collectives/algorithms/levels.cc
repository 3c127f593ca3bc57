// SPDX-License-Identifier: Apache-2.0
// Plans that follow the switch tree (PlanRequest::switch_of_rank).
//
// The ring in tree order: ranks sorted by their switches from the top down, then host, then rank.
// Consecutive ranks then share the lowest switch they can, so the ring crosses each switch's
// uplink exactly twice (once out, once back in): one flow per direction on every uplink, where
// rank order on interleaved placements crosses an uplink at every hop.
//
// The multi-level all-reduce: inside each host a pipelined chain reduces to the host's leader
// (as the two-level plan does); then, level by level from the leaf switches up, the leaders under
// one switch reduce-scatter what they hold among themselves, so each keeps a 1/g part; the
// members of the next level are those keeping the same part under different switches. The top
// all-gathers back down the same way. Each uplink then carries each byte of its switch's share
// once in each direction: for R racks of h hosts, 2(R-1)/R · S/h per host across the uplinks
// instead of a ring's 2(p-1)/p · S through every link. A level whose groups differ in size cannot
// split alike (the parts would not line up above it): its leaders chain-reduce to the group's
// first and only that one goes on up (and broadcasts back).
#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>

#include "collectives/algorithms/algorithms.h"
#include "topology/host.h"

namespace gradpack::coll::algo {

namespace {

int host_of(const PlanRequest& req, int r) {
  return req.host_of_rank.empty() ? r : req.host_of_rank[static_cast<size_t>(r)];
}

// One step on the way up, replayed in reverse on the way down.
struct Step {
  bool split = false;  // reduce-scatter (true) or chain reduce to group[0] (false)
  std::vector<int> group;
  int me = -1;
  Span span;  // what the group held before the step
};

// Every active unit's place: its part (indices of the parts it kept at each split) and whether
// it still goes up. Units are host leaders, in tree order.
struct Unit {
  int rank = 0;
  std::vector<int> part;
  bool active = true;
};

// The members of `me`'s group at `level`: active units under the same switch with the same part.
std::map<std::tuple<int, std::vector<int>>, std::vector<size_t>> groups_at(
    const PlanRequest& req, const std::vector<Unit>& units, size_t level) {
  std::map<std::tuple<int, std::vector<int>>, std::vector<size_t>> groups;
  for (size_t u = 0; u < units.size(); ++u) {
    if (!units[u].active) continue;
    const int sw = level < req.switch_of_rank.size()
                       ? req.switch_of_rank[level][static_cast<size_t>(units[u].rank)]
                       : 0;  // above the top: one group of everything left
    groups[{sw, units[u].part}].push_back(u);
  }
  return groups;
}

// Goes up one level for every unit; appends my step (if my group has more than me) and returns
// false once I have stopped going up.
bool climb(const PlanRequest& req, std::vector<Unit>& units, size_t level, size_t mine, Span* span,
           std::vector<Step>* steps) {
  const auto groups = groups_at(req, units, level);
  // Splitting needs equal groups among those holding the same part (the parts must line up).
  std::map<std::vector<int>, size_t> size_of_part;
  bool equal = true;
  for (const auto& [key, members] : groups) {
    auto [it, fresh] = size_of_part.emplace(std::get<1>(key), members.size());
    if (!fresh && it->second != members.size()) equal = false;
  }
  std::vector<Unit> before = units;
  for (const auto& [key, members] : groups) {
    if (members.size() < 2) continue;
    for (size_t i = 0; i < members.size(); ++i) {
      Unit& u = units[members[i]];
      if (equal) {
        u.part.push_back(static_cast<int>(i));
      } else {
        u.active = i == 0;
      }
      if (members[i] != mine) continue;
      Step st;
      st.split = equal;
      for (size_t m : members) st.group.push_back(before[m].rank);
      st.me = static_cast<int>(i);
      st.span = *span;
      steps->push_back(st);
      if (equal) *span = block_of(*span, static_cast<int>(members.size()), static_cast<int>(i));
    }
  }
  return units[mine].active;
}

}  // namespace

std::vector<int> tree_order(const PlanRequest& req) {
  std::vector<int> order(static_cast<size_t>(req.nranks));
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](int r) {
    std::vector<int> k;
    for (size_t l = req.switch_of_rank.size(); l-- > 0;) {
      k.push_back(req.switch_of_rank[l][static_cast<size_t>(r)]);
    }
    k.push_back(host_of(req, r));
    k.push_back(r);
    return k;
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
  return order;
}

TreeLayout tree_layout(const PlanRequest& req) {
  TreeLayout t;
  if (req.switch_of_rank.empty()) {
    t.order.resize(static_cast<size_t>(req.nranks));
    std::iota(t.order.begin(), t.order.end(), 0);
    t.me = req.rank;
    return t;
  }
  t.order = tree_order(req);
  t.me = static_cast<int>(std::find(t.order.begin(), t.order.end(), req.rank) - t.order.begin());
  t.locality.emplace_back();
  for (int r : t.order) t.locality.back().push_back(host_of(req, r));
  for (const std::vector<int>& level : req.switch_of_rank) {
    t.locality.emplace_back();
    for (int r : t.order) t.locality.back().push_back(level[static_cast<size_t>(r)]);
  }
  return t;
}

namespace {

// The units under the top that hold the same part as `mine` (the members of a compressed step:
// every switch above the leaf ones is crossed at once).
std::vector<int> same_part(const std::vector<Unit>& units, size_t mine, int* me) {
  std::vector<int> group;
  for (size_t u = 0; u < units.size(); ++u) {
    if (!units[u].active || units[u].part != units[mine].part) continue;
    if (u == mine) *me = static_cast<int>(group.size());
    group.push_back(units[u].rank);
  }
  return group;
}

// The host leaders' way up the levels with `span`; returns the steps to replay on the way down.
// `units` is every host leader in tree order (copied: climbing marks them). `compressed`: above
// the leaf switches (the uplinks) the part goes through the codec's direct all-reduce among all
// units holding it, once, instead of climbing on.
std::vector<Step> leaders_up(PlanBuilder& b, const PlanRequest& req, std::vector<Unit> units,
                             size_t mine, Span span, bool compressed) {
  std::vector<Step> steps;
  // Every switch level, then once more above the top (forests: one group of what is left).
  for (size_t level = 0; level <= req.switch_of_rank.size(); ++level) {
    if (compressed && level >= 1) {
      int me = 0;
      const std::vector<int> group = same_part(units, mine, &me);
      direct_allreduce(b, group, me, span, span, /*accum_at_offset=*/true);
      break;
    }
    const size_t had = steps.size();
    const bool going_on = climb(req, units, level, mine, &span, &steps);
    if (steps.size() > had) {
      const Step& st = steps.back();
      if (st.split) {
        ring_reduce_scatter_inplace(b, st.group, st.me, st.span);
      } else {
        chain_reduce(b, st.group, st.me, st.span);
      }
    }
    if (!going_on) break;
  }
  return steps;
}

// The way back down: the steps of leaders_up in reverse.
void leaders_down(PlanBuilder& b, const std::vector<Step>& steps) {
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->split) {
      ring_allgather(b, it->group, it->me, it->span);
    } else {
      chain_broadcast(b, it->group, it->me, it->span);
    }
  }
}

// Pieces a large buffer is cut into, each going up and down the levels on its own, so that one
// piece crosses the uplinks while the next is reduced under its switch (the levels' links are
// busy at once instead of in turn). Every piece's way up is written before any piece's way down:
// messages between two ranks are matched in order, so a piece's all-gather written before the
// next piece's reduce-scatter to the same neighbour would hold that reduce-scatter back until
// the piece had crossed the uplinks, and the stages would take turns again.
constexpr size_t kPieceBytes = size_t{4} << 20;

int pieces_of(const PlanRequest& req, const Span& whole, int most) {
  const size_t bytes = whole.count * req.elem_size;
  return static_cast<int>(std::clamp<size_t>(bytes / kPieceBytes, 1, static_cast<size_t>(most)));
}

// The ranks of my host in tree order, leaves (PlanRequest::leaves) last, and the host leaders
// (each host's first such rank) in tree order.
void host_members(const PlanRequest& req, std::vector<int>* host_group, std::vector<Unit>* units) {
  const std::vector<int> order = tree_order(req);
  auto leaf = [&](int r) {
    return std::find(req.leaves.begin(), req.leaves.end(), r) != req.leaves.end();
  };
  std::map<int, std::vector<int>> by_host;
  std::vector<int> hosts;  // in tree order
  for (int r : order) {
    std::vector<int>& members = by_host[host_of(req, r)];
    if (members.empty()) hosts.push_back(host_of(req, r));
    members.push_back(r);
  }
  for (auto& [host, members] : by_host) {
    std::stable_partition(members.begin(), members.end(), [&](int r) { return !leaf(r); });
  }
  *host_group = by_host[host_of(req, req.rank)];
  for (int h : hosts) units->push_back(Unit{by_host[h].front(), {}, true});
}

// The leaders' part as one ring in tree order, piece by piece: reduce-scatter then all-gather
// of each piece before the next, so the first pieces come back down while later ones still go
// up (what the leaves' chains need to overlap their two directions).
void leaders_ring(PlanBuilder& b, const PlanRequest& req, const std::vector<Unit>& units,
                  size_t mine, const Span& whole) {
  std::vector<int> group;
  group.reserve(units.size());
  for (const Unit& u : units) group.push_back(u.rank);
  const int me = static_cast<int>(mine);
  const int pieces = pieces_of(req, whole, kMaxRingPieces);
  for (int k = 0; k < pieces; ++k) {
    const Span piece = block_of(whole, pieces, k);
    ring_reduce_scatter_inplace(b, group, me, piece);
    ring_allgather(b, group, me, piece);
  }
}

}  // namespace

void multilevel_allreduce(PlanBuilder& b, const PlanRequest& req, const Span& whole,
                          bool compressed) {
  // Inside the host: reduce to its leader (its first rank in tree order that is not a leaf).
  std::vector<int> host_group;
  std::vector<Unit> units;
  host_members(req, &host_group, &units);
  const int me_host = static_cast<int>(std::find(host_group.begin(), host_group.end(), req.rank) -
                                       host_group.begin());
  chain_reduce(b, host_group, me_host, whole);
  if (me_host == 0) {
    size_t mine = 0;
    while (units[mine].rank != req.rank) ++mine;
    if (!compressed && (req.switch_of_rank.empty() || !req.uplinks_oversubscribed)) {
      leaders_ring(b, req, units, mine, whole);
    } else {
      const int pieces = pieces_of(req, whole, kMaxLevelPieces);
      std::vector<std::vector<Step>> down(static_cast<size_t>(pieces));
      for (int k = 0; k < pieces; ++k) {
        down[static_cast<size_t>(k)] =
            leaders_up(b, req, units, mine, block_of(whole, pieces, k), compressed);
      }
      for (const std::vector<Step>& steps : down) leaders_down(b, steps);
    }
  }
  chain_broadcast(b, host_group, me_host, whole);
}

}  // namespace gradpack::coll::algo
