// SPDX-License-Identifier: Apache-2.0
// The network devices a process offers, named and ordered for NCCL: the net plugin's device
// table. NCCL keys its topology by device name and ranks devices by their reported speed, so
// names must be unique and speeds right.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/open.h"

namespace gradpack::topology {

inline constexpr int kDefaultSpeedMbps = 10000;  // NCCL's own guess for a NIC of unknown speed

struct NetDevice {
  transport::Backend backend = transport::Backend::kTcp;
  transport::Transport* transport = nullptr;  // not owned: one of the listed transports
  int local = 0;                              // its index in `transport`
  std::string name;                           // unique among the devices
  std::string pci_path;                       // "" when it has none (veth, loopback)
  int speed_mbps = kDefaultSpeedMbps;
  int port = 0;
};

// Every device of `transports` (transport::open's order: RDMA ports first, then interfaces).
// `tcp_speed_mbps` > 0 (GRADPACK_NET_SPEED_MBPS) overrides the speed of TCP interfaces only, which
// veth and shaped links misreport; an RDMA port's rate comes from the HCA. A device that reports
// no speed gets kDefaultSpeedMbps.
Status list_devices(const std::vector<transport::OpenedTransport>& transports,
                    int64_t tcp_speed_mbps, std::vector<NetDevice>* out);

// `name` if no device has it yet, else the first free of `name#1`, `name#2`, ...
std::string unique_device_name(const std::string& name, const std::vector<std::string>& taken);

}  // namespace gradpack::topology
