// SPDX-License-Identifier: Apache-2.0
// The pure half of the cluster probe (topology/probe_clustering.h, and the schedule and names of
// cluster_probe.h): racks found from the rates a fair-share network gives the probe's rounds —
// two racks placed in blocks and interleaved, oversubscribed (B = 4U) and not (B = U, where a flow
// crossing an uplink alone is as fast as one inside a rack), three racks, flat, noisy rates, passes
// that disagree, capped rounds — the same racks whatever the order of the flows or the numbering
// of the hosts, and the cluster built from them.
#include "topology/probe_clustering.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "tests/topology/fair_share_net.h"
#include "topology/cluster_probe.h"
#include "topology/cost_model.h"

namespace gradpack::topology {
namespace {

using testing::blocks;
using testing::interleaved;
using testing::Net;
using testing::Noise;
using testing::simulate;

std::vector<int> all_shifts(int hosts) { return probe_shifts(hosts, hosts); }

// Whether two rack assignments group the hosts alike (whatever the racks' numbers).
bool same_partition(const std::vector<int>& a, const std::vector<int>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a.size(); ++j) {
      if ((a[i] == a[j]) != (b[i] == b[j])) return false;
    }
  }
  return true;
}

ProbeFindings find(const Net& net, double noise = 0.05, uint32_t seed = 1, int passes = 2) {
  const int h = static_cast<int>(net.rack.size());
  return find_racks(h, simulate(net, all_shifts(h), passes, Noise(noise, seed)));
}

TEST(ProbeClustering, TwoRacksOversubscribedInBlocksAndInterleaved) {
  for (const std::vector<int>& rack : {blocks(8, 2), interleaved(8, 2)}) {
    const ProbeFindings f = find({rack, 500, 125});
    ASSERT_EQ(f.racks, 2) << f.summary;
    EXPECT_EQ(f.rack_of_host, rack) << f.summary;
    EXPECT_EQ(f.flows, 56);
    EXPECT_GE(f.agreement, 0.99) << f.summary;
    EXPECT_NEAR(f.fast_mbps, 500, 30);
    ASSERT_EQ(f.uplink_mbps.size(), 2u);
    for (double u : f.uplink_mbps) EXPECT_NEAR(u, 125, 15) << f.summary;
    for (double l : f.link_mbps) EXPECT_NEAR(l, 500, 30);
  }
}

// B = U: a round where one flow crosses an uplink cannot show it (that flow is fast); the racks
// still come out exactly, from the rounds where several flows share it.
TEST(ProbeClustering, TwoRacksWhoseUplinksAreAsFastAsTheHostLinks) {
  for (const std::vector<int>& rack : {blocks(8, 2), interleaved(8, 2)}) {
    const ProbeFindings f = find({rack, 500, 500});
    ASSERT_EQ(f.racks, 2) << f.summary;
    EXPECT_EQ(f.rack_of_host, rack) << f.summary;
    for (double u : f.uplink_mbps) EXPECT_NEAR(u, 500, 60) << f.summary;
  }
  // Blocks: the rounds of shift 1 and 7 send one flow each way across, which is fast; the racks
  // explain it (alone on both uplinks), so every flow agrees.
  const ProbeFindings f = find({blocks(8, 2), 500, 500}, 0);
  EXPECT_EQ(f.agreement, 1.0) << f.summary;
}

// Two flows rarely share an uplink evenly over half a MiB: with B = U the one that got more can
// end as fast as a flow inside a rack. The racks explain it (another flow on its uplink was slow);
// it only lowers the direct agreement.
TEST(ProbeClustering, UnevenSharesOfAnUplinkAreExplained) {
  const ProbeFindings f = find({blocks(8, 2), 500, 500, 0.4}, 0.05, 3);
  ASSERT_EQ(f.rack_of_host, blocks(8, 2)) << f.summary;
  EXPECT_EQ(f.agreement, 1.0) << f.summary;  // the lone and the uneven fast flows explained
  EXPECT_LT(f.direct_agreement, 0.9) << f.summary;
}

