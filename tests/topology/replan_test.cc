// SPDX-License-Identifier: Apache-2.0
// The re-planning model (topology/replan.h): which rank becomes a leaf, of whom, and when the
// model says the change pays, from agreed link-rate matrices.
#include "topology/replan.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace gradpack::topology {
namespace {

constexpr double kFast = 500e6 / 8;  // 500 Mbit/s in bytes/s
constexpr double kSlow = 50e6 / 8;

// The rates a ring in `order` measures: each rank's link to the next; a slow rank's two links
// (both directions of its host link) at kSlow.
LinkRates ring_rates(const std::vector<int>& order, const std::vector<int>& slow) {
  const int n = static_cast<int>(order.size());
  LinkRates r;
  r.nranks = n;
  r.Bps.assign(static_cast<size_t>(n * n), 0.0);
  for (int i = 0; i < n; ++i) {
    const int a = order[static_cast<size_t>(i)];
    const int b = order[static_cast<size_t>((i + 1) % n)];
    bool is_slow = false;
    for (int s : slow) is_slow = is_slow || s == a || s == b;
    r.Bps[static_cast<size_t>(a * n + b)] = is_slow ? kSlow : kFast * (1.0 + 0.05 * i);
  }
  return r;
}

ReplanInput ring_input(const std::vector<int>& slow, std::vector<int> leaf_switch = {}) {
  ReplanInput in;
  for (int r = 0; r < 8; ++r) in.order.push_back(r);
  in.rates = ring_rates(in.order, slow);
  in.leaf_switch = std::move(leaf_switch);
  return in;
}

TEST(Replan, NothingChangesWhileEveryLinkIsFast) {
  const ReplanChoice c = choose_leaves(ring_input({}));
  EXPECT_FALSE(c.rebuild);
  EXPECT_TRUE(c.leaves.empty());
  EXPECT_DOUBLE_EQ(c.current_s, c.best_s);
}

TEST(Replan, TheSlowHostBecomesALeafOfItsNextNeighbour) {
  const ReplanChoice c = choose_leaves(ring_input({3}));
  ASSERT_TRUE(c.rebuild) << c.why;
  EXPECT_EQ(c.leaves, std::vector<int>{3});
  EXPECT_EQ(c.partners, std::vector<int>{4});
  // Ring: 2·7/8 of the buffer through 50 Mbit/s; leaf: one buffer each way plus a piece.
  EXPECT_NEAR(c.current_s, 1.75 / kSlow, 1e-12);
  EXPECT_NEAR(c.best_s, (1.0 + 1.0 / 16) / kSlow, 1e-12);
  EXPECT_LE(c.best_s, kReplanGain * c.current_s);
}

TEST(Replan, APartnerUnderTheSameLeafSwitchIsPreferred) {
  // Racks 0-3 and 4-7: rank 3's next in order is 4, in the other rack; 0 shares its rack.
  const ReplanChoice c = choose_leaves(ring_input({3}, {0, 0, 0, 0, 1, 1, 1, 1}));
  ASSERT_TRUE(c.rebuild);
  EXPECT_EQ(c.partners, std::vector<int>{0});
}

TEST(Replan, ALeafStaysWhileItsLinkIsSlowAndReturnsWhenItRecovers) {
  // After the rebuild the leaf talks to its partner only, both ways; the others ring.
  LinkRates r;
  r.nranks = 8;
  r.Bps.assign(64, 0.0);
  const std::vector<int> ring = {0, 1, 2, 4, 5, 6, 7};
  for (size_t i = 0; i < ring.size(); ++i) {
    r.Bps[static_cast<size_t>(ring[i] * 8 + ring[(i + 1) % ring.size()])] = kFast;
  }
  ReplanInput in;
  for (int q = 0; q < 8; ++q) in.order.push_back(q);
  in.leaves = {3};
  r.Bps[3 * 8 + 4] = kSlow;  // the leaf's upload is slow, its download from the partner fast:
  r.Bps[4 * 8 + 3] = kFast;  // a leaf is judged by its slower direction
  in.rates = r;
  ReplanChoice c = choose_leaves(in);
  EXPECT_FALSE(c.rebuild) << c.why;
  EXPECT_EQ(c.leaves, std::vector<int>{3});
  in.rates.Bps[3 * 8 + 4] = kFast;  // restored
  c = choose_leaves(in);
  ASSERT_TRUE(c.rebuild) << c.why;
  EXPECT_TRUE(c.leaves.empty());
}

TEST(Replan, AModestSlowdownIsNotWorthARebuild) {
  ReplanInput in = ring_input({});
  in.rates.Bps[3 * 8 + 4] = kFast / 2;  // under the median, not under a third of it
  in.rates.Bps[2 * 8 + 3] = kFast / 2;
  EXPECT_FALSE(choose_leaves(in).rebuild);
}

TEST(Replan, UnmeasuredRanksAreAssumedOrdinary) {
  ReplanInput in = ring_input({5});
  in.rates.Bps[0 * 8 + 1] = 0;  // rank 0 sent too little to tell
  const ReplanChoice c = choose_leaves(in);
  ASSERT_TRUE(c.rebuild);
  EXPECT_EQ(c.leaves, std::vector<int>{5});
}

TEST(Replan, TwoSlowHostsGetTwoPartners) {
  const ReplanChoice c = choose_leaves(ring_input({2, 5}));
  ASSERT_TRUE(c.rebuild) << c.why;
  EXPECT_EQ(c.leaves, (std::vector<int>{2, 5}));
  EXPECT_EQ(c.partners, (std::vector<int>{3, 6}));
}

TEST(Replan, PartnersAreDistinctAndNeverLeaves) {
  EXPECT_EQ(partners_of({1, 2}, {0, 1, 2, 3, 4}, {}), (std::vector<int>{3, 4}));
  EXPECT_TRUE(partners_of({0, 1, 2}, {0, 1, 2, 3, 4}, {}).empty());  // too few left
}

TEST(Replan, TheSameMatrixGivesTheSameChoiceWhateverTheRank) {
  // choose_leaves reads only its input: every rank that agreed on the matrix decides alike.
  const ReplanInput in = ring_input({6});
  const ReplanChoice a = choose_leaves(in);
  const ReplanChoice b = choose_leaves(in);
  EXPECT_EQ(a.leaves, b.leaves);
  EXPECT_EQ(a.partners, b.partners);
  EXPECT_EQ(a.why, b.why);
}

}  // namespace
}  // namespace gradpack::topology
