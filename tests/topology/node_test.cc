// SPDX-License-Identifier: Apache-2.0
// The node topology (topology/node.h) on the hwloc XML topologies of tests/topology/data: a
// 2-socket server with 8 GPUs and 4 NICs under 4 PCIe switches, and the build VM; the live machine
// for consistency only; and the distance scale on hand-made devices. Without hwloc every test
// that needs it skips, saying so.
#include "topology/node.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "common/affinity.h"
#include "transport/transport.h"

namespace gradpack::topology {
namespace {

const std::string kData = GRADPACK_TOPOLOGY_DATA;
const std::string kServer = kData + "/two-socket-8gpu-4nic.xml";
const std::string kVm = kData + "/vm-2core-virtio.xml";

#define SKIP_WITHOUT_HWLOC()                                                     \
  do {                                                                           \
    if (!node_topology_supported()) GTEST_SKIP() << load_node_topology().reason; \
  } while (0)

std::vector<int> range(int first, int last) {  // [first, last]
  std::vector<int> v(static_cast<size_t>(last - first + 1));
  std::iota(v.begin(), v.end(), first);
  return v;
}

std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

NodeTopology load(const std::string& path) {
  NodeTopology node;
  Status st = load_node_topology_xml_file(path, &node);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return node;
}

const std::vector<int> kSocket0 = concat(range(0, 7), range(16, 23));
const std::vector<int> kSocket1 = concat(range(8, 15), range(24, 31));

TEST(NodeTopologyServer, CoresAndNumaNodes) {
  SKIP_WITHOUT_HWLOC();
  NodeTopology node = load(kServer);
  ASSERT_TRUE(node.known);
  EXPECT_FALSE(node.this_system);
  EXPECT_EQ(node.source, "xml file " + kServer);
  EXPECT_EQ(node.packages, 2);
  EXPECT_EQ(node.cores, 16);
  EXPECT_EQ(node.pus, 32);
  ASSERT_EQ(node.numa_nodes.size(), 2u);
  EXPECT_EQ(node.numa_nodes[0].os_index, 0);
  EXPECT_EQ(node.numa_nodes[0].cpus, kSocket0);
  EXPECT_EQ(node.numa_nodes[1].os_index, 1);
  EXPECT_EQ(node.numa_nodes[1].cpus, kSocket1);
  EXPECT_EQ(node.numa_nodes[1].memory_bytes, uint64_t{256} << 30);
}

TEST(NodeTopologyServer, NicsAndGpusWithTheirLocality) {
  SKIP_WITHOUT_HWLOC();
  NodeTopology node = load(kServer);
  // The Matrox VGA and the SATA controller are neither.
  ASSERT_EQ(node.nics.size(), 4u);
  ASSERT_EQ(node.gpus.size(), 8u);
  const PciDevice& nic0 = node.nics[0];
  EXPECT_EQ(nic0.bus_id, "0000:05:00.0");
  EXPECT_EQ(nic0.class_id, 0x0207);
  EXPECT_EQ(nic0.vendor_id, 0x15b3);
  EXPECT_EQ(nic0.os_devices, (std::vector<std::string>{"mlx5_0", "ib0"}));
  EXPECT_EQ(nic0.sysfs_path,
            "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:02.0/0000:05:00.0");
  EXPECT_EQ(nic0.numa_node, 0);
  EXPECT_EQ(nic0.cpus, kSocket0);
  const PciDevice& nic3 = node.nics[3];
  EXPECT_EQ(nic3.bus_id, "0000:95:00.0");
  EXPECT_EQ(nic3.class_id, 0x0200);
  EXPECT_EQ(nic3.os_devices, (std::vector<std::string>{"mlx5_3", "ens7f0np0"}));
  EXPECT_EQ(nic3.sysfs_path,
            "/sys/devices/pci0000:90/0000:90:01.0/0000:91:00.0/0000:92:02.0/0000:95:00.0");
  EXPECT_EQ(nic3.numa_node, 1);
  EXPECT_EQ(nic3.cpus, kSocket1);
  for (size_t g = 0; g < node.gpus.size(); ++g) {
    const PciDevice& gpu = node.gpus[g];
    EXPECT_EQ(gpu.vendor_id, 0x10de);
    EXPECT_EQ(gpu.class_id, 0x0302);
    EXPECT_EQ(gpu.os_devices.front(), "cuda" + std::to_string(g));
    EXPECT_EQ(gpu.numa_node, g < 4 ? 0 : 1) << gpu.bus_id;
    EXPECT_EQ(gpu.cpus, g < 4 ? kSocket0 : kSocket1) << gpu.bus_id;
  }
  EXPECT_EQ(node.gpus[5].bus_id, "0000:84:00.0");
}

TEST(NodeTopologyServer, DistancesFollowSwitchesHostBridgesAndSockets) {
  SKIP_WITHOUT_HWLOC();
  NodeTopology node = load(kServer);
  ASSERT_EQ(node.gpus.size(), 8u);
  ASSERT_EQ(node.nics.size(), 4u);
  const auto& g = node.gpus;
  const auto& n = node.nics;
  EXPECT_EQ(pci_distance(g[0], n[0]), PciDistance::kPix);  // one switch
  EXPECT_EQ(pci_distance(g[1], n[0]), PciDistance::kPix);
  EXPECT_EQ(pci_distance(g[0], n[1]), PciDistance::kPhb);  // socket 0: switches share a host bridge
  EXPECT_EQ(pci_distance(g[4], n[3]), PciDistance::kNode);  // socket 1: one host bridge each
  EXPECT_EQ(pci_distance(g[0], n[2]), PciDistance::kSys);   // across sockets
  EXPECT_EQ(pci_distance(g[7], n[0]), PciDistance::kSys);
  EXPECT_EQ(pci_distance(g[0], g[1]), PciDistance::kPix);  // GPU peers too
  EXPECT_EQ(pci_distance(n[2], g[5]), pci_distance(g[5], n[2]));
  for (size_t i = 0; i < g.size(); ++i) {
    std::vector<const PciDevice*> near = nearest_nics(node, g[i]);
    ASSERT_EQ(near.size(), 1u) << g[i].bus_id;
    EXPECT_EQ(near[0], &n[i / 2]) << g[i].bus_id << " is near " << near[0]->bus_id;
  }
}

TEST(NodeTopologyServer, FindNicByNameOrPciPath) {
  SKIP_WITHOUT_HWLOC();
  NodeTopology node = load(kServer);
  ASSERT_EQ(node.nics.size(), 4u);
  EXPECT_EQ(find_nic(node, "mlx5_2:1", ""), &node.nics[2]);   // an RDMA port
  EXPECT_EQ(find_nic(node, "ens7f0np0", ""), &node.nics[3]);  // its netdev
  // Any sysfs spelling of the function: the bus id decides, also against a name.
  EXPECT_EQ(find_nic(node, "eth9", "/sys/devices/pci0000:00/0000:00:02.0/x/0000:15:00.0"),
            &node.nics[1]);
  EXPECT_EQ(find_nic(node, "eth9", ""), nullptr);
  EXPECT_EQ(find_nic(node, "", "/sys/devices/pci0000:00/0000:00:1f.2"), nullptr);  // SATA
}

TEST(NodeTopologyServer, DescribeNamesEveryDevice) {
  SKIP_WITHOUT_HWLOC();
  std::string text = describe(load(kServer));
  EXPECT_NE(text.find("2 package(s), 16 core(s), 32 PU(s), 2 NUMA node(s), 4 NIC(s), 8 GPU(s)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("NUMA 1: CPUs 8-15,24-31"), std::string::npos) << text;
  EXPECT_NE(text.find("NIC 0000:95:00.0 [15b3:101d] mlx5_3,ens7f0np0: NUMA 1, CPUs 8-15,24-31"),
            std::string::npos)
      << text;
}

TEST(NodeTopologyVm, OneSocketOneVirtioNicNoGpu) {
  SKIP_WITHOUT_HWLOC();
  NodeTopology node = load(kVm);
  ASSERT_TRUE(node.known);
  EXPECT_EQ(node.packages, 1);
  EXPECT_EQ(node.cores, 2);
  EXPECT_EQ(node.pus, 2);
  ASSERT_EQ(node.numa_nodes.size(), 1u);
  EXPECT_EQ(node.numa_nodes[0].cpus, (std::vector<int>{0, 1}));
  EXPECT_TRUE(node.gpus.empty());
  ASSERT_EQ(node.nics.size(), 1u);
  const PciDevice& eth0 = node.nics[0];
  EXPECT_EQ(eth0.bus_id, "0000:00:03.0");
  EXPECT_EQ(eth0.vendor_id, 0x1af4);  // virtio
  EXPECT_EQ(eth0.os_devices, std::vector<std::string>{"eth0"});
  EXPECT_EQ(eth0.sysfs_path, "/sys/devices/pci0000:00/0000:00:03.0");
  EXPECT_EQ(eth0.numa_node, 0);
  EXPECT_EQ(eth0.cpus, (std::vector<int>{0, 1}));
  // The transport's path of a virtio NIC, cut back to its PCI function, finds it.
  EXPECT_EQ(find_nic(node, "eth0", "/sys/devices/pci0000:00/0000:00:03.0"), &eth0);
}

TEST(NodeTopologySources, XmlTextAndHwlocXmlFile) {
  SKIP_WITHOUT_HWLOC();
  std::ifstream in(kVm);
  std::stringstream text;
  text << in.rdbuf();
  NodeTopology node;
  ASSERT_TRUE(load_node_topology_xml(text.str(), &node).ok());
  EXPECT_EQ(node.source, "xml text");
  EXPECT_EQ(node.nics.size(), 1u);
  // HWLOC_XMLFILE is hwloc's own variable: the machine's topology becomes the file's.
  ASSERT_EQ(setenv("HWLOC_XMLFILE", kServer.c_str(), 1), 0);
  NodeTopology from_env = load_node_topology();
  unsetenv("HWLOC_XMLFILE");
  ASSERT_TRUE(from_env.known) << from_env.reason;
  EXPECT_EQ(from_env.source, "HWLOC_XMLFILE=" + kServer);
  EXPECT_EQ(from_env.gpus.size(), 8u);
  EXPECT_FALSE(from_env.this_system);
}

TEST(NodeTopologySources, BadXmlIsAnErrorNamingTheSource) {
  SKIP_WITHOUT_HWLOC();
  NodeTopology node;
  Status st = load_node_topology_xml("<topology><object type=", &node);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.to_string();
  EXPECT_NE(st.message().find("xml text"), std::string::npos) << st.message();
  EXPECT_FALSE(node.known);
  st = load_node_topology_xml_file(kData + "/no-such-file.xml", &node);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no-such-file.xml"), std::string::npos) << st.message();
}

TEST(NodeTopologySources, WithoutHwlocTheMachineIsUnknown) {
  if (node_topology_supported()) GTEST_SKIP() << "this build has hwloc";
  NodeTopology node = load_node_topology();
  EXPECT_FALSE(node.known);
  EXPECT_NE(node.reason.find("without hwloc"), std::string::npos) << node.reason;
  EXPECT_EQ(load_node_topology_xml_file(kServer, &node).code(), Code::kUnsupported);
}

// The live machine: whatever it is, what hwloc says must hang together, and each NIC's sysfs path
// must be the one the transport reports for its interface.
TEST(NodeTopologyLive, ConsistentWithTheMachine) {
  SKIP_WITHOUT_HWLOC();
  if (getenv("HWLOC_XMLFILE") != nullptr) GTEST_SKIP() << "HWLOC_XMLFILE replaces the machine";
  NodeTopology node = load_node_topology();
  ASSERT_TRUE(node.known) << node.reason;
  EXPECT_TRUE(node.this_system);
  EXPECT_GE(node.cores, 1);
  EXPECT_GE(node.pus, node.cores);
  std::vector<int> all;
  for (const NumaNode& n : node.numa_nodes) all = concat(all, n.cpus);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(static_cast<int>(all.size()), node.pus) << "NUMA nodes must partition the PUs";
  std::vector<int> allowed;
  ASSERT_TRUE(allowed_cpus(&allowed).ok());
  EXPECT_EQ(intersect_cpus(allowed, all), allowed) << "every CPU we may use is in a NUMA node";
  for (const PciDevice& nic : node.nics) {
    EXPECT_FALSE(nic.cpus.empty()) << nic.bus_id;
    EXPECT_EQ(intersect_cpus(nic.cpus, all), nic.cpus) << nic.bus_id;
    EXPECT_EQ(access(nic.sysfs_path.c_str(), F_OK), 0) << nic.sysfs_path;
    for (const std::string& os : nic.os_devices) {
      const std::string link = "/sys/class/net/" + os + "/device";
      if (access(link.c_str(), F_OK) != 0) continue;  // an RDMA name, not a netdev
      EXPECT_EQ(transport::pci_function_path(link), nic.sysfs_path) << os;
    }
  }
}

// The scale on hand-made devices: nested switches (PXB) and missing places.
TEST(PciDistanceScale, NestedSwitchesAndUnknownPlaces) {
  using K = PciHop::Kind;
  PciDevice a, b, c;
  a.path = {{K::kHostBridge, "pci0000:00"},  {K::kPciBridge, "0000:00:01.0"},
            {K::kPciBridge, "0000:01:00.0"}, {K::kPciBridge, "0000:02:00.0"},
            {K::kPciBridge, "0000:03:00.0"}, {K::kPciBridge, "0000:04:00.0"}};
  b.path = {{K::kHostBridge, "pci0000:00"},
            {K::kPciBridge, "0000:00:01.0"},
            {K::kPciBridge, "0000:01:00.0"},
            {K::kPciBridge, "0000:02:01.0"}};
  EXPECT_EQ(pci_distance(a, b), PciDistance::kPxb);  // a sits behind a second switch
  EXPECT_EQ(pci_distance(b, b), PciDistance::kPix);
  EXPECT_EQ(pci_distance(a, c), PciDistance::kUnknown);
  c.numa_node = 1;
  a.numa_node = 1;
  EXPECT_EQ(pci_distance(a, c), PciDistance::kNode);
  c.numa_node = 0;
  EXPECT_EQ(pci_distance(a, c), PciDistance::kSys);
  EXPECT_LT(PciDistance::kPix, PciDistance::kPxb);
  EXPECT_LT(PciDistance::kPhb, PciDistance::kNode);
  EXPECT_STREQ(pci_distance_name(PciDistance::kNode), "NODE");
}

}  // namespace
}  // namespace gradpack::topology
