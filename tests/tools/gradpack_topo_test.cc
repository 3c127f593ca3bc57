// SPDX-License-Identifier: Apache-2.0
// gradpack-topo on the 2-rack, 8-host example (docs/examples/): the tree, JSON, --write and its
// round trip, GRADPACK_TOPOLOGY, and the errors of bad files and arguments; and as the ranks of a
// job under gradpack-run (GradpackTopoJob): rank 0 prints the cluster their communicator follows.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "command.h"

namespace gradpack::tools::testing {
namespace {

const std::string kTopo = GRADPACK_TOPO_PATH;
const std::string kExamples = std::string(GRADPACK_SOURCE_DIR) + "/docs/examples/";

// The cluster part of the output: without its first line (the banner, which carries the
// version) and without the node section after it (this machine's, tested below).
std::string after_banner(const std::string& output) {
  const size_t nl = output.find('\n');
  if (nl == std::string::npos) return "";
  const std::string rest = output.substr(nl + 1);
  return rest.substr(0, rest.find("\n# node\n"));
}

const char* const kTwoRacksTree =
    "switch core (level 1): below 250 Mbit/s\n"
    "  switch rack0 (level 0): uplink 125 Mbit/s, below 2 Gbit/s, oversubscription 16:1\n"
    "    host gpvc0: link 500 Mbit/s\n"
    "    host gpvc1: link 500 Mbit/s\n"
    "    host gpvc2: link 500 Mbit/s\n"
    "    host gpvc3: link 500 Mbit/s\n"
    "  switch rack1 (level 0): uplink 125 Mbit/s, below 2 Gbit/s, oversubscription 16:1\n"
    "    host gpvc4: link 500 Mbit/s\n"
    "    host gpvc5: link 500 Mbit/s\n"
    "    host gpvc6: link 500 Mbit/s\n"
    "    host gpvc7: link 500 Mbit/s\n";

TEST(GradpackTopo, PrintsTheTwoRackTree) {
  const std::string file = kExamples + "two_racks.cluster";
  const auto r = run_command(kTopo + " --cluster " + file);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.rfind("# gradpack-topo; gradpack ", 0), 0u) << r.output;
  EXPECT_EQ(
      after_banner(r.output),
      "# cluster: " + file + " (gradpack format): 8 hosts, 3 switches, 2 levels\n" + kTwoRacksTree);
}

TEST(GradpackTopo, SlurmFileFromTheSettingGivesTheSameTree) {
  const std::string file = kExamples + "two_racks.topology.conf";
  const auto r = run_command("GRADPACK_TOPOLOGY=" + file + " " + kTopo);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(
      after_banner(r.output),
      "# cluster: " + file + " (slurm format): 8 hosts, 3 switches, 2 levels\n" + kTwoRacksTree);
}

TEST(GradpackTopo, FlatWhenOffOrAuto) {
  auto r = run_command("GRADPACK_TOPOLOGY=off " + kTopo);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(after_banner(r.output),
            "# cluster: flat, every host under one switch (GRADPACK_TOPOLOGY=off)\n");
  r = run_command("GRADPACK_TOPOLOGY=auto " + kTopo + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("\"origin\": \"flat\""), std::string::npos) << r.output;
}

TEST(GradpackTopo, Json) {
  const auto r = run_command(kTopo + " --json --cluster " + kExamples + "two_racks.topology.conf");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* want :
       {"{\"tool\": \"gradpack-topo\", \"version\": \"", "\"origin\": \"file\"",
        "\"format\": \"slurm\"", "\"levels\": 2", "\"flat\": false",
        "{\"name\": \"rack0\", \"level\": 0, \"parent\": \"core\", \"uplink_mbps\": 125, "
        "\"latency_us\": 0, \"below_mbps\": 2000, \"oversubscription\": 16}",
        "{\"name\": \"core\", \"level\": 1, \"parent\": null",
        "{\"name\": \"gpvc7\", \"switch\": \"rack1\", \"link_mbps\": 500, \"latency_us\": 0}"}) {
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  }
}

// After the cluster, the node as hwloc sees it: a captured 2-socket server with 8 GPUs and 4
// NICs (tests/topology/data/), each GPU's nearest NIC on its own PCIe switch.
TEST(GradpackTopo, PrintsTheNodeAfterTheCluster) {
  const std::string xml =
      std::string(GRADPACK_SOURCE_DIR) + "/tests/topology/data/two-socket-8gpu-4nic.xml";
  auto r = run_command("GRADPACK_TOPOLOGY=off HWLOC_XMLFILE=" + xml + " " + kTopo);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* want : {"\n# node\nnode topology from HWLOC_XMLFILE=", "2 package(s)",
                           "2 NUMA node(s), 4 NIC(s), 8 GPU(s)", "  NUMA 1: CPUs 8-15,24-31",
                           "  GPU 0000:03:00.0 nearest NIC(s): mlx5_0 (PIX)\n",
                           "  GPU 0000:94:00.0 nearest NIC(s): mlx5_3 (PIX)\n"}) {
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  }
  r = run_command("GRADPACK_TOPOLOGY=off HWLOC_XMLFILE=" + xml + " " + kTopo + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* want : {"\"node\": {\"known\": true", "\"packages\": 2",
                           "\"bus_id\": \"0000:94:00.0\", "
                           "\"names\": [\"cuda7\", \"nvml7\"], \"numa_node\": 1"}) {
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  }
}

