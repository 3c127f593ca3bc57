// SPDX-License-Identifier: Apache-2.0
// The one GRADPACK_TRANSPORT policy: which transports a process talks through, in device order.
// The communicator takes the first device of the first transport; the NCCL net plugin numbers
// every device of every transport, in this order.
//
//   tcp  → the TCP interfaces (GRADPACK_IFNAME, else NCCL_SOCKET_IFNAME, else all but loopback);
//          ibverbs is never probed.
//   ib   → the RDMA devices with an active port; none is an error naming the setting.
//   auto → both, the RDMA devices first (so device 0 is a fast one). No RDMA device only leaves
//          the interfaces (logged at info), but an interface error (a GRADPACK_IFNAME that matches
//          nothing) fails even when RDMA devices exist: a setting the user wrote is never ignored.
// No device at all is an error.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/settings.h"
#include "common/status.h"
#include "transport/transport.h"

namespace gradpack::transport {

// One opened backend and its kind (the NCCL plugin writes the kind into its handles).
struct OpenedTransport {
  Backend backend = Backend::kTcp;
  std::unique_ptr<Transport> transport;
};

// How a backend is made: the real constructors, or a test's fakes (no machine has every device).
using TransportMaker = std::function<Status(std::unique_ptr<Transport>*)>;
struct TransportMakers {
  TransportMaker ib;   // default: make_ibverbs_transport
  TransportMaker tcp;  // default: make_tcp_transport with the settings' interfaces
  static TransportMakers real();
};

// Fills *out with the transports of `choice` (GRADPACK_TRANSPORT's value), each with at least one
// device, in device order. Errors: an unknown choice → kInvalidArgument naming it; ib without a
// usable RDMA device → kUnsupported naming GRADPACK_TRANSPORT; the TCP maker's error as it is
// (under auto too); no device at all → kInvalidArgument. *out is empty on error.
Status open(const std::string& choice, const TransportMakers& makers,
            std::vector<OpenedTransport>* out);

// The same with GRADPACK_TRANSPORT from `settings` and the real backends.
Status open(const Settings& settings, std::vector<OpenedTransport>* out);

}  // namespace gradpack::transport
