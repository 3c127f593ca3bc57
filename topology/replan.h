// SPDX-License-Identifier: Apache-2.0
// Re-planning when a link degrades: the model behind it. The communicator times the sends of its
// own collectives (HostExecutor::take_send_times: no extra traffic), the ranks agree on the rates
// every so many bytes (one all-reduce MAX of the rate matrix), and every rank feeds the same
// agreed matrix to choose_leaves(), so every rank takes the same decision at the same call.
//
// The plans it chooses between, for large uncompressed all-reduces with one rank per host:
//  - the ring in tree order (or the multi-level plan): every rank sends and receives 2(p-1)/p of
//    the buffer, so the slowest link sets the pace of every rank;
//  - the same with the slow ranks as leaves: each slow rank sends its buffer to a partner (the
//    nearest fast rank in tree order, under its own leaf switch where there is one), which adds it
//    in, and gets the result back, piece by piece; the fast ranks run the ring among themselves.
//    A leaf's link then carries the buffer once each way (overlapped, duplex) instead of 2(p-1)/p
//    of it behind every other rank's pace.
// docs/topology.md "Re-planning when a link degrades" has the figures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gradpack::topology {

// Rates the ranks measured sending since the last agreement: Bps[a * nranks + b] is bytes/s from
// rank a to rank b, 0 where a sent b too little to tell (under kMinMeasuredBytes).
struct LinkRates {
  int nranks = 0;
  std::vector<double> Bps;
  double at(int a, int b) const { return Bps[static_cast<size_t>(a) * nranks + b]; }
};
inline constexpr uint64_t kMinMeasuredBytes = uint64_t{4} << 20;

// A rank's link, estimated (0: none measured): the fastest of the links measured into or out of
// it, so that a rank whose every link is slow is the one with the slow link, not its neighbours
// (which have a fast one besides); for a current leaf, the slowest (a leaf's one link carries its
// buffer both ways, so it stays a leaf until both directions are fast again). A link slow in one
// direction only between two ranks that have no other measured links cannot be pinned on either
// and is not acted on.
std::vector<double> rank_link_estimates(const LinkRates& rates, const std::vector<int>& leaves);

struct ReplanInput {
  LinkRates rates;
  std::vector<int> order;        // every rank in tree order (the ring's order)
  std::vector<int> leaf_switch;  // each rank's leaf switch (empty: flat)
  std::vector<int> leaves;       // the current plan's leaves (sorted; empty: none)
  int pieces = 16;               // pieces of the leaves' pipeline (levels.cc)
};

struct ReplanChoice {
  std::vector<int> leaves;    // sorted
  std::vector<int> partners;  // partners[i]: the fast rank leaves[i] attaches to
  double current_s = 0;       // predicted seconds per byte of buffer: the current plan
  double best_s = 0;          // ... and the chosen one (== current_s when nothing changes)
  bool rebuild = false;       // the chosen plan differs and is at least 1/kReplanGain faster
  std::string why;            // for the log: what was measured and predicted
};

// Rebuild only when the model predicts the other plan at least this much faster (issue 12: 20 %).
inline constexpr double kReplanGain = 0.8;
// A rank is a leaf candidate when its estimate is under the median's 1/kSlowFactor.
inline constexpr double kSlowFactor = 3.0;

// Pure: the same input gives the same choice on every rank.
ReplanChoice choose_leaves(const ReplanInput& input);

// The predicted seconds per byte of `leaves` (with their partners) on the estimates `link`
// (0 entries: the median of the others).
double predict_leaf_plan(const std::vector<double>& link, const std::vector<int>& leaves,
                         const std::vector<int>& partners, int pieces);

// The partner of each leaf: the nearest non-leaf after it in `order` under the same leaf switch,
// else the nearest non-leaf after it; never one partner for two leaves. Empty when that is not
// possible (more than about half the ranks are leaves).
std::vector<int> partners_of(const std::vector<int>& leaves, const std::vector<int>& order,
                             const std::vector<int>& leaf_switch);

}  // namespace gradpack::topology
