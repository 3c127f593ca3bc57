// SPDX-License-Identifier: Apache-2.0
// The TCP backend of the transport interface (transport/transport.h).
//
// Devices are the host's network interfaces that are up and have an address: those named by
// GRADPACK_IFNAME, else NCCL_SOCKET_IFNAME (same syntax as NCCL: "eth0,eth1", prefix match;
// "^lo" excludes; "=eth0" exact), else every interface but loopback and docker/virbr bridges,
// else loopback. Each connection stripes its messages over `nsocks` sockets (GRADPACK_NSOCKS).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "transport/transport.h"

namespace gradpack::transport {

struct TcpOptions {
  int nsocks = 0;      // sockets per connection; 0: GRADPACK_NSOCKS
  std::string ifname;  // interface filter; "": GRADPACK_IFNAME, then NCCL_SOCKET_IFNAME
  // How long an incoming socket may take to send its hello before the listener drops it (a
  // connection's sockets must all arrive within four times this).
  std::chrono::milliseconds hello_timeout{5000};
};

// Errors: kInvalidArgument for a bad setting or when the filter leaves no interface; kSystem when
// the interfaces cannot be listed.
Status make_tcp_transport(const TcpOptions& options, std::unique_ptr<Transport>* out);

// The interface names `spec` selects from `names` (NCCL_SOCKET_IFNAME syntax; "" is the default
// rule: everything but lo*, docker*, virbr*, else loopback). Exposed for tests.
std::vector<std::string> filter_interface_names(const std::vector<std::string>& names,
                                                std::string_view spec);

}  // namespace gradpack::transport
