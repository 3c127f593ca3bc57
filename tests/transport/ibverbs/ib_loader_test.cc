// SPDX-License-Identifier: Apache-2.0
// The ib factory degrades to zero devices, with a log line saying why, whatever is missing.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "gradpack/config.h"
#include "transport/ibverbs/ibverbs_transport.h"

#if GRADPACK_HAVE_IBVERBS
#include <dlfcn.h>

#include "transport/ibverbs/verbs_loader.h"
#endif

namespace gradpack::transport {
namespace {

std::mutex g_mu;
std::vector<std::string> g_lines;

void capture(LogLevel, Subsys, const char* message) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_lines.emplace_back(message);
}

// Captures the log at info level for the lifetime of the object.
class LogCapture {
 public:
  LogCapture() {
    g_lines.clear();
    log::set_level(LogLevel::kInfo);
    previous_ = log::set_sink(capture);
  }
  ~LogCapture() { log::set_sink(previous_); }
  bool saw(const std::string& text) const {
    std::lock_guard<std::mutex> lock(g_mu);
    for (const std::string& line : g_lines) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  LogSink previous_ = nullptr;
};

#if GRADPACK_HAVE_IBVERBS

TEST(IbLoader, MissingLibraryIsUnsupported) {
  std::shared_ptr<const VerbsApi> api;
  Status status = load_verbs("/nonexistent/libibverbs.so.1", &api);
  EXPECT_EQ(status.code(), Code::kUnsupported);
  EXPECT_NE(status.message().find("/nonexistent/libibverbs.so.1"), std::string::npos)
      << status.message();
  EXPECT_EQ(api, nullptr);
}

TEST(IbLoader, LibraryWithoutVerbsSymbolsIsUnsupported) {
  std::shared_ptr<const VerbsApi> api;
  Status status = load_verbs("libc.so.6", &api);
  EXPECT_EQ(status.code(), Code::kUnsupported);
  EXPECT_NE(status.message().find("lacks the symbol ibv_get_device_list"), std::string::npos)
      << status.message();
  EXPECT_EQ(api, nullptr);
}

TEST(IbLoader, MissingLibraryGivesZeroDevicesAndALogLine) {
  LogCapture log;
  std::unique_ptr<Transport> transport;
  ASSERT_TRUE(make_ibverbs_transport_from("/nonexistent/libibverbs.so.1", &transport).ok());
  ASSERT_NE(transport, nullptr);
  EXPECT_STREQ(transport->name(), "ib");
  EXPECT_EQ(transport->device_count(), 0);
  EXPECT_TRUE(log.saw("cannot load /nonexistent/libibverbs.so.1"));
  Handle handle;
  std::unique_ptr<Listener> listener;
  EXPECT_EQ(transport->listen(0, &handle, &listener).code(), Code::kUnsupported);
  std::unique_ptr<SendConnection> conn;
  EXPECT_EQ(transport->connect(0, handle, 1, std::chrono::milliseconds(10), &conn).code(),
            Code::kUnsupported);
}

TEST(IbLoader, LibraryWithoutSymbolsGivesZeroDevicesAndALogLine) {
  LogCapture log;
  std::unique_ptr<Transport> transport;
  ASSERT_TRUE(make_ibverbs_transport_from("libc.so.6", &transport).ok());
  EXPECT_EQ(transport->device_count(), 0);
  EXPECT_TRUE(log.saw("lacks the symbol ibv_get_device_list"));
}

TEST(IbLoader, RealLibraryResolvesEverySymbol) {
  void* probe = dlopen(kDefaultVerbsLibrary, RTLD_NOW | RTLD_LOCAL);
  if (probe == nullptr) GTEST_SKIP() << "libibverbs.so.1 is not installed on this machine";
  dlclose(probe);
  std::shared_ptr<const VerbsApi> api;
  Status status = load_verbs(kDefaultVerbsLibrary, &api);
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_NE(api->get_device_list, nullptr);
  EXPECT_NE(api->query_port_compat, nullptr);
  EXPECT_NE(api->reg_mr, nullptr);
  EXPECT_NE(api->get_device_guid, nullptr);
}

TEST(IbLoader, RealLibraryWithoutDeviceIsZeroDevicesNotAnError) {
  void* probe = dlopen(kDefaultVerbsLibrary, RTLD_NOW | RTLD_LOCAL);
  if (probe == nullptr) GTEST_SKIP() << "libibverbs.so.1 is not installed on this machine";
  dlclose(probe);
  LogCapture log;
  std::unique_ptr<Transport> transport;
  Status status = make_ibverbs_transport(&transport);
  ASSERT_TRUE(status.ok()) << status.to_string();
  ASSERT_NE(transport, nullptr);
  if (transport->device_count() > 0) {
    GTEST_SKIP() << "this machine has " << transport->device_count() << " active RDMA ports";
  }
  EXPECT_TRUE(log.saw("no RDMA device has an active port"));
  DeviceInfo info;
  EXPECT_EQ(transport->device_info(0, &info).code(), Code::kInvalidArgument);
  Handle handle;
  std::unique_ptr<Listener> listener;
  EXPECT_EQ(transport->listen(0, &handle, &listener).code(), Code::kInvalidArgument);
}

#else  // !GRADPACK_HAVE_IBVERBS

TEST(IbLoader, BuiltWithoutIbverbsGivesZeroDevices) {
  LogCapture log;
  std::unique_ptr<Transport> transport;
  ASSERT_TRUE(make_ibverbs_transport(&transport).ok());
  EXPECT_EQ(transport->device_count(), 0);
  EXPECT_TRUE(log.saw("built without ibverbs"));
}

#endif

}  // namespace
}  // namespace gradpack::transport
