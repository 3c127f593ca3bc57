// SPDX-License-Identifier: Apache-2.0
#include "transport/open.h"

#include "common/log.h"
#include "transport/ibverbs/ibverbs_transport.h"
#include "transport/tcp/tcp_transport.h"

namespace gradpack::transport {

TransportMakers TransportMakers::real() {
  TransportMakers makers;
  makers.ib = make_ibverbs_transport;
  makers.tcp = [](std::unique_ptr<Transport>* out) {
    return make_tcp_transport(TcpOptions{}, out);
  };
  return makers;
}

Status open(const std::string& choice, const TransportMakers& makers,
            std::vector<OpenedTransport>* out) {
  out->clear();
  if (choice != "auto" && choice != "tcp" && choice != "ib") {
    return InvalidArgument("GRADPACK_TRANSPORT=" + choice + " is not one of auto, tcp, ib");
  }
  if (choice != "tcp") {
    std::unique_ptr<Transport> ib;
    Status status = makers.ib(&ib);
    if (status.ok() && ib != nullptr && ib->device_count() > 0) {
      out->push_back(OpenedTransport{Backend::kIb, std::move(ib)});
    } else {
      const std::string why = status.ok() ? "no RDMA device has an active port" : status.message();
      if (choice == "ib") {
        return Unsupported("GRADPACK_TRANSPORT=ib but no RDMA device can be used (" + why +
                           "); set it to auto or tcp to use the TCP interfaces");
      }
      GP_LOG_INFO(kNet, "no RDMA device listed (%s); TCP interfaces only", why.c_str());
    }
  }
  if (choice != "ib") {
    std::unique_ptr<Transport> tcp;
    Status status = makers.tcp(&tcp);
    if (!status.ok()) {
      out->clear();  // the RDMA devices do not hide a wrong GRADPACK_IFNAME
      return status;
    }
    if (tcp != nullptr && tcp->device_count() > 0) {
      out->push_back(OpenedTransport{Backend::kTcp, std::move(tcp)});
    }
  }
  if (out->empty()) {
    return InvalidArgument("no network device found; set GRADPACK_IFNAME or NCCL_SOCKET_IFNAME");
  }
  return OkStatus();
}

Status open(const Settings& settings, std::vector<OpenedTransport>* out) {
  return open(settings.get(SettingId::kTransport), TransportMakers::real(), out);
}

}  // namespace gradpack::transport
