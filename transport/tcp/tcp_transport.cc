// SPDX-License-Identifier: Apache-2.0
#include "transport/tcp/tcp_transport.h"

#include <cstdlib>

#include "common/log.h"
#include "common/settings.h"
#include "transport/tcp/connection.h"
#include "transport/tcp/device.h"
#include "transport/tcp/listener.h"

namespace gradpack::transport {
namespace {

using tcp::Device;

class TcpTransport final : public DeviceListTransport<Device> {
 public:
  TcpTransport(std::vector<std::shared_ptr<Device>> devices, int nsocks,
               std::chrono::milliseconds hello_timeout)
      : DeviceListTransport(std::move(devices)), nsocks_(nsocks), hello_timeout_(hello_timeout) {}

  const char* name() const override { return "tcp"; }

  Status listen(int dev, Handle* handle, std::unique_ptr<Listener>* out) override {
    GP_RETURN_IF_ERROR(check_device(dev));
    return tcp::TcpListener::create(device(dev), hello_timeout_, handle, out);
  }

  Status connect(int dev, const Handle& handle, uint64_t hello, std::chrono::milliseconds timeout,
                 std::unique_ptr<SendConnection>* out) override {
    GP_RETURN_IF_ERROR(check_device(dev));
    tcp::HandleData target;
    GP_RETURN_IF_ERROR(tcp::decode_handle(handle, &target));
    std::vector<tcp::Fd> fds;
    GP_RETURN_IF_ERROR(tcp::dial(target, hello, nsocks_, timeout, &fds));
    return tcp::make_send_connection(device(dev), std::move(fds), out);
  }

  uint64_t progress_epoch(int dev) const override {
    return dev >= 0 && dev < device_count() ? device(dev)->progress().epoch() : 0;
  }
  void wait_progress(int dev, uint64_t seen, std::chrono::steady_clock::time_point until) override {
    if (dev >= 0 && dev < device_count()) {
      device(dev)->progress().wait(static_cast<uint32_t>(seen), until);
    }
  }
  void set_progress_cpus(int dev, const std::vector<int>& cpus) override {
    if (dev >= 0 && dev < device_count() && !cpus.empty()) device(dev)->set_cpus(cpus);
  }

 private:
  int nsocks_;
  std::chrono::milliseconds hello_timeout_;
};

}  // namespace

std::vector<std::string> filter_interface_names(const std::vector<std::string>& names,
                                                std::string_view spec) {
  std::vector<tcp::Interface> all;
  for (const auto& name : names) {
    tcp::Interface iface;
    iface.name = name;
    iface.loopback = name.rfind("lo", 0) == 0;
    all.push_back(iface);
  }
  std::vector<std::string> out;
  for (const auto& iface : tcp::select_interfaces(all, spec)) out.push_back(iface.name);
  return out;
}

Status make_tcp_transport(const TcpOptions& options, std::unique_ptr<Transport>* out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  int nsocks = options.nsocks;
  if (nsocks == 0) nsocks = static_cast<int>(settings->get_int(SettingId::kNsocks));
  if (nsocks < 1 || nsocks > tcp::kMaxSockets) {
    return InvalidArgument("sockets per connection must be in [1, 64], got " +
                           std::to_string(nsocks));
  }
  if (options.hello_timeout.count() <= 0) {
    return InvalidArgument("TcpOptions.hello_timeout must be positive");
  }
  std::string spec = options.ifname;
  std::string source = "TcpOptions.ifname";
  if (spec.empty() && settings->is_set(SettingId::kIfname)) {
    spec = settings->get(SettingId::kIfname);
    source = "GRADPACK_IFNAME";
  }
  if (spec.empty()) {
    const char* nccl = std::getenv("NCCL_SOCKET_IFNAME");
    if (nccl != nullptr) {
      spec = nccl;
      source = "NCCL_SOCKET_IFNAME";
    }
  }
  std::vector<tcp::Interface> all;
  GP_RETURN_IF_ERROR(tcp::list_interfaces(&all));
  std::vector<tcp::Interface> chosen = tcp::select_interfaces(all, spec);
  if (chosen.empty()) {
    return InvalidArgument(spec.empty() ? std::string("no network interface is up")
                                        : "no network interface matches " + source + "=" + spec);
  }
  std::vector<std::shared_ptr<Device>> devices;
  std::string names;
  for (size_t i = 0; i < chosen.size(); ++i) {
    DeviceInfo info = tcp::describe_interface(chosen[i], static_cast<int>(i));
    names += (i ? "," : "") + info.name;
    devices.push_back(std::make_shared<Device>(chosen[i], std::move(info)));
  }
  GP_LOG_INFO(kNet, "tcp: %zu device(s): %s; %d socket(s) per connection", devices.size(),
              names.c_str(), nsocks);
  *out = std::make_unique<TcpTransport>(std::move(devices), nsocks, options.hello_timeout);
  return OkStatus();
}

}  // namespace gradpack::transport
