// SPDX-License-Identifier: Apache-2.0
#include "topology/devices.h"

#include <algorithm>

namespace gradpack::topology {

Status list_devices(const std::vector<transport::OpenedTransport>& transports,
                    int64_t tcp_speed_mbps, std::vector<NetDevice>* out) {
  out->clear();
  std::vector<NetDevice> devices;
  std::vector<std::string> taken;
  for (const transport::OpenedTransport& opened : transports) {
    for (int i = 0; i < opened.transport->device_count(); ++i) {
      transport::DeviceInfo info;
      GP_RETURN_IF_ERROR(opened.transport->device_info(i, &info));
      NetDevice d;
      d.backend = opened.backend;
      d.transport = opened.transport.get();
      d.local = i;
      d.name = unique_device_name(
          info.name.empty() ? std::string(transport::backend_name(opened.backend)) : info.name,
          taken);
      d.pci_path = info.pci_path;
      d.speed_mbps = tcp_speed_mbps > 0 && opened.backend == transport::Backend::kTcp
                         ? static_cast<int>(tcp_speed_mbps)
                     : info.speed_mbps > 0 ? info.speed_mbps
                                           : kDefaultSpeedMbps;
      d.port = info.port;
      taken.push_back(d.name);
      devices.push_back(std::move(d));
    }
  }
  *out = std::move(devices);
  return OkStatus();
}

std::string unique_device_name(const std::string& name, const std::vector<std::string>& taken) {
  std::string unique = name;
  for (int n = 1; std::find(taken.begin(), taken.end(), unique) != taken.end(); ++n) {
    unique = name + "#" + std::to_string(n);
  }
  return unique;
}

}  // namespace gradpack::topology