TEST(GradpackTopo, WritesTheGradpackFormatThatReadsBackTheSame) {
  const std::string out = ::testing::TempDir() + "gradpack_topo_test.cluster";
  auto r =
      run_command(kTopo + " --cluster " + kExamples + "two_racks.topology.conf --write " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("switch rack0 parent=core uplink=125mbit\n"), std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("host gpvc7 switch=rack1 link=500mbit\n"), std::string::npos)
      << text.str();
  r = run_command(kTopo + " --cluster " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(kTwoRacksTree), std::string::npos) << r.output;
  std::remove(out.c_str());
}

TEST(GradpackTopo, BadFilesAndArguments) {
  const std::string bad = ::testing::TempDir() + "gradpack_topo_bad.conf";
  {
    std::ofstream f(bad);
    f << "SwitchName=s0 Nodes=h[0-3]\nSwitchName=s1 Nodes=h[3-1]\n";
  }
  auto r = run_command(kTopo + " --cluster " + bad);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(bad + ":2: Nodes: range '3-1' runs backwards"), std::string::npos)
      << r.output;
  std::remove(bad.c_str());
  r = run_command("GRADPACK_TOPOLOGY=/no/such/file " + kTopo);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("GRADPACK_TOPOLOGY: cannot open cluster file '/no/such/file'"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(run_command(kTopo + " --bogus").status, 2);
  EXPECT_EQ(run_command(kTopo + " --cluster").status, 2);
  const auto help = run_command(kTopo + " --help");
  EXPECT_EQ(help.status, 0);
  for (const char* word : {"--cluster", "--write", "--json", "GRADPACK_TOPOLOGY"}) {
    EXPECT_NE(help.output.find(word), std::string::npos) << word;
  }
}

const std::string kRun = GRADPACK_RUN_PATH;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Ranks of one host (gradpack-run's): not probed, flat, printed once (by rank 0).
TEST(GradpackTopoJob, OneHostIsFlatAndPrintedOnce) {
  const auto r = run_command("GRADPACK_TOPOLOGY=auto " + kRun + " -n 3 -- " + kTopo);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(count(r.output, "# gradpack-topo; gradpack "), 1u) << r.output;
  EXPECT_NE(r.output.find("# cluster: flat, every host under one switch (GRADPACK_TOPOLOGY=auto: "
                          "1 host(s), the cluster probe needs at least 4; flat)"),
            std::string::npos)
      << r.output;
}

// Four processes that say they are four hosts: the probe runs among them (loopback shows no
// switches, or whatever a loaded machine makes of it: either way one answer, printed once, with
// the probe's time), and --write keeps it as a cluster file that reads back.
TEST(GradpackTopoJob, FourFakeHostsAreProbed) {
  const std::string out = ::testing::TempDir() + "gradpack_topo_job.cluster";
  std::remove(out.c_str());
  const auto r = run_command(
      "GRADPACK_TOPOLOGY=auto " + kRun + " -n 4 -- sh -c 'GRADPACK_HOSTID=h$GRADPACK_RANK " +
      "GRADPACK_HOSTNAME=n$GRADPACK_RANK exec " + kTopo + " --json --write " + out + "'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(count(r.output, "{\"tool\": \"gradpack-topo\""), 1u) << r.output;
  EXPECT_NE(r.output.find("\"source\": \"GRADPACK_TOPOLOGY=auto: probed 4 hosts in "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("\"probe_seconds\": "), std::string::npos) << r.output;
  EXPECT_EQ(count(r.output, "gradpack-topo: wrote " + out), 1u) << r.output;
  const auto back = run_command(kTopo + " --cluster " + out);
  EXPECT_EQ(back.status, 0) << back.output;
  if (r.output.find("\"origin\": \"probe\"") != std::string::npos) {
    EXPECT_NE(back.output.find("host n0: link "), std::string::npos) << back.output;
  }
  std::remove(out.c_str());
}

// A cluster file that does not know the ranks' hosts: the job's communicator fails, and says why.
TEST(GradpackTopoJob, FileThatDoesNotKnowTheHostsIsAnError) {
  const auto r = run_command("GRADPACK_TOPOLOGY=" + kExamples + "two_racks.cluster " + kRun +
                             " -n 2 -- " + kTopo);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("gradpack-topo: gp_comm_init_from_env: GRADPACK_TOPOLOGY "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("the cluster file does not know"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace gradpack::tools::testing
