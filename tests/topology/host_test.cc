// SPDX-License-Identifier: Apache-2.0
// Who shares a host (topology/host.h): the numbering every rank computes alike, and the two-level
// grouping the hierarchical algorithms use.
#include "topology/host.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace gradpack::topology {
namespace {

using Ranks = std::vector<int>;

TEST(GroupHosts, NumbersHostsInTheOrderOfTheirLowestRank) {
  // Rank 0 is on "b", so "b" is host 0 even though "a" sorts first.
  EXPECT_EQ(group_hosts({"b", "a", "b", "c", "a"}), (Ranks{0, 1, 0, 2, 1}));
  EXPECT_EQ(group_hosts({"n2", "n2", "n1", "n1"}), (Ranks{0, 0, 1, 1}));
}

TEST(GroupHosts, OneHostAndEveryRankItsOwn) {
  EXPECT_EQ(group_hosts({"x", "x", "x"}), (Ranks{0, 0, 0}));
  EXPECT_EQ(group_hosts({"x", "y", "z"}), (Ranks{0, 1, 2}));
  EXPECT_TRUE(group_hosts({}).empty());
}

TEST(GroupHosts, IdentitiesAreComparedWhole) {
  // The vcluster's hosts share a hostname and boot id and differ only in the network namespace.
  EXPECT_EQ(group_hosts({"h/boot/net:[1]", "h/boot/net:[2]", "h/boot/net:[1]"}), (Ranks{0, 1, 0}));
}

TEST(DefaultHostId, IsTheSameAtEveryCallAndGroupsLikeAnyIdentity) {
  const std::string me = default_host_id();
  EXPECT_NE(me.find('/'), std::string::npos) << me;  // hostname/boot id[/network namespace]
  EXPECT_EQ(me, default_host_id());
  EXPECT_EQ(group_hosts({me, "elsewhere", me}), (Ranks{0, 1, 0}));
}

TEST(HostCount, IsTheNumberOfDistinctHosts) {
  EXPECT_EQ(host_count({}), 0);
  EXPECT_EQ(host_count({0}), 1);
  EXPECT_EQ(host_count({0, 0, 0}), 1);
  EXPECT_EQ(host_count({0, 1, 0, 2, 1}), 3);
  EXPECT_EQ(host_count(group_hosts({"a", "b", "a", "c"})), 3);
}

TEST(HostGroups, TwoHostsOfInterleavedRanks) {
  // Ranks 0, 2, 4 on host 0; 1, 3 on host 1.
  const Ranks hosts = {0, 1, 0, 1, 0};
  HostGroups g = host_groups(hosts, 5, 2);
  EXPECT_EQ(g.local, (Ranks{0, 2, 4}));
  EXPECT_EQ(g.leaders, (Ranks{0, 1}));
  EXPECT_EQ(g.me_local, 1);
  EXPECT_EQ(g.me_leader, -1) << "rank 2 leads no host";

  g = host_groups(hosts, 5, 3);
  EXPECT_EQ(g.local, (Ranks{1, 3}));
  EXPECT_EQ(g.leaders, (Ranks{0, 1}));
  EXPECT_EQ(g.me_local, 1);
  EXPECT_EQ(g.me_leader, -1);
}

TEST(HostGroups, ALeaderIsTheLowestRankOfItsHostAndKnowsItsIndex) {
  const Ranks hosts = {0, 1, 0, 1, 0};
  HostGroups g = host_groups(hosts, 5, 1);
  EXPECT_EQ(g.local, (Ranks{1, 3}));
  EXPECT_EQ(g.local.front(), 1) << "local[0] leads the host";
  EXPECT_EQ(g.me_local, 0);
  EXPECT_EQ(g.me_leader, 1);

  g = host_groups(hosts, 5, 0);
  EXPECT_EQ(g.local, (Ranks{0, 2, 4}));
  EXPECT_EQ(g.me_local, 0);
  EXPECT_EQ(g.me_leader, 0);
}

TEST(HostGroups, LeadersAreAscendingWhateverTheHostNumbers) {
  // Host numbers need not follow rank order: leaders are listed by rank, not by host number.
  const Ranks hosts = {2, 0, 1, 0, 2, 1};
  HostGroups g = host_groups(hosts, 6, 5);
  EXPECT_EQ(g.leaders, (Ranks{0, 1, 2}));
  EXPECT_EQ(g.local, (Ranks{2, 5}));
  EXPECT_EQ(g.me_local, 1);
  EXPECT_EQ(g.me_leader, -1);

  g = host_groups(hosts, 6, 2);
  EXPECT_EQ(g.me_local, 0);
  EXPECT_EQ(g.me_leader, 2);
}

TEST(HostGroups, NoGroupingMakesEveryRankItsOwnHost) {
  for (int rank = 0; rank < 4; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    HostGroups g = host_groups({}, 4, rank);
    EXPECT_EQ(g.local, (Ranks{rank}));
    EXPECT_EQ(g.leaders, (Ranks{0, 1, 2, 3}));
    EXPECT_EQ(g.me_local, 0);
    EXPECT_EQ(g.me_leader, rank);
  }
}

TEST(HostGroups, OneHostHasOneLeaderAndEveryRankLocal) {
  HostGroups g = host_groups({0, 0, 0, 0}, 4, 3);
  EXPECT_EQ(g.local, (Ranks{0, 1, 2, 3}));
  EXPECT_EQ(g.leaders, (Ranks{0}));
  EXPECT_EQ(g.me_local, 3);
  EXPECT_EQ(g.me_leader, -1);
}

TEST(HostGroups, EveryRankComputesTheSameLeadersAndDisjointLocalGroups) {
  const Ranks hosts = group_hosts({"c", "a", "c", "b", "a", "b", "c", "a"});
  const int n = static_cast<int>(hosts.size());
  const Ranks leaders = host_groups(hosts, n, 0).leaders;
  EXPECT_EQ(static_cast<int>(leaders.size()), host_count(hosts));
  int leading = 0;
  for (int rank = 0; rank < n; ++rank) {
    HostGroups g = host_groups(hosts, n, rank);
    EXPECT_EQ(g.leaders, leaders);
    ASSERT_GE(g.me_local, 0);
    EXPECT_EQ(g.local[static_cast<size_t>(g.me_local)], rank);
    // The leader of my host is local[0], and it is one of the leaders.
    EXPECT_NE(std::find(leaders.begin(), leaders.end(), g.local.front()), leaders.end());
    EXPECT_EQ(g.me_leader >= 0, g.me_local == 0) << "rank " << rank;
    leading += g.me_local == 0;
  }
  EXPECT_EQ(leading, host_count(hosts));
}

}  // namespace
}  // namespace gradpack::topology
