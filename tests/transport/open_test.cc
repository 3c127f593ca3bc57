// SPDX-License-Identifier: Apache-2.0
// The one GRADPACK_TRANSPORT policy (transport/open.h): which backends a process opens and in
// what order, with fake backends (tests/transport/fake_transport.h), so that the RDMA cases run
// without an RDMA device.
#include "transport/open.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/transport/fake_transport.h"

namespace gradpack::transport {
namespace {

// A maker that counts its calls and makes a FakeTransport with `devices`, or fails with `error`.
TransportMaker fake_maker(const char* name, const std::vector<std::string>& devices, int* calls,
                          const Status& error = OkStatus()) {
  return [=](std::unique_ptr<Transport>* out) -> Status {
    ++*calls;
    if (!error.ok()) return error;
    *out = std::make_unique<testing::FakeTransport>(name, testing::devices_named(devices));
    return OkStatus();
  };
}

// Backends and device names of a choice, in device order.
std::vector<std::pair<Backend, std::string>> listed(const std::vector<OpenedTransport>& chosen) {
  std::vector<std::pair<Backend, std::string>> out;
  for (const auto& [backend, transport] : chosen) {
    EXPECT_GT(transport->device_count(), 0) << "a transport without devices was kept";
    for (int i = 0; i < transport->device_count(); ++i) {
      DeviceInfo info;
      EXPECT_TRUE(transport->device_info(i, &info).ok());
      out.emplace_back(backend, info.name);
    }
  }
  return out;
}

using Listed = std::vector<std::pair<Backend, std::string>>;

Status open_choice(const std::string& choice, TransportMaker ib, TransportMaker tcp,
                   std::vector<OpenedTransport>* out) {
  TransportMakers makers;
  makers.ib = std::move(ib);
  makers.tcp = std::move(tcp);
  return transport::open(choice, makers, out);
}

// An ibverbs transport that cannot be used: its constructor fails (no libibverbs), or it has no
// device with an active port.
TransportMaker unusable_rdma(bool fails, int* calls) {
  return fails ? fake_maker("ib", {"mlx5_0:1"}, calls, Unsupported("libibverbs.so.1 not found"))
               : fake_maker("ib", {}, calls);
}

TEST(ChooseTransports, AutoListsTheRdmaDevicesFirstThenTheInterfaces) {
  int ib_calls = 0, tcp_calls = 0;
  std::vector<OpenedTransport> chosen;
  ASSERT_TRUE(open_choice("auto", fake_maker("ib", {"mlx5_0:1", "mlx5_1:1"}, &ib_calls),
                          fake_maker("tcp", {"eth0", "ib0"}, &tcp_calls), &chosen)
                  .ok());
  EXPECT_EQ(listed(chosen), (Listed{{Backend::kIb, "mlx5_0:1"},
                                    {Backend::kIb, "mlx5_1:1"},
                                    {Backend::kTcp, "eth0"},
                                    {Backend::kTcp, "ib0"}}));
  EXPECT_EQ(ib_calls, 1);
  EXPECT_EQ(tcp_calls, 1);
}

TEST(ChooseTransports, AutoWithoutRdmaListsTheInterfaces) {
  for (bool ib_fails : {true, false}) {
    SCOPED_TRACE(ib_fails ? "the ibverbs transport fails" : "it has no device");
    int ib_calls = 0, tcp_calls = 0;
    std::vector<OpenedTransport> chosen;
    TransportMaker make_ib = unusable_rdma(ib_fails, &ib_calls);
    ASSERT_TRUE(
        open_choice("auto", make_ib, fake_maker("tcp", {"eth0"}, &tcp_calls), &chosen).ok());
    EXPECT_EQ(listed(chosen), (Listed{{Backend::kTcp, "eth0"}}));
    EXPECT_EQ(ib_calls, 1);
  }
}

TEST(ChooseTransports, AutoReportsAnInterfaceErrorEvenWithRdmaDevices) {
  int ib_calls = 0, tcp_calls = 0;
  std::vector<OpenedTransport> chosen;
  const Status bad = InvalidArgument("no network interface matches GRADPACK_IFNAME=eht0");
  Status status = open_choice("auto", fake_maker("ib", {"mlx5_0:1"}, &ib_calls),
                              fake_maker("tcp", {}, &tcp_calls, bad), &chosen);
  EXPECT_EQ(status.code(), bad.code());
  EXPECT_EQ(status.message(), bad.message());
  EXPECT_TRUE(chosen.empty());
}

TEST(ChooseTransports, TcpNeverProbesRdma) {
  int ib_calls = 0, tcp_calls = 0;
  std::vector<OpenedTransport> chosen;
  ASSERT_TRUE(open_choice("tcp", fake_maker("ib", {"mlx5_0:1"}, &ib_calls),
                          fake_maker("tcp", {"eth0"}, &tcp_calls), &chosen)
                  .ok());
  EXPECT_EQ(listed(chosen), (Listed{{Backend::kTcp, "eth0"}}));
  EXPECT_EQ(ib_calls, 0);
}

TEST(ChooseTransports, IbListsOnlyRdmaDevices) {
  int ib_calls = 0, tcp_calls = 0;
  std::vector<OpenedTransport> chosen;
  ASSERT_TRUE(open_choice("ib", fake_maker("ib", {"mlx5_0:1"}, &ib_calls),
                          fake_maker("tcp", {"eth0"}, &tcp_calls), &chosen)
                  .ok());
  EXPECT_EQ(listed(chosen), (Listed{{Backend::kIb, "mlx5_0:1"}}));
  EXPECT_EQ(tcp_calls, 0);
}

TEST(ChooseTransports, IbWithoutRdmaIsUnsupportedNamingTheSetting) {
  for (bool ib_fails : {true, false}) {
    SCOPED_TRACE(ib_fails ? "the ibverbs transport fails" : "it has no device");
    int ib_calls = 0, tcp_calls = 0;
    std::vector<OpenedTransport> chosen;
    TransportMaker make_ib = unusable_rdma(ib_fails, &ib_calls);
    Status status = open_choice("ib", make_ib, fake_maker("tcp", {"eth0"}, &tcp_calls), &chosen);
    EXPECT_EQ(status.code(), Code::kUnsupported);
    EXPECT_NE(status.message().find("GRADPACK_TRANSPORT"), std::string::npos) << status.message();
    if (ib_fails) {
      EXPECT_NE(status.message().find("libibverbs.so.1 not found"), std::string::npos)
          << status.message();
    }
    EXPECT_TRUE(chosen.empty());
    EXPECT_EQ(tcp_calls, 0);
  }
}

TEST(ChooseTransports, NoDeviceAtAllAndAnUnknownChoiceAreErrors) {
  int ib_calls = 0, tcp_calls = 0;
  std::vector<OpenedTransport> chosen;
  EXPECT_EQ(open_choice("auto", fake_maker("ib", {}, &ib_calls), fake_maker("tcp", {}, &tcp_calls),
                        &chosen)
                .code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(chosen.empty());
  Status status = open_choice("rdma", fake_maker("ib", {"mlx5_0:1"}, &ib_calls),
                              fake_maker("tcp", {"eth0"}, &tcp_calls), &chosen);
  EXPECT_EQ(status.code(), Code::kInvalidArgument);
  EXPECT_NE(status.message().find("GRADPACK_TRANSPORT=rdma"), std::string::npos)
      << status.message();
}

}  // namespace
}  // namespace gradpack::transport