TEST(ProbeClustering, ThreeRacks) {
  const Net nets[] = {{blocks(8, 3), 500, 125},
                      {blocks(9, 3), 500, 500},
                      {interleaved(9, 3), 500, 500},
                      {interleaved(12, 3), 1000, 400}};
  for (const Net& net : nets) {
    const ProbeFindings f = find(net);
    ASSERT_EQ(f.racks, 3) << f.summary;
    EXPECT_EQ(f.rack_of_host, net.rack) << f.summary;
  }
}

TEST(ProbeClustering, OneSwitchIsFlat) {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    const ProbeFindings f = find({std::vector<int>(8, 0), 500, 0}, 0.1, seed);
    EXPECT_EQ(f.racks, 1) << f.summary;
    EXPECT_EQ(f.rack_of_host, std::vector<int>(8, 0));
    EXPECT_NE(f.summary.find("flat: "), std::string::npos) << f.summary;
    EXPECT_NE(f.summary.find("split only"), std::string::npos) << f.summary;
  }
  // An uplink faster than everything the hosts can send is no bottleneck: flat too.
  EXPECT_EQ(find({blocks(8, 2), 500, 4000}).racks, 1);
}

TEST(ProbeClustering, NoisyRatesStillGiveTheRacks) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    for (const Net& net : {Net{blocks(8, 2), 500, 125}, Net{interleaved(8, 2), 500, 500},
                           Net{blocks(8, 2), 500, 500}}) {
      const ProbeFindings f = find(net, 0.2, seed);
      EXPECT_EQ(f.rack_of_host, net.rack) << "seed " << seed << ": " << f.summary;
    }
  }
}

// Rates that follow no switches (a loaded machine's): flat, but for a few chance patterns among
// the 500 draws of each size.
TEST(ProbeClustering, RandomRatesAreAlmostAlwaysFlat) {
  for (int hosts : {4, 5, 6, 8}) {
    int racked = 0;
    for (uint32_t seed = 1; seed <= 500; ++seed) {
      std::mt19937 rng(seed);
      std::uniform_real_distribution<double> log_rate(std::log(1000.0), std::log(8000.0));
      std::vector<ProbeFlow> flows =
          simulate({std::vector<int>(hosts, 0), 1, 0}, all_shifts(hosts), 2, Noise(0, 1));
      for (ProbeFlow& f : flows) {
        f.mbps = std::exp(log_rate(rng));
        f.whole_s = f.megabits / std::exp(log_rate(rng));
      }
      racked += find_racks(hosts, flows).racks > 1 ? 1 : 0;
    }
    EXPECT_LE(racked, 5) << hosts << " hosts";
  }
}

// Four hosts in two blocks with B = U: the rounds of shift 1 and 3 cross each uplink with one
// (fast) flow, so {0,1}{2,3} and {0,3}{1,2} explain the rates equally well. Flat, not a guess;
// interleaved, the same four hosts are found.
TEST(ProbeClustering, AmbiguousRatesAreFlat) {
  const ProbeFindings f = find({blocks(4, 2), 500, 500}, 0);
  EXPECT_EQ(f.racks, 1) << f.summary;
  EXPECT_NE(f.summary.find("would explain only 100% of the flows, 67% directly"), std::string::npos)
      << f.summary;
  EXPECT_EQ(find({interleaved(4, 2), 500, 500}, 0).rack_of_host, interleaved(4, 2));
  EXPECT_EQ(find({blocks(6, 2), 500, 500}, 0).rack_of_host, blocks(6, 2));
}

