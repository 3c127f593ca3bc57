// SPDX-License-Identifier: Apache-2.0
#include "topology/placement.h"

#include "common/affinity.h"
#include "common/log.h"

namespace gradpack::topology {

NicPlacement place_nic(const NodeTopology& node, const transport::DeviceInfo& info,
                       const std::vector<int>& allowed) {
  NicPlacement placement;
  if (!node.known || info.pci_path.empty()) return placement;  // loopback, veth: no NIC
  placement.nic = find_nic(node, info.name, info.pci_path);
  if (placement.nic == nullptr) return placement;
  placement.numa_node = placement.nic->numa_node;
  placement.cpus = intersect_cpus(placement.nic->cpus, allowed);
  return placement;
}

int place_progress_threads(transport::Transport& transport, const NodeTopology& node,
                           const std::vector<int>& allowed) {
  int pinned = 0;
  for (int dev = 0; dev < transport.device_count(); ++dev) {
    transport::DeviceInfo info;
    if (!transport.device_info(dev, &info).ok()) continue;
    const NicPlacement p = place_nic(node, info, allowed);
    if (p.cpus.empty()) {
      GP_LOG_DEBUG(kTopo, "%s %s: progress thread not pinned (%s)", transport.name(),
                   info.name.c_str(),
                   !node.known             ? "node topology unknown"
                   : info.pci_path.empty() ? "no PCI device"
                   : p.nic == nullptr      ? "its NIC is not in the node topology"
                                           : "none of its near CPUs is allowed to this process");
      continue;
    }
    GP_LOG_DEBUG(kTopo, "%s %s (%s, NUMA %d): progress thread on CPUs %s", transport.name(),
                 info.name.c_str(), p.nic->bus_id.c_str(), p.numa_node,
                 format_cpu_list(p.cpus).c_str());
    transport.set_progress_cpus(dev, p.cpus);
    ++pinned;
  }
  return pinned;
}

void place_progress_threads(const std::vector<transport::OpenedTransport>& transports,
                            const Settings& settings) {
  if (settings.get(SettingId::kNicAffinity) == "off") {
    GP_LOG_DEBUG(kTopo, "GRADPACK_NIC_AFFINITY=off: progress threads not pinned");
    return;
  }
  std::vector<int> allowed;
  Status st = allowed_cpus(&allowed);
  if (!st.ok()) {
    GP_LOG_DEBUG(kTopo, "progress threads not pinned: %s", st.message().c_str());
    return;
  }
  const NodeTopology node = load_node_topology();
  GP_LOG_DEBUG(kTopo, "%s", describe(node).c_str());
  for (const transport::OpenedTransport& opened : transports) {
    place_progress_threads(*opened.transport, node, allowed);
  }
}

}  // namespace gradpack::topology
