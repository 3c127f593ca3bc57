// SPDX-License-Identifier: Apache-2.0
// Where each device's progress thread goes (topology/placement.h): on the 2-socket server's XML,
// with fake transports that record the decision, and on this machine's TCP transport end to end.
#include "topology/placement.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "tests/transport/fake_transport.h"

namespace gradpack::topology {
namespace {

using transport::DeviceInfo;
using transport::testing::FakeTransport;

const std::string kServer = std::string(GRADPACK_TOPOLOGY_DATA) + "/two-socket-8gpu-4nic.xml";

std::vector<int> cpus_upto(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

DeviceInfo device(const std::string& name, const std::string& pci_path) {
  DeviceInfo info;
  info.name = name;
  info.pci_path = pci_path;
  return info;
}

TEST(Placement, EachNicGetsTheCpusOfItsSocket) {
  if (!node_topology_supported()) GTEST_SKIP() << load_node_topology().reason;
  NodeTopology node;
  ASSERT_TRUE(load_node_topology_xml_file(kServer, &node).ok());
  FakeTransport ib("ib", {device("mlx5_0:1",
                                 "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/"
                                 "0000:02:02.0/0000:05:00.0"),
                          device("mlx5_3:1",
                                 "/sys/devices/pci0000:90/0000:90:01.0/0000:91:00.0/"
                                 "0000:92:02.0/0000:95:00.0")});
  FakeTransport tcp("tcp", {device("lo", ""), device("veth7", ""),
                            device("eth9", "/sys/devices/pci0000:00/0000:00:1c.0")});
  EXPECT_EQ(place_progress_threads(ib, node, cpus_upto(32)), 2);
  ASSERT_EQ(ib.progress_cpus.size(), 2u);
  EXPECT_EQ(ib.progress_cpus[0], node.nics[0].cpus);
  EXPECT_EQ(ib.progress_cpus[1], node.nics[3].cpus);
  EXPECT_EQ(ib.progress_cpus[1].front(), 8);
  // Loopback and veth have no PCI function; eth9's is not in this topology: all left alone.
  EXPECT_EQ(place_progress_threads(tcp, node, cpus_upto(32)), 0);
  EXPECT_TRUE(tcp.progress_cpus.empty());
}

TEST(Placement, OnlyCpusThisProcessMayUse) {
  if (!node_topology_supported()) GTEST_SKIP() << load_node_topology().reason;
  NodeTopology node;
  ASSERT_TRUE(load_node_topology_xml_file(kServer, &node).ok());
  const DeviceInfo nic2 = device("mlx5_2:1", "/x/0000:85:00.0");
  // A taskset of CPUs 0-9 and 24: of socket 1's CPUs only 8, 9 and 24 remain.
  std::vector<int> allowed = cpus_upto(10);
  allowed.push_back(24);
  NicPlacement p = place_nic(node, nic2, allowed);
  ASSERT_NE(p.nic, nullptr);
  EXPECT_EQ(p.nic->bus_id, "0000:85:00.0");
  EXPECT_EQ(p.numa_node, 1);
  EXPECT_EQ(p.cpus, (std::vector<int>{8, 9, 24}));
  // None of them: not pinned at all, rather than pinned far away.
  p = place_nic(node, nic2, {0, 1});
  EXPECT_TRUE(p.cpus.empty());
  EXPECT_EQ(p.numa_node, 1);
}

TEST(Placement, UnknownTopologyPinsNothing) {
  NodeTopology unknown;
  unknown.reason = "test";
  FakeTransport ib("ib", {device("mlx5_0:1", "/sys/devices/pci0000:00/0000:05:00.0")});
  EXPECT_EQ(place_progress_threads(ib, unknown, cpus_upto(4)), 0);
  EXPECT_TRUE(ib.progress_cpus.empty());
}

}  // namespace
}  // namespace gradpack::topology
