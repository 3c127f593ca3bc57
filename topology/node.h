// SPDX-License-Identifier: Apache-2.0
// The node topology: this machine's cores, NUMA nodes, NICs and GPUs and where they sit on PCIe,
// read with hwloc (topology/ is the only room that includes hwloc.h; this header holds plain
// structs). It answers "which CPUs and which NUMA node are near this NIC" (topology/placement.h
// pins the transport's progress threads there) and "how far is this GPU from that NIC"
// (PciDistance, NCCL's PIX/PXB/PHB/NODE/SYS idea). docs/node-topology.md has the whole story.
//
// Sources: the machine (hwloc's own discovery, which honours HWLOC_XMLFILE exactly as hwloc does),
// an hwloc XML file, or an XML text; the tests load captured topologies of machines they do not
// run on. Built without hwloc (GRADPACK_WITH_HWLOC=OFF or no libhwloc-dev) the machine's topology
// is "unknown" (known == false, reason says why) and every placement is skipped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace gradpack::topology {

// How far apart two PCI devices are, nearest first. The values are ordered so that a lower one
// is always at least as good a path for GPU↔NIC traffic; they are not NCCL's numeric values.
//   kPix  the same PCIe switch: the lowest common ancestor is a PCI bridge and each device is at
//         most one bridge (the switch's downstream port) below it;
//   kPxb  nested PCIe switches: the common ancestor is a PCI bridge, with more bridges between;
//   kPhb  the same PCIe host bridge (root complex): traffic turns around in the CPU's root port;
//   kNode different host bridges of one NUMA node: crosses the CPU's internal fabric;
//   kSys  different NUMA nodes (usually sockets): crosses the inter-socket link (UPI, xGMI);
//   kUnknown  either device's place is unknown.
enum class PciDistance : int { kPix = 1, kPxb = 2, kPhb = 3, kNode = 4, kSys = 5, kUnknown = 6 };
const char* pci_distance_name(PciDistance d);  // "PIX", "PXB", "PHB", "NODE", "SYS", "unknown"

struct NumaNode {
  int os_index = -1;          // the kernel's node number (/sys/devices/system/node/nodeN)
  std::vector<int> cpus;      // its CPUs (PU os indexes), sorted
  uint64_t memory_bytes = 0;  // local memory; 0 when the source does not say
};

// One step on the way from the root down to a PCI device.
struct PciHop {
  enum class Kind : uint8_t { kHostBridge, kPciBridge };
  Kind kind = Kind::kPciBridge;
  std::string id;  // kPciBridge: its bus id; kHostBridge: "pciDDDD:BB", its sysfs directory name
};

struct PciDevice {
  std::string bus_id;      // "0000:17:00.0"
  std::string sysfs_path;  // "/sys/devices/pci0000:16/0000:16:02.0/0000:17:00.0"
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint16_t class_id = 0;                // 0x0200 Ethernet, 0x0207 InfiniBand, 0x0302 3D, ...
  std::vector<std::string> os_devices;  // NICs: "eth0", "mlx5_0"; GPUs: "cuda0", "card1", ...
  int numa_node = -1;                   // os_index of the NUMA node it is attached to, -1: unknown
  std::vector<int> cpus;                // the CPUs near it (its locality's cpuset), sorted
  std::vector<PciHop> path;             // host bridge first, its parent bridge last
};

struct NodeTopology {
  bool known = false;
  std::string reason;  // when !known: why ("built without hwloc", the load error)
  std::string source;  // "this machine", "HWLOC_XMLFILE=/x.xml", "xml file /x.xml", "xml text"
  bool this_system = false;  // hwloc's verdict: the CPUs and devices are this machine's own
  int packages = 0;
  int cores = 0;
  int pus = 0;  // hardware threads
  std::vector<NumaNode> numa_nodes;
  std::vector<PciDevice> nics;  // network-class functions (Ethernet, InfiniBand, ...)
  std::vector<PciDevice> gpus;  // NVIDIA display-class functions (VGA or 3D controller)
};

// True when this build has hwloc.
bool node_topology_supported();

// This machine (or HWLOC_XMLFILE's topology, as hwloc itself decides). Never an error: a build
// without hwloc or a failed discovery gives known == false and the reason.
NodeTopology load_node_topology();

// An hwloc XML file or text (hwloc 1.x or 2.x format). kUnsupported without hwloc; kInvalidArgument
// naming the file when hwloc rejects it.
Status load_node_topology_xml_file(const std::string& path, NodeTopology* out);
Status load_node_topology_xml(std::string_view xml, NodeTopology* out);

// The NIC whose OS device is `name` ("eth0"; an RDMA port "mlx5_0:1" matches "mlx5_0"), or whose
// PCI function is the last component of `pci_path` (any sysfs spelling of it). Null if none.
const PciDevice* find_nic(const NodeTopology& node, std::string_view name,
                          std::string_view pci_path);

// The distance between two devices of the same topology (see PciDistance).
PciDistance pci_distance(const PciDevice& a, const PciDevice& b);

// The NICs nearest to `gpu`, in the topology's order (several when they tie). Empty without NICs.
std::vector<const PciDevice*> nearest_nics(const NodeTopology& node, const PciDevice& gpu);

// A few lines for logs and tools: counts, NUMA nodes with their CPU lists, each NIC and GPU with
// its NUMA node, near CPUs and sysfs path.
std::string describe(const NodeTopology& node);

}  // namespace gradpack::topology
