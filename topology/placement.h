// SPDX-License-Identifier: Apache-2.0
// Where a NIC's work should run: the decision, made from the node topology (topology/node.h), and
// handed to the transport as a plain CPU list (Transport::set_progress_cpus). The transport never
// sees hwloc or the topology: it is below this room and applies what it is given
// (common/affinity.h does the system call).
//
// Policy: a device's progress thread runs on the CPUs hwloc reports near its NIC, intersected with
// the CPUs this process may use (a cgroup or taskset is respected). No topology, a device without
// a PCI function (loopback, veth, bridges), a NIC hwloc does not list, or an empty intersection:
// the thread is left alone. Pinning never fails an init; GRADPACK_LOG=debug says what was done.
#pragma once

#include <vector>

#include "common/settings.h"
#include "topology/node.h"
#include "transport/open.h"
#include "transport/transport.h"

namespace gradpack::topology {

struct NicPlacement {
  const PciDevice* nic = nullptr;  // the NIC in the topology, null when it is not there
  int numa_node = -1;              // its NUMA node, -1: unknown
  std::vector<int> cpus;           // where its progress thread should run; empty: leave it
};

// The placement of the device `info` describes, with `allowed` the CPUs this process may use.
NicPlacement place_nic(const NodeTopology& node, const transport::DeviceInfo& info,
                       const std::vector<int>& allowed);

// Sets every device's progress CPUs on `transport` from `node` (logged at debug). Returns how
// many devices were pinned.
int place_progress_threads(transport::Transport& transport, const NodeTopology& node,
                           const std::vector<int>& allowed);

// What the communicator and the net plugin call after transport::open: with
// GRADPACK_NIC_AFFINITY=on, loads this machine's topology once and places every transport's
// progress threads; off does nothing (and loads nothing).
void place_progress_threads(const std::vector<transport::OpenedTransport>& transports,
                            const Settings& settings);

}  // namespace gradpack::topology
