// SPDX-License-Identifier: Apache-2.0
// A transport that has devices and nothing else: for the code that only counts, names and ranks
// devices (transport::open in tests/transport, topology::list_devices in tests/topology), so that
// the RDMA cases run on machines without an RDMA device.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "transport/transport.h"

namespace gradpack::transport::testing {

class FakeTransport : public Transport {
 public:
  FakeTransport(const char* name, std::vector<DeviceInfo> devices)
      : name_(name), devices_(std::move(devices)) {}
  const char* name() const override { return name_; }
  int device_count() const override { return static_cast<int>(devices_.size()); }
  Status device_info(int dev, DeviceInfo* out) const override {
    if (dev < 0 || dev >= static_cast<int>(devices_.size())) {
      return InvalidArgument("no such fake device");
    }
    *out = devices_[static_cast<size_t>(dev)];
    return OkStatus();
  }
  Status listen(int, Handle*, std::unique_ptr<Listener>*) override {
    return Unsupported("a fake transport cannot listen");
  }
  Status connect(int, const Handle&, uint64_t, std::chrono::milliseconds,
                 std::unique_ptr<SendConnection>*) override {
    return Unsupported("a fake transport cannot connect");
  }
  // Records what topology/placement.h decided, per device (empty: never set).
  void set_progress_cpus(int dev, const std::vector<int>& cpus) override {
    if (dev < 0 || dev >= device_count()) return;
    progress_cpus.resize(devices_.size());
    progress_cpus[static_cast<size_t>(dev)] = cpus;
  }
  std::vector<std::vector<int>> progress_cpus;

 private:
  const char* name_;
  std::vector<DeviceInfo> devices_;
};

// Devices that report a name and nothing else (no speed, no PCI path).
inline std::vector<DeviceInfo> devices_named(const std::vector<std::string>& names) {
  std::vector<DeviceInfo> devices(names.size());
  for (size_t i = 0; i < names.size(); ++i) devices[i].name = names[i];
  return devices;
}

}  // namespace gradpack::transport::testing
