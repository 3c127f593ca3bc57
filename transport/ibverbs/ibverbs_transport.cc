// SPDX-License-Identifier: Apache-2.0
#include "transport/ibverbs/ibverbs_transport.h"

#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/log.h"
#include "common/settings.h"
#include "gradpack/config.h"

#if GRADPACK_HAVE_IBVERBS
#include "transport/ibverbs/connection.h"
#include "transport/ibverbs/device.h"
#include "transport/ibverbs/listener.h"
#include "transport/ibverbs/verbs_loader.h"
#endif

namespace gradpack::transport {
namespace {

#if GRADPACK_HAVE_IBVERBS

using Clock = std::chrono::steady_clock;
constexpr auto kReplyTimeout = std::chrono::seconds(5);

class IbTransport final : public DeviceListTransport<IbDevice> {
 public:
  IbTransport(std::shared_ptr<const VerbsApi> api, std::vector<std::shared_ptr<IbDevice>> devices,
              std::string bootstrap_address)
      : DeviceListTransport(std::move(devices)),
        api_(std::move(api)),
        bootstrap_address_(std::move(bootstrap_address)) {}

  const char* name() const override { return "ib"; }
  void set_progress_cpus(int dev, const std::vector<int>& cpus) override {
    if (dev >= 0 && dev < device_count() && !cpus.empty()) device(dev)->set_progress_cpus(cpus);
  }

  Status listen(int dev, Handle* handle, std::unique_ptr<Listener>* out) override {
    GP_RETURN_IF_ERROR(check_device(dev));
    std::shared_ptr<IbDevice> device = this->device(dev);
    IbHandle where;
    GP_RETURN_IF_ERROR(random_key(where.key));
    int fd = -1;
    GP_RETURN_IF_ERROR(bootstrap_listen(bootstrap_address_, &fd, &where));
    encode_handle(where, handle);
    auto accept_fn = [device](const ConnectMsg& msg, int conn_fd,
                              std::unique_ptr<RecvConnection>* conn_out) -> Status {
      auto conn = std::make_shared<IbConn>(device, /*sender=*/false, conn_fd);
      GP_RETURN_IF_ERROR(conn->init());
      GP_RETURN_IF_ERROR(conn->connect_qp(msg.qp));
      conn->set_hello(msg.hello);
      uint8_t reply[kAcceptMsgBytes];
      encode_accept(conn->local_info(), reply);
      GP_RETURN_IF_ERROR(
          bootstrap_send_all(conn_fd, reply, sizeof(reply), Clock::now() + kReplyTimeout));
      device->engine().add(conn);
      *conn_out = std::make_unique<IbRecvConnection>(std::move(conn));
      return OkStatus();
    };
    *out = std::make_unique<IbListener>(fd, where.key, std::move(accept_fn));
    return OkStatus();
  }

  Status connect(int dev, const Handle& handle, uint64_t hello, std::chrono::milliseconds timeout,
                 std::unique_ptr<SendConnection>* out) override {
    GP_RETURN_IF_ERROR(check_device(dev));
    IbHandle where;
    GP_RETURN_IF_ERROR(decode_handle(handle, &where));
    const Clock::time_point deadline = Clock::now() + timeout;
    int fd = -1;
    GP_RETURN_IF_ERROR(bootstrap_connect(where, timeout, &fd));
    // The connection owns fd from here on.
    auto conn = std::make_shared<IbConn>(device(dev), /*sender=*/true, fd);
    GP_RETURN_IF_ERROR(conn->init());
    ConnectMsg msg;
    std::memcpy(msg.key, where.key, kIbKeyBytes);
    msg.hello = hello;
    msg.qp = conn->local_info();
    uint8_t bytes[kConnectMsgBytes];
    encode_connect(msg, bytes);
    GP_RETURN_IF_ERROR(bootstrap_send_all(fd, bytes, sizeof(bytes), deadline));
    device(dev)->engine().add(conn);
    *out = std::make_unique<IbSendConnection>(std::move(conn));
    return OkStatus();
  }

 private:
  std::shared_ptr<const VerbsApi> api_;
  std::string bootstrap_address_;
};

#endif  // GRADPACK_HAVE_IBVERBS

// No libibverbs, or a build without it: zero devices, and every call says why.
class NoDeviceTransport : public Transport {
 public:
  explicit NoDeviceTransport(std::string why) : why_(std::move(why)) {}
  const char* name() const override { return "ib"; }
  int device_count() const override { return 0; }
  Status device_info(int, DeviceInfo*) const override { return Unsupported(why_); }
  Status listen(int, Handle*, std::unique_ptr<Listener>*) override { return Unsupported(why_); }
  Status connect(int, const Handle&, uint64_t, std::chrono::milliseconds,
                 std::unique_ptr<SendConnection>*) override {
    return Unsupported(why_);
  }

 private:
  std::string why_;
};

}  // namespace

#if GRADPACK_HAVE_IBVERBS
Status make_ibverbs_transport_with(std::shared_ptr<const VerbsApi> api,
                                   const std::string& bootstrap_address,
                                   std::unique_ptr<Transport>* out, GdrMode gdr) {
  std::vector<std::shared_ptr<IbDevice>> devices;
  enumerate_devices(api, gdr, &devices);
  if (devices.empty()) {
    GP_LOG_INFO(kNet, "ib: %s loaded, but no RDMA device has an active port", api->path.c_str());
  }
  *out = std::make_unique<IbTransport>(std::move(api), std::move(devices), bootstrap_address);
  return OkStatus();
}
#endif

Status make_ibverbs_transport_from(const std::string& library, std::unique_ptr<Transport>* out) {
#if GRADPACK_HAVE_IBVERBS
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  GdrMode gdr = GdrMode::kAuto;
  GP_RETURN_IF_ERROR(parse_gdr_mode(settings->get(SettingId::kGdr), &gdr));
  std::shared_ptr<const VerbsApi> api;
  Status loaded = load_verbs(library, &api);
  if (!loaded.ok()) {
    GP_LOG_INFO(kNet, "ib: no RDMA devices: %s", loaded.message().c_str());
    *out = std::make_unique<NoDeviceTransport>("ib: " + loaded.message());
    return OkStatus();
  }
  return make_ibverbs_transport_with(std::move(api), "", out, gdr);
#else
  (void)library;
  GP_LOG_INFO(kNet, "ib: gradpack was built without ibverbs: no RDMA devices");
  *out = std::make_unique<NoDeviceTransport>("ib: gradpack was built without ibverbs");
  return OkStatus();
#endif
}

Status make_ibverbs_transport(std::unique_ptr<Transport>* out) {
#if GRADPACK_HAVE_IBVERBS
  return make_ibverbs_transport_from(kDefaultVerbsLibrary, out);
#else
  return make_ibverbs_transport_from("libibverbs.so.1", out);
#endif
}

}  // namespace gradpack::transport