// A few flows timed absurdly fast (a receiver that saw the first half land late) or slow (a
// stall) would take Otsu's split for themselves; they are set aside.
TEST(ProbeClustering, OutliersAreSetAside) {
  for (const Net& net : {Net{interleaved(8, 2), 500, 125}, Net{blocks(8, 2), 500, 500}}) {
    std::vector<ProbeFlow> flows = simulate(net, all_shifts(8), 2, Noise(0.05, 5));
    auto scale = [&](size_t i, double k) { flows[i].mbps *= k, flows[i].whole_s /= k; };
    scale(3, 5000);  // one pass of a flow is enough: the better pass counts
    scale(60, 3000);
    scale(61, 8000);
    scale(17, 1.0 / 2000);  // slow in both passes
    scale(17 + 56, 1.0 / 3000);
    const ProbeFindings f = find_racks(8, flows);
    EXPECT_EQ(f.rack_of_host, net.rack) << f.summary;
    if (net.uplink == net.link) {  // here they would have taken the split
      EXPECT_EQ(f.outliers, 4) << f.summary;
      EXPECT_NE(f.summary.find("(4 outliers set aside)"), std::string::npos) << f.summary;
    }
  }
}

// Contention repeats; a stall of the machine does not. Passes that disagree are no evidence.
TEST(ProbeClustering, PassesThatDisagreeAreFlat) {
  std::vector<ProbeFlow> flows = simulate({blocks(8, 2), 500, 125}, all_shifts(8), 1, Noise(0, 1));
  for (ProbeFlow f : simulate({interleaved(8, 2), 500, 125}, all_shifts(8), 1, Noise(0, 1))) {
    f.pass = 1;
    flows.push_back(f);
  }
  const ProbeFindings f = find_racks(8, flows);
  EXPECT_EQ(f.racks, 1) << f.summary;
  EXPECT_NE(f.summary.find("did not repeat"), std::string::npos) << f.summary;
}

TEST(ProbeClustering, TooFewOrUnmeasuredFlowsAreFlat) {
  EXPECT_EQ(find_racks(8, {}).racks, 1);
  std::vector<ProbeFlow> flows = simulate({blocks(8, 2), 500, 125}, all_shifts(8), 2, Noise(0, 1));
  for (ProbeFlow& f : flows) f.mbps = 0;
  const ProbeFindings f = find_racks(8, flows);
  EXPECT_EQ(f.racks, 1);
  EXPECT_EQ(f.flows, 0);
  EXPECT_NE(f.summary.find("too few"), std::string::npos) << f.summary;
}

// With more hosts than rounds, only some pairs are measured; the racks follow from the grouping.
TEST(ProbeClustering, CappedRoundsOnManyHosts) {
  for (const Net& net : {Net{interleaved(32, 2), 500, 500}, Net{blocks(32, 4), 500, 125},
                         Net{interleaved(24, 3), 500, 250}}) {
    const int h = static_cast<int>(net.rack.size());
    const std::vector<int> shifts = probe_shifts(h, 8);
    ASSERT_EQ(shifts.size(), 8u);
    const ProbeFindings f = find_racks(h, simulate(net, shifts, 2, Noise(0.05, 3)));
    EXPECT_EQ(f.rack_of_host, net.rack) << f.summary;
  }
}

TEST(ProbeClustering, TheFlowsOrderAndTheHostsNumbersDoNotMatter) {
  const Net net{blocks(8, 2), 500, 500};
  std::vector<ProbeFlow> flows = simulate(net, all_shifts(8), 2, Noise(0.15, 7));
  const ProbeFindings base = find_racks(8, flows);
  ASSERT_EQ(base.racks, 2) << base.summary;
  std::mt19937 rng(11);
  for (int trial = 0; trial < 10; ++trial) {
    std::shuffle(flows.begin(), flows.end(), rng);
    const ProbeFindings f = find_racks(8, flows);
    EXPECT_EQ(f.rack_of_host, base.rack_of_host);
    EXPECT_EQ(f.summary, base.summary);
    EXPECT_EQ(f.link_mbps, base.link_mbps);
    EXPECT_EQ(f.uplink_mbps, base.uplink_mbps);
  }
  // Renumbered hosts: the same hosts together.
  std::vector<int> perm = {5, 2, 7, 0, 3, 6, 1, 4};
  std::vector<ProbeFlow> renamed = flows;
  for (ProbeFlow& f : renamed) f.src = perm[f.src], f.dst = perm[f.dst];
  const ProbeFindings f = find_racks(8, renamed);
  std::vector<int> back(8);
  for (int h = 0; h < 8; ++h) back[h] = f.rack_of_host[perm[h]];
  EXPECT_TRUE(same_partition(back, base.rack_of_host));
}

