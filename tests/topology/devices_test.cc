// SPDX-License-Identifier: Apache-2.0
// The net plugin's device table (topology/devices.h): every device of the opened transports in
// their order, named uniquely, with the speed NCCL ranks it by. Fake transports stand for the
// backends, so the RDMA cases run without an RDMA device.
#include "topology/devices.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/transport/fake_transport.h"

namespace gradpack::topology {
namespace {

using transport::Backend;
using transport::DeviceInfo;
using transport::OpenedTransport;
using transport::testing::devices_named;
using transport::testing::FakeTransport;

DeviceInfo device(const std::string& name, int speed_mbps, std::string pci_path = "",
                  int port = 0) {
  DeviceInfo info;
  info.name = name;
  info.speed_mbps = speed_mbps;
  info.pci_path = std::move(pci_path);
  info.port = port;
  return info;
}

OpenedTransport opened(Backend backend, std::vector<DeviceInfo> devices) {
  OpenedTransport t;
  t.backend = backend;
  t.transport =
      std::make_unique<FakeTransport>(transport::backend_name(backend), std::move(devices));
  return t;
}

// transport::open's shape: the RDMA ports first, then the interfaces.
std::vector<OpenedTransport> rdma_then_tcp() {
  std::vector<OpenedTransport> transports;
  transports.push_back(opened(Backend::kIb, {device("mlx5_0:1", 200000, "/sys/pci/0000:17", 1),
                                             device("mlx5_1:1", 100000, "/sys/pci/0000:31", 1)}));
  transports.push_back(
      opened(Backend::kTcp, {device("eth0", 25000, "/sys/pci/0000:4b"), device("veth3", 0)}));
  return transports;
}

std::vector<std::string> names(const std::vector<NetDevice>& devices) {
  std::vector<std::string> out;
  out.reserve(devices.size());
  for (const NetDevice& d : devices) out.push_back(d.name);
  return out;
}

std::vector<int> speeds(const std::vector<NetDevice>& devices) {
  std::vector<int> out;
  out.reserve(devices.size());
  for (const NetDevice& d : devices) out.push_back(d.speed_mbps);
  return out;
}

TEST(ListDevices, KeepsTheTransportsOrderAndEachDevicesPlace) {
  const std::vector<OpenedTransport> transports = rdma_then_tcp();
  std::vector<NetDevice> devices;
  ASSERT_TRUE(list_devices(transports, 0, &devices).ok());
  ASSERT_EQ(devices.size(), 4u);
  EXPECT_EQ(names(devices), (std::vector<std::string>{"mlx5_0:1", "mlx5_1:1", "eth0", "veth3"}));
  const Backend backends[] = {Backend::kIb, Backend::kIb, Backend::kTcp, Backend::kTcp};
  const int locals[] = {0, 1, 0, 1};
  for (size_t i = 0; i < devices.size(); ++i) {
    SCOPED_TRACE(devices[i].name);
    EXPECT_EQ(devices[i].backend, backends[i]);
    EXPECT_EQ(devices[i].local, locals[i]);
    EXPECT_EQ(devices[i].transport, transports[i < 2 ? 0 : 1].transport.get());
  }
  EXPECT_EQ(devices[0].pci_path, "/sys/pci/0000:17");
  EXPECT_EQ(devices[0].port, 1);
  EXPECT_EQ(devices[2].pci_path, "/sys/pci/0000:4b");
  EXPECT_EQ(devices[3].pci_path, "");
  EXPECT_EQ(devices[3].port, 0);
}

TEST(ListDevices, ReportedSpeedsElseTheDefault) {
  std::vector<NetDevice> devices;
  ASSERT_TRUE(list_devices(rdma_then_tcp(), 0, &devices).ok());
  // veth3 reports no speed: NCCL's guess for a NIC of unknown speed.
  EXPECT_EQ(speeds(devices), (std::vector<int>{200000, 100000, 25000, kDefaultSpeedMbps}));
  EXPECT_EQ(kDefaultSpeedMbps, 10000);
}

TEST(ListDevices, TheSpeedSettingOverridesTcpInterfacesOnly) {
  std::vector<NetDevice> devices;
  ASSERT_TRUE(list_devices(rdma_then_tcp(), 1000, &devices).ok());
  // The RDMA ports keep their HCA's rate; both interfaces, reported or not, take the setting.
  EXPECT_EQ(speeds(devices), (std::vector<int>{200000, 100000, 1000, 1000}));

  // An RDMA port that reports nothing gets the default, not the TCP setting.
  std::vector<OpenedTransport> transports;
  transports.push_back(opened(Backend::kIb, {device("mlx5_0:1", 0)}));
  transports.push_back(opened(Backend::kTcp, {device("eth0", 0)}));
  ASSERT_TRUE(list_devices(transports, 1000, &devices).ok());
  EXPECT_EQ(speeds(devices), (std::vector<int>{kDefaultSpeedMbps, 1000}));
}

TEST(ListDevices, ANonPositiveSettingIsNoOverride) {
  std::vector<NetDevice> devices;
  ASSERT_TRUE(list_devices(rdma_then_tcp(), -5, &devices).ok());
  EXPECT_EQ(speeds(devices), (std::vector<int>{200000, 100000, 25000, kDefaultSpeedMbps}));
}

TEST(ListDevices, NamesAreMadeUniqueAcrossTransportsInOrder) {
  // An IPoIB interface can be called like an RDMA device; names empty get the backend's name.
  std::vector<OpenedTransport> transports;
  transports.push_back(opened(Backend::kIb, devices_named({"ib0", ""})));
  transports.push_back(opened(Backend::kTcp, devices_named({"ib0", "eth0", "eth0", "", ""})));
  std::vector<NetDevice> devices;
  ASSERT_TRUE(list_devices(transports, 0, &devices).ok());
  EXPECT_EQ(names(devices),
            (std::vector<std::string>{"ib0", "ib", "ib0#1", "eth0", "eth0#1", "tcp", "tcp#1"}));
}

// A transport that counts one device more than it can describe.
class OneDeviceTooMany : public FakeTransport {
 public:
  using FakeTransport::FakeTransport;
  int device_count() const override { return FakeTransport::device_count() + 1; }
};

TEST(ListDevices, ADeviceThatCannotDescribeItselfFailsTheListAndLeavesItEmpty) {
  std::vector<OpenedTransport> transports = rdma_then_tcp();
  transports[1].transport = std::make_unique<OneDeviceTooMany>("tcp", devices_named({"eth0"}));
  std::vector<NetDevice> devices(3);
  Status status = list_devices(transports, 0, &devices);
  EXPECT_EQ(status.code(), Code::kInvalidArgument);
  EXPECT_NE(status.message().find("no such fake device"), std::string::npos) << status.message();
  EXPECT_TRUE(devices.empty());
}

TEST(ListDevices, NoTransportIsNoDevice) {
  std::vector<NetDevice> devices(2);
  ASSERT_TRUE(list_devices({}, 0, &devices).ok());
  EXPECT_TRUE(devices.empty());
}

// From the net plugin's unit tests (its label, plugin, moved with it).
TEST(DeviceNames, AreMadeUniqueInOrder) {
  std::vector<std::string> taken;
  for (const char* name : {"eth0", "eth0", "ib", "eth0", "eth0#1", "ib"}) {
    taken.push_back(unique_device_name(name, taken));
  }
  EXPECT_EQ(taken,
            (std::vector<std::string>{"eth0", "eth0#1", "ib", "eth0#2", "eth0#1#1", "ib#1"}));
}

}  // namespace
}  // namespace gradpack::topology
