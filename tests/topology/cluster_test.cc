// SPDX-License-Identifier: Apache-2.0
// The cluster model (topology/cluster.h), its files (cluster_file.h) and sources
// (cluster_source.h): host lists, rates, both formats, every malformed case with its line,
// round trips, rank placement, oversubscription and lowest common switches.
#include "topology/cluster.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/settings.h"
#include "topology/cluster_file.h"
#include "topology/cluster_source.h"

namespace gradpack::topology {
namespace {

const std::string kExamples = std::string(GRADPACK_SOURCE_DIR) + "/docs/examples/";

std::vector<std::string> expand(const std::string& text) {
  std::vector<std::string> out;
  Status st = expand_host_list(text, &out);
  EXPECT_TRUE(st.ok()) << text << ": " << st.to_string();
  return out;
}

std::string expand_error(const std::string& text) {
  std::vector<std::string> out;
  Status st = expand_host_list(text, &out);
  EXPECT_FALSE(st.ok()) << text << " was accepted";
  return st.message();
}

TEST(HostList, Ranges) {
  using V = std::vector<std::string>;
  EXPECT_EQ(expand("h0"), V{"h0"});
  EXPECT_EQ(expand("h[0-3,7]"), (V{"h0", "h1", "h2", "h3", "h7"}));
  EXPECT_EQ(expand("node[01-04]"), (V{"node01", "node02", "node03", "node04"}));
  EXPECT_EQ(expand("n[8-10]"), (V{"n8", "n9", "n10"}));
  EXPECT_EQ(expand("n[098-100]"), (V{"n098", "n099", "n100"}));
  EXPECT_EQ(expand("r[0-1]n[0-1]"), (V{"r0n0", "r0n1", "r1n0", "r1n1"}));
  EXPECT_EQ(expand("a,b[1-2],c-x"), (V{"a", "b1", "b2", "c-x"}));
  EXPECT_EQ(expand("rack[1]-sw"), (V{"rack1-sw"}));
}

TEST(HostList, BadRanges) {
  EXPECT_NE(expand_error("h[3-1]").find("runs backwards"), std::string::npos);
  EXPECT_NE(expand_error("h[0-3").find("unclosed '['"), std::string::npos);
  EXPECT_NE(expand_error("h0-3]").find("']' without '['"), std::string::npos);
  EXPECT_NE(expand_error("h[]").find("bad bracket group"), std::string::npos);
  EXPECT_NE(expand_error("h[a-b]").find("not N or N-M"), std::string::npos);
  EXPECT_NE(expand_error("h[1-]").find("not N or N-M"), std::string::npos);
  EXPECT_NE(expand_error("h[[1]]").find("bad bracket group"), std::string::npos);
  EXPECT_NE(expand_error("h1,,h2").find("empty name"), std::string::npos);
  EXPECT_NE(expand_error("h1,").find("empty name"), std::string::npos);
  EXPECT_NE(expand_error("h[0-9999999]").find("more than 1000000"), std::string::npos);
  EXPECT_NE(expand_error("a[0-999]b[0-9999]").find("more than 1000000"), std::string::npos);
}

TEST(Units, RatesAndLatencies) {
  const std::map<std::string, double> rates = {
      {"500mbit", 500}, {"25gbit", 25000}, {"10g", 10000}, {"125", 125},   {"500kbit", 0.5},
      {"1mbps", 8},     {"2.5Gbit", 2500}, {"0", 0},       {"1tbit", 1e6}, {"8000bit", 0.008}};
  for (const auto& [text, mbps] : rates) {
    double v = -1;
    ASSERT_TRUE(parse_rate(text, &v).ok()) << text;
    EXPECT_DOUBLE_EQ(v, mbps) << text;
  }
  const std::map<std::string, double> lats = {
      {"2us", 2}, {"1.5ms", 1500}, {"500ns", 0.5}, {"3", 3}, {"1s", 1e6}};
  for (const auto& [text, us] : lats) {
    double v = -1;
    ASSERT_TRUE(parse_latency(text, &v).ok()) << text;
    EXPECT_DOUBLE_EQ(v, us) << text;
  }
  double v = 0;
  for (const char* bad :
       {"", "fast", "10furlongs", "-1mbit", "1e3mbit", "1..2g", "mbit", "0.1bit"}) {
    EXPECT_FALSE(parse_rate(bad, &v).ok()) << bad;
  }
  EXPECT_FALSE(parse_latency("2mbit", &v).ok());
  EXPECT_EQ(rate_text(25000), "25gbit");
  EXPECT_EQ(rate_text(500), "500mbit");
  EXPECT_EQ(rate_text(12.5), "12.5mbit");
  EXPECT_EQ(latency_text(2), "2us");
  for (double r : {0.333, 1100.0, 0.1, 123456.789, 1e-6}) {
    ASSERT_TRUE(parse_rate(rate_text(r), &v).ok());
    EXPECT_EQ(v, r) << rate_text(r);
  }
}

Cluster load(const std::string& name, ClusterFormat* format = nullptr) {
  Cluster c;
  Status st = load_cluster_file(kExamples + name, &c, format);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return c;
}

// The 2-rack example, in either format: the same tree under any switch order.
void expect_two_racks(const Cluster& c) {
  ASSERT_EQ(c.hosts().size(), 8u);
  ASSERT_EQ(c.switches().size(), 3u);
  EXPECT_EQ(c.levels(), 2);
  EXPECT_FALSE(c.flat());
  const int core = c.switch_index("core");
  const int rack0 = c.switch_index("rack0");
  const int rack1 = c.switch_index("rack1");
  ASSERT_GE(core, 0);
  ASSERT_GE(rack0, 0);
  ASSERT_GE(rack1, 0);
  EXPECT_EQ(c.switches()[core].level, 1);
  EXPECT_EQ(c.switches()[rack0].level, 0);
  EXPECT_EQ(c.switches()[rack0].parent, core);
  EXPECT_EQ(c.switches()[core].parent, -1);
  for (int h = 0; h < 8; ++h) {
    const int i = c.host_index("gpvc" + std::to_string(h));
    ASSERT_GE(i, 0);
    EXPECT_EQ(c.hosts()[i].leaf, h < 4 ? rack0 : rack1);
    EXPECT_EQ(c.hosts()[i].link.rate_mbps, 500);
  }
  EXPECT_EQ(c.switches()[rack0].uplink.rate_mbps, 125);
  EXPECT_EQ(c.down_rate_mbps(rack0), 2000);
  EXPECT_EQ(c.oversubscription(rack0), 16);
  EXPECT_EQ(c.oversubscription(rack1), 16);
  EXPECT_EQ(c.down_rate_mbps(core), 250);
  EXPECT_EQ(c.oversubscription(core), 0);  // no uplink: unknown
  const int g0 = c.host_index("gpvc0");
  const int g3 = c.host_index("gpvc3");
  const int g5 = c.host_index("gpvc5");
  EXPECT_EQ(c.lowest_common_switch(g0, g3), rack0);
  EXPECT_EQ(c.lowest_common_switch(g0, g5), core);
  EXPECT_EQ(c.lowest_common_switch(g5, g5), rack1);
  EXPECT_EQ(c.path_to_root(g5), (std::vector<int>{rack1, core}));
  std::vector<std::string> under;
  for (int h : c.hosts_under(core)) under.push_back(c.hosts()[h].name);
  EXPECT_EQ(under, (std::vector<std::string>{"gpvc0", "gpvc1", "gpvc2", "gpvc3", "gpvc4", "gpvc5",
                                             "gpvc6", "gpvc7"}));
}

TEST(ClusterFile, TwoRacksInBothFormats) {
  ClusterFormat f = ClusterFormat::kSlurm;
  expect_two_racks(load("two_racks.cluster", &f));
  EXPECT_EQ(f, ClusterFormat::kGradpack);
  expect_two_racks(load("two_racks.topology.conf", &f));
  EXPECT_EQ(f, ClusterFormat::kSlurm);
}

TEST(ClusterFile, SlurmDetails) {
  Cluster c;
  const std::string text =
      "# a comment\n"
      "\n"
      "switchname=s0 nodes=node[01-02],x LinkSpeed=10g   # trailing comment\n"
      "SwitchName=s1 Nodes=node[03-04]\n"
      "SwitchName=s2 Switches=s[0-1] LinkSpeed=25gbit\n"
      "SwitchName=top Switches=s2\n";
  ASSERT_TRUE(parse_slurm_topology(text, "t.conf", &c).ok());
  EXPECT_EQ(c.levels(), 3);
  EXPECT_EQ(c.hosts().size(), 5u);
  EXPECT_EQ(c.hosts()[c.host_index("x")].link.rate_mbps, 10000);
  EXPECT_EQ(c.hosts()[c.host_index("node03")].link.rate_mbps, 0);
  EXPECT_EQ(c.switches()[c.switch_index("s0")].uplink.rate_mbps, 25000);
  EXPECT_EQ(c.oversubscription(c.switch_index("s0")), 30000.0 / 25000);
  EXPECT_EQ(c.oversubscription(c.switch_index("s1")), 0);  // host links unknown
  EXPECT_EQ(c.switches()[c.switch_index("top")].level, 2);
}

TEST(ClusterFile, GradpackDetailsAndForest) {
  Cluster c;
  const std::string text =
      "host a switch=l0 link=100gbit latency=1.5us\n"  // before its switch: any order
      "switch l0 parent=spine uplink=400gbit latency=2us\n"
      "switch spine\n"
      "switch lonely\n"
      "host b switch=lonely\n";
  ASSERT_TRUE(parse_gradpack_cluster(text, "g", &c).ok());
  const int a = c.host_index("a");
  const int b = c.host_index("b");
  EXPECT_EQ(c.hosts()[a].link, (Link{100000, 1.5}));
  EXPECT_EQ(c.switches()[c.switch_index("l0")].uplink, (Link{400000, 2}));
  EXPECT_EQ(c.lowest_common_switch(a, b), -1);  // two trees
  EXPECT_EQ(c.levels(), 2);
  EXPECT_FALSE(c.flat());
  Cluster one;
  ASSERT_TRUE(parse_gradpack_cluster("switch s\nhost h[0-1] switch=s\n", "g", &one).ok());
  EXPECT_TRUE(one.flat());
  EXPECT_TRUE(Cluster().flat());
  EXPECT_EQ(Cluster().levels(), 0);
}

struct BadFile {
  const char* text;
  const char* error;  // expected in the message, after "f:LINE: "
};

TEST(ClusterFile, MalformedFilesNameTheLine) {
  const BadFile cases[] = {
      // Slurm
      {"SwitchName=s0 Nodes=h0\nSwitchName=s1 Nodez=h1\n", "f:2: unknown key 'Nodez'"},
      {"SwitchName=s0 Nodes=h[3-1]\n", "f:1: Nodes: range '3-1' runs backwards"},
      {"SwitchName=s0 Nodes=h[0-3\n", "f:1: Nodes: unclosed '['"},
      {"SwitchName=s0 Nodes=h[0-3]\nSwitchName=s1 Nodes=h3\n",
       "f:2: host 'h3' is already under switch 's0' (line 1)"},
      {"SwitchName=a Nodes=h0\nSwitchName=b Nodes=h1\nSwitchName=p Switches=a,b\n"
       "SwitchName=q Switches=a\n",
       "f:4: switch 'a' is already under 'p' (line 3)"},
      {"SwitchName=a Switches=b\nSwitchName=b Switches=a\n", "switches form a cycle: a -> b -> a"},
      {"SwitchName=a Switches=a\n", "f:1: switches form a cycle: a -> a"},
      {"SwitchName=top Switches=s[0-1]\nSwitchName=s0 Nodes=h0\n",
       "f:1: switch 's1' is referenced but never defined"},
      {"SwitchName=s0 Nodes=h0\nSwitchName=s0 Nodes=h1\n",
       "f:2: switch 's0' is defined twice (first on line 1)"},
      {"SwitchName=s0 Nodes=h0 Switches=s1\n", "f:1: switch 's0' has both Nodes= and Switches="},
      {"Nodes=h0\n", "f:1: the line has no SwitchName="},
      {"SwitchName=s0 Nodes=h0 nodes=h1\n", "f:1: nodes is given twice"},
      {"SwitchName=s0 Nodes=\n", "f:1: Nodes= has no value"},
      {"SwitchName=s0 LinkSpeed=fast Nodes=h0\n", "f:1: LinkSpeed: bad rate 'fast'"},
      {"SwitchName=s0 Nodes=h0 extra\n", "f:1: expected Key=Value, got 'extra'"},
      {"SwitchName=s[0-1] Nodes=h0\n", "f:1: SwitchName=s[0-1] is not one plain name"},
      // gradpack
      {"switch s\nhost h switch=s speed=1g\n", "f:2: unknown host attribute 'speed=1g'"},
      {"switch s uplink=1g parent=t\n", "f:1: switch 't' is referenced but never defined"},
      {"switch s\nhost h\n", "f:2: host h needs switch=NAME"},
      {"switch s\nhost h switch=t\n", "f:2: switch 't' is referenced but never defined"},
      {"switch s\nhost h switch=s link=10x\n", "f:2: bad rate unit in '10x'"},
      {"switch s\nhost h switch=s latency=2mbit\n", "f:2: bad latency unit in '2mbit'"},
      {"switch s\nhost h[2-0] switch=s\n", "f:2: range '2-0' runs backwards"},
      {"switch s\nhost h switch=s\nhost h switch=s\n",
       "f:3: host 'h' is already under switch 's' (line 2)"},
      {"switch a parent=b\nswitch b parent=c\nswitch c parent=a\n",
       "f:1: switches form a cycle: a -> b -> c -> a"},
      {"switch s\nswitch t parent=s\nhost h switch=s\n", "f:1: switch 's' has both hosts and"},
      {"switch s\nswitch s\n", "f:2: switch 's' is defined twice (first on line 1)"},
      {"switch\n", "f:1: switch needs a NAME"},
      {"switch s parent=a parent=b\n", "f:1: parent= is given twice"},
      {"switch s\nnode h switch=s\n", "f:2: expected 'switch NAME ...' or 'host NAME ...'"},
      // neither
      {"# only a comment\nrouter r1\n", "f:2: 'router' starts neither"},
  };
  for (const BadFile& bad : cases) {
    Cluster c;
    Status st = parse_cluster_text(bad.text, "f", &c, nullptr);
    ASSERT_FALSE(st.ok()) << "accepted:\n" << bad.text;
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find(bad.error), std::string::npos)
        << "file:\n"
        << bad.text << "message: " << st.message() << "\nexpected: " << bad.error;
  }
}

TEST(ClusterFile, EmptyFileIsFlat) {
  Cluster c;
  ClusterFormat f = ClusterFormat::kSlurm;
  ASSERT_TRUE(parse_cluster_text("# nothing\n\n", "f", &c, &f).ok());
  EXPECT_TRUE(c.empty());
  EXPECT_TRUE(c.flat());
}

void expect_round_trip(const Cluster& c) {
  const std::string text = cluster_file_text(c);
  Cluster back;
  ASSERT_TRUE(parse_gradpack_cluster(text, "written", &back).ok()) << text;
  EXPECT_TRUE(back == c) << text;
  ClusterFormat f = ClusterFormat::kSlurm;
  ASSERT_TRUE(parse_cluster_text(text, "written", &back, &f).ok());
  EXPECT_EQ(f, ClusterFormat::kGradpack);
  EXPECT_EQ(cluster_file_text(back), text);
}

TEST(ClusterFile, WriteThenParseGivesTheSameCluster) {
  expect_round_trip(load("two_racks.cluster"));
  expect_round_trip(load("two_racks.topology.conf"));
  expect_round_trip(Cluster());
  Cluster c;
  ASSERT_TRUE(parse_slurm_topology("SwitchName=z Switches=b,a LinkSpeed=333kbit\n"
                                   "SwitchName=a Nodes=n[1-2]\n"
                                   "SwitchName=b Nodes=n[3-4] LinkSpeed=1.1gbit\n",
                                   "t", &c)
                  .ok());
  expect_round_trip(c);
  ASSERT_TRUE(parse_gradpack_cluster("switch r uplink=7mbps latency=0.25us\n"
                                     "host h switch=r link=12.5mbit latency=3ms\n",
                                     "g", &c)
                  .ok());
  expect_round_trip(c);
}

TEST(ClusterFile, WriteFileAndLoadIt) {
  const Cluster c = load("two_racks.topology.conf");
  const std::string path = ::testing::TempDir() + "cluster_test_written.cluster";
  ASSERT_TRUE(write_cluster_file(c, path).ok());
  Cluster back;
  ClusterFormat f = ClusterFormat::kSlurm;
  ASSERT_TRUE(load_cluster_file(path, &back, &f).ok());
  EXPECT_EQ(f, ClusterFormat::kGradpack);
  EXPECT_TRUE(back == c);
  std::remove(path.c_str());
  Status st = load_cluster_file("/nonexistent/cluster", &back);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent/cluster"), std::string::npos);
}

TEST(Assemble, RejectsNamesAndLinksNoFileCouldHold) {
  Cluster c;
  ClusterDecls d;
  d.switches = {SwitchDecl{"s 0", 0, {}}};
  Status st = assemble_cluster(d, "probe", &c);
  EXPECT_NE(st.message().find("probe: switch name 's 0'"), std::string::npos) << st.message();
  d.switches = {SwitchDecl{"s", 0, Link{-1, 0}}};
  EXPECT_FALSE(assemble_cluster(d, "probe", &c).ok());
}

std::vector<RankHost> ranks_on(const std::vector<std::string>& names) {
  std::vector<RankHost> out;
  for (const std::string& n : names) out.push_back(RankHost{"id-" + n, n});
  return out;
}

TEST(PlaceRanks, MapsNamesSharesHostsAndListsIdleOnes) {
  const Cluster c = load("two_racks.cluster");
  RankPlacement p;
  ASSERT_TRUE(
      place_ranks(c, ranks_on({"gpvc0", "gpvc4", "gpvc0", "gpvc5.vc.example", "gpvc4"}), &p).ok());
  EXPECT_EQ(p.host_of_rank, (std::vector<int>{0, 4, 0, 5, 4}));
  EXPECT_EQ(p.idle_hosts, (std::vector<std::string>{"gpvc1", "gpvc2", "gpvc3", "gpvc6", "gpvc7"}));
}

TEST(PlaceRanks, UnknownHostsAreAnErrorNamingThem) {
  const Cluster c = load("two_racks.cluster");
  RankPlacement p;
  Status st = place_ranks(c, ranks_on({"gpvc0", "stranger", "gpvc1", "stranger", "other"}), &p);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("does not know 2 host(s)"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("'stranger' (ranks 1,3)"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("'other' (rank 4)"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("GRADPACK_HOSTNAME"), std::string::npos);
}

TEST(PlaceRanks, IdsThatContradictTheNamesAreAnError) {
  const Cluster c = load("two_racks.cluster");
  RankPlacement p;
  // Two hosts (namespaces) that both call themselves gpvc0: GRADPACK_HOSTNAME was not set.
  Status st = place_ranks(c, {{"ns-a", "gpvc0"}, {"ns-b", "gpvc0"}}, &p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("they are different hosts"), std::string::npos) << st.message();
  // One host whose ranks name it differently.
  st = place_ranks(c, {{"same", "gpvc0"}, {"same", "gpvc1"}}, &p);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("they share one"), std::string::npos) << st.message();
  // Without ids, names decide.
  EXPECT_TRUE(place_ranks(c, {{"", "gpvc0"}, {"", "gpvc0"}}, &p).ok());
}

Settings settings_with(const std::map<std::string, std::string>& env) {
  Settings s;
  EXPECT_TRUE(Settings::from_map(env, &s).ok());
  return s;
}

TEST(ClusterSource, TopologySetting) {
  ClusterChoice c;
  ASSERT_TRUE(cluster_from_settings(settings_with({}), &c).ok());
  EXPECT_EQ(c.origin, ClusterChoice::Origin::kFlat);  // auto: for the communicator to probe
  EXPECT_TRUE(c.probe);
  EXPECT_NE(c.detail.find("auto"), std::string::npos);
  ASSERT_TRUE(cluster_from_settings(settings_with({{"GRADPACK_TOPOLOGY", "off"}}), &c).ok());
  EXPECT_EQ(c.origin, ClusterChoice::Origin::kFlat);
  EXPECT_FALSE(c.probe);
  EXPECT_TRUE(c.cluster.empty());
  const std::string path = kExamples + "two_racks.topology.conf";
  ASSERT_TRUE(cluster_from_settings(settings_with({{"GRADPACK_TOPOLOGY", path}}), &c).ok());
  EXPECT_EQ(c.origin, ClusterChoice::Origin::kFile);
  EXPECT_EQ(c.format, ClusterFormat::kSlurm);
  EXPECT_EQ(c.detail, path);
  EXPECT_EQ(c.cluster.hosts().size(), 8u);
  Status st = cluster_from_settings(settings_with({{"GRADPACK_TOPOLOGY", "/no/such/file"}}), &c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("GRADPACK_TOPOLOGY: cannot open cluster file '/no/such/file'"),
            std::string::npos)
      << st.message();
  EXPECT_FALSE(cluster_from_settings(settings_with({{"GRADPACK_TOPOLOGY", ""}}), &c).ok());
}

TEST(ClusterSource, HostName) {
  EXPECT_EQ(local_host_name(settings_with({{"GRADPACK_HOSTNAME", "gpvc3"}})), "gpvc3");
  EXPECT_FALSE(local_host_name(settings_with({})).empty());
}

}  // namespace
}  // namespace gradpack::topology
