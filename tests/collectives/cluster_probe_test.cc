// SPDX-License-Identifier: Apache-2.0
// GRADPACK_TOPOLOGY=auto on communicators of threads over loopback TCP (the binary runs with it
// set): the probe among fake hosts ends flat or with one cluster on every rank, never fails;
// fewer than 4 hosts are not probed; a probe past its budget falls back to flat with a warning;
// and ranks whose own measurements disagree (forced through the probe's test hook) all end with
// the cluster decided from the agreed measurements, and run the same plan.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "tests/collectives/coll_test_util.h"
#include "tests/topology/fair_share_net.h"
#include "topology/cluster_file.h"

namespace gradpack::coll {
namespace {

using testing::run_ranks;
using topology::ClusterChoice;

// What one rank ended with.
struct RankView {
  std::string cluster;  // in the gradpack format ("" when flat)
  ClusterChoice::Origin source = ClusterChoice::Origin::kFlat;
  std::string detail;
  double probe_seconds = -1;
  std::string algorithm;  // of a large all-reduce
};

// Every rank's view after init and one 8 MiB all-reduce, whose sums are checked.
std::vector<RankView> views(int nranks, const testing::RankOptions& ro) {
  std::vector<RankView> out(static_cast<size_t>(nranks));
  run_ranks(
      nranks,
      [&](Communicator& comm) {
        RankView& v = out[static_cast<size_t>(comm.rank())];
        v.cluster = comm.cluster().empty() ? "" : topology::cluster_file_text(comm.cluster());
        v.source = comm.cluster_source();
        v.detail = comm.cluster_detail();
        v.probe_seconds = comm.probe_seconds();
        std::vector<float> x(size_t{2} << 20, static_cast<float>(comm.rank() + 1));
        Status st = comm.allreduce(x.data(), x.data(), x.size(), GP_FLOAT32, GP_SUM);
        ASSERT_TRUE(st.ok()) << st.to_string();
        EXPECT_EQ(x.front(), static_cast<float>(nranks * (nranks + 1) / 2));
        EXPECT_EQ(x.back(), x.front());
        v.algorithm = comm.last_algorithm();
      },
      ro);
  return out;
}

void expect_all_alike(const std::vector<RankView>& v) {
  for (size_t r = 1; r < v.size(); ++r) {
    EXPECT_EQ(v[r].cluster, v[0].cluster) << "rank " << r;
    EXPECT_EQ(v[r].source, v[0].source) << "rank " << r;
    EXPECT_EQ(v[r].detail, v[0].detail) << "rank " << r;
    EXPECT_EQ(v[r].probe_seconds, v[0].probe_seconds) << "rank " << r;
    EXPECT_EQ(v[r].algorithm, v[0].algorithm) << "rank " << r;
  }
}

// Loopback has no switches to find: whatever the load makes of the rates, every rank ends with
// the same cluster, flat or not, and the all-reduce is right.
TEST(ClusterProbe, LoopbackEndsFlatOrAlikeOnEveryRank) {
  testing::RankOptions one_each, two_each;
  for (int r = 0; r < 8; ++r) two_each.host_ids.push_back("host" + std::to_string(r / 2));
  for (const testing::RankOptions* ro : {&one_each, &two_each}) {
    const std::vector<RankView> v = views(8, *ro);
    expect_all_alike(v);
    EXPECT_GT(v[0].probe_seconds, 0);
    EXPECT_NE(v[0].detail.find("probed " + std::to_string(ro == &one_each ? 8 : 4) + " hosts"),
              std::string::npos)
        << v[0].detail;
    EXPECT_EQ(v[0].source == ClusterChoice::Origin::kProbe, !v[0].cluster.empty());
  }
}

TEST(ClusterProbe, FewerThanFourHostsAreNotProbed) {
  testing::RankOptions ro;
  ro.host_ids = {"a", "a", "b", "b", "c", "c"};
  const std::vector<RankView> v = views(6, ro);
  expect_all_alike(v);
  EXPECT_EQ(v[0].source, ClusterChoice::Origin::kFlat);
  EXPECT_TRUE(v[0].cluster.empty());
  EXPECT_EQ(v[0].probe_seconds, 0);
  EXPECT_NE(v[0].detail.find("3 host(s), the cluster probe needs at least 4"), std::string::npos)
      << v[0].detail;
}

std::mutex g_log_mutex;
std::vector<std::string> g_warnings;
void capture(LogLevel level, Subsys subsys, const char* message) {
  if (level != LogLevel::kWarn || subsys != Subsys::kTopo) return;
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_warnings.emplace_back(message);
}

// A budget no round can meet: the probe stops after the first round, on every rank alike, and
// the cluster is flat with a warning that names the setting.
TEST(ClusterProbe, ProbePastItsBudgetIsFlatWithAWarning) {
  testing::RankOptions ro;
  ro.probe = topology::ProbeOptions{};
  ro.probe->budget = std::chrono::milliseconds(1);
  ro.probe->bytes = size_t{8} << 20;  // 4 MiB timed per flow: well over 1 ms
  g_warnings.clear();
  const LogSink previous = log::set_sink(capture);
  const std::vector<RankView> v = views(4, ro);
  log::set_sink(previous);
  expect_all_alike(v);
  EXPECT_EQ(v[0].source, ClusterChoice::Origin::kFlat);
  EXPECT_TRUE(v[0].cluster.empty());
  EXPECT_NE(
      v[0].detail.find("ran past its budget of 1 ms (GRADPACK_TOPOLOGY_PROBE_MS) after 1 of 6 "
                       "rounds; flat"),
      std::string::npos)
      << v[0].detail;
  ASSERT_EQ(g_warnings.size(), 1u);  // rank 0's
  EXPECT_EQ(g_warnings[0], v[0].detail);
}

// Rank r's measurements, as the hook lays them out, of a fair-share network: the flows host r
// received in every round and pass ([(pass * hosts + host) * shifts + k]: rates, then whole
// seconds), nothing else.
std::vector<double> rates_seen_by(int host, const topology::testing::Net& net, uint32_t seed) {
  const int hosts = static_cast<int>(net.rack.size());
  const std::vector<int> shifts = topology::probe_shifts(hosts, 16);
  const size_t flows = static_cast<size_t>(topology::kProbePasses * hosts) * shifts.size();
  std::vector<double> measured(2 * flows);
  for (const topology::ProbeFlow& f : topology::testing::simulate(
           net, shifts, topology::kProbePasses, topology::testing::Noise(0.1, seed))) {
    if (f.dst != host) continue;
    const size_t i =
        static_cast<size_t>(f.pass * hosts + f.dst) * shifts.size() + static_cast<size_t>(f.round);
    measured[i] = f.mbps;
    measured[flows + i] = f.whole_s;
  }
  return measured;
}

// Every rank measures only what it received, and here each sees a different network: rank 0
// racks interleaved, the others racks in blocks, each with its own noise. Had each rank decided
// from its own view, rank 0 would follow a different tree from the rest. They decide from the
// agreed measurements instead, so all of them follow the same tree: the one the pure function
// finds in every rank's contribution together, and they run the same plan.
TEST(ClusterProbe, DisagreeingLocalViewsEndWithTheAgreedCluster) {
  using topology::testing::Net;
  const Net blocks{topology::testing::blocks(8, 2), 500, 125};
  const Net interleaved{topology::testing::interleaved(8, 2), 500, 125};
  auto view_of = [&](int rank) { return rank == 0 ? interleaved : blocks; };
  testing::RankOptions ro;
  ro.probe = topology::ProbeOptions{};
  ro.probe->test_rates = [&](int rank, std::vector<double>* rates) {
    *rates = rates_seen_by(rank, view_of(rank), 100 + static_cast<uint32_t>(rank));
  };
  const std::vector<RankView> v = views(8, ro);
  expect_all_alike(v);

  // What the agreed measurements give, computed here from every rank's contribution.
  std::vector<topology::ProbeFlow> agreed;
  const std::vector<int> shifts = topology::probe_shifts(8, 16);
  for (int r = 0; r < 8; ++r) {
    const std::vector<double> mine = rates_seen_by(r, view_of(r), 100 + static_cast<uint32_t>(r));
    for (int pass = 0; pass < topology::kProbePasses; ++pass) {
      for (size_t k = 0; k < shifts.size(); ++k) {
        const size_t i = static_cast<size_t>(pass * 8 + r) * shifts.size() + k;
        agreed.push_back({(r - shifts[k] + 8) % 8, r, static_cast<int>(k), pass, mine[i],
                          topology::testing::kMegabits, mine[mine.size() / 2 + i]});
      }
    }
  }
  const topology::ProbeFindings findings = topology::find_racks(8, agreed);
  ASSERT_EQ(findings.rack_of_host, blocks.rack) << findings.summary;
  std::vector<std::string> names;
  for (int h = 0; h < 8; ++h) names.push_back("host" + std::to_string(h));
  topology::Cluster expected;
  ASSERT_TRUE(topology::cluster_from_findings(findings, names, &expected).ok());
  EXPECT_EQ(v[0].cluster, topology::cluster_file_text(expected));
  EXPECT_EQ(v[0].source, ClusterChoice::Origin::kProbe);
  EXPECT_EQ(v[0].algorithm, "hier");  // 16:1 behind the uplinks: the multi-level plan

  // Rank 0's own view alone would have put it on another tree.
  const topology::ProbeFindings alone = topology::find_racks(
      8, topology::testing::simulate(interleaved, shifts, 2, topology::testing::Noise(0.1, 100)));
  EXPECT_EQ(alone.rack_of_host, interleaved.rack);
}

}  // namespace
}  // namespace gradpack::coll
