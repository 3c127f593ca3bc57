// SPDX-License-Identifier: Apache-2.0
// The queries on a NodeTopology: plain data, no hwloc (node_hwloc.cc loads it).
#include "topology/node.h"

#include <algorithm>
#include <cstdio>

#include "common/affinity.h"

namespace gradpack::topology {
namespace {

std::string_view last_component(std::string_view path) {
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string describe_device(const char* kind, const PciDevice& d) {
  std::string names;
  for (const std::string& n : d.os_devices) names += (names.empty() ? "" : ",") + n;
  char ids[32];
  std::snprintf(ids, sizeof(ids), "[%04x:%04x]", d.vendor_id, d.device_id);
  return std::string("  ") + kind + " " + d.bus_id + " " + ids + " " +
         (names.empty() ? "-" : names) + ": NUMA " +
         (d.numa_node >= 0 ? std::to_string(d.numa_node) : "?") + ", CPUs " +
         (d.cpus.empty() ? "?" : format_cpu_list(d.cpus)) + ", " +
         (d.sysfs_path.empty() ? "no sysfs path" : d.sysfs_path) + "\n";
}

}  // namespace

const char* pci_distance_name(PciDistance d) {
  switch (d) {
    case PciDistance::kPix:
      return "PIX";
    case PciDistance::kPxb:
      return "PXB";
    case PciDistance::kPhb:
      return "PHB";
    case PciDistance::kNode:
      return "NODE";
    case PciDistance::kSys:
      return "SYS";
    case PciDistance::kUnknown:
      break;
  }
  return "unknown";
}

const PciDevice* find_nic(const NodeTopology& node, std::string_view name,
                          std::string_view pci_path) {
  const std::string_view hca = name.substr(0, name.find(':'));  // "mlx5_0:1" → "mlx5_0"
  const std::string_view function = last_component(pci_path);
  for (const PciDevice& nic : node.nics) {
    if (!function.empty() && nic.bus_id == function) return &nic;
  }
  for (const PciDevice& nic : node.nics) {
    for (const std::string& os : nic.os_devices) {
      if (!name.empty() && (os == name || os == hca)) return &nic;
    }
  }
  return nullptr;
}

PciDistance pci_distance(const PciDevice& a, const PciDevice& b) {
  if (a.path.empty() || b.path.empty()) {
    // No PCI ancestry (hwloc put the device straight under a CPU object): only NUMA is known.
    if (a.numa_node < 0 || b.numa_node < 0) return PciDistance::kUnknown;
    return a.numa_node == b.numa_node ? PciDistance::kNode : PciDistance::kSys;
  }
  size_t common = 0;
  while (common < a.path.size() && common < b.path.size() &&
         a.path[common].kind == b.path[common].kind && a.path[common].id == b.path[common].id) {
    ++common;
  }
  if (common == 0) {
    if (a.numa_node >= 0 && a.numa_node == b.numa_node) return PciDistance::kNode;
    return a.numa_node < 0 || b.numa_node < 0 ? PciDistance::kUnknown : PciDistance::kSys;
  }
  if (a.path[common - 1].kind == PciHop::Kind::kHostBridge) return PciDistance::kPhb;
  // Below the shared bridge: at most a switch's downstream port on each side is one switch.
  const size_t below_a = a.path.size() - common;
  const size_t below_b = b.path.size() - common;
  return below_a <= 1 && below_b <= 1 ? PciDistance::kPix : PciDistance::kPxb;
}

std::vector<const PciDevice*> nearest_nics(const NodeTopology& node, const PciDevice& gpu) {
  std::vector<const PciDevice*> best;
  PciDistance best_distance = PciDistance::kUnknown;
  for (const PciDevice& nic : node.nics) {
    const PciDistance d = pci_distance(gpu, nic);
    if (best.empty() || d < best_distance) {
      best = {&nic};
      best_distance = d;
    } else if (d == best_distance) {
      best.push_back(&nic);
    }
  }
  return best;
}

std::string describe(const NodeTopology& node) {
  if (!node.known) return "node topology unknown (" + node.source + "): " + node.reason + "\n";
  std::string out = "node topology from " + node.source + ": " + std::to_string(node.packages) +
                    " package(s), " + std::to_string(node.cores) + " core(s), " +
                    std::to_string(node.pus) + " PU(s), " + std::to_string(node.numa_nodes.size()) +
                    " NUMA node(s), " + std::to_string(node.nics.size()) + " NIC(s), " +
                    std::to_string(node.gpus.size()) + " GPU(s)\n";
  for (const NumaNode& n : node.numa_nodes) {
    out += "  NUMA " + std::to_string(n.os_index) + ": CPUs " + format_cpu_list(n.cpus) + ", " +
           std::to_string(n.memory_bytes >> 20) + " MiB\n";
  }
  for (const PciDevice& nic : node.nics) out += describe_device("NIC", nic);
  for (const PciDevice& gpu : node.gpus) out += describe_device("GPU", gpu);
  return out;
}

}  // namespace gradpack::topology