TEST(ProbeClustering, ClusterFromFindings) {
  const ProbeFindings f = find({interleaved(8, 2), 500, 125});
  ASSERT_EQ(f.racks, 2) << f.summary;
  const std::vector<std::string> names = {"a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"};
  Cluster c;
  ASSERT_TRUE(cluster_from_findings(f, names, &c).ok());
  ASSERT_EQ(c.switches().size(), 3u);
  EXPECT_EQ(c.switches()[0].name, "core");
  EXPECT_EQ(c.switches()[1].name, "rack0");
  EXPECT_EQ(c.switches()[1].parent, 0);
  EXPECT_EQ(c.levels(), 2);
  EXPECT_NEAR(c.switches()[1].uplink.rate_mbps, 125, 15);
  ASSERT_EQ(c.hosts().size(), 8u);
  for (size_t h = 0; h < 8; ++h) {
    EXPECT_EQ(c.hosts()[h].name, names[h]);
    EXPECT_EQ(c.hosts()[h].leaf, 1 + static_cast<int>(h % 2));
    EXPECT_NEAR(c.hosts()[h].link.rate_mbps, 500, 30);
  }
  // 16:1 behind the uplinks: the multi-level plan; B = U: the ring in tree order.
  TreePlanCosts costs = tree_plan_costs(c);
  ASSERT_TRUE(costs.known);
  EXPECT_LT(costs.multilevel, costs.ring);
  ASSERT_TRUE(cluster_from_findings(find({interleaved(8, 2), 500, 500}), names, &c).ok());
  costs = tree_plan_costs(c);
  ASSERT_TRUE(costs.known);
  EXPECT_LT(costs.ring, costs.multilevel);
  // Flat findings: the empty cluster; a name list of the wrong size: an error.
  ASSERT_TRUE(cluster_from_findings(find({std::vector<int>(8, 0), 500, 0}), names, &c).ok());
  EXPECT_TRUE(c.empty());
  EXPECT_FALSE(cluster_from_findings(f, {"a", "b"}, &c).ok());
}

TEST(ClusterProbe, Shifts) {
  EXPECT_EQ(probe_shifts(8, 16), (std::vector<int>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(probe_shifts(8, 7), (std::vector<int>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(probe_shifts(9, 4), (std::vector<int>{1, 2, 3, 6}));
  EXPECT_EQ(probe_shifts(32, 8), (std::vector<int>{1, 2, 3, 4, 5, 11, 18, 25}));
  EXPECT_EQ(probe_shifts(100, 5), (std::vector<int>{1, 2, 3, 4, 52}));
  EXPECT_EQ(probe_shifts(4, 0), (std::vector<int>{1}));
  EXPECT_TRUE(probe_shifts(1, 16).empty());
}

TEST(ClusterProbe, HostNames) {
  using V = std::vector<std::string>;
  // One name per host, from its ranks.
  EXPECT_EQ(probe_host_names({0, 0, 1, 2}, {"n0", "n0", "n1", "n2"}), (V{"n0", "n1", "n2"}));
  // Namespaces keep the machine's name: two hosts called alike get numbered names.
  EXPECT_EQ(probe_host_names({0, 1, 2}, {"box", "box", "box"}), (V{"host0", "host1", "host2"}));
  // Ranks of one host that disagree, or a name no cluster file could hold: numbered too.
  EXPECT_EQ(probe_host_names({0, 0, 1}, {"a", "b", "c"}), (V{"host0", "host1"}));
  EXPECT_EQ(probe_host_names({0, 1}, {"a b", "c"}), (V{"host0", "host1"}));
}

}  // namespace
}  // namespace gradpack::topology
