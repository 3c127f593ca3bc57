// SPDX-License-Identifier: Apache-2.0
// TCP devices: the host's network interfaces (discovery and the NCCL-style name filter) and, per
// device, the progress thread that does all socket I/O of that device's connections.
#pragma once

#include <sys/socket.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "transport/progress_signal.h"
#include "transport/tcp/socket.h"
#include "transport/transport.h"

namespace gradpack::transport::tcp {

class Channel;

// An interface filter in NCCL_SOCKET_IFNAME syntax: "eth,ib" matches names starting with eth or
// ib; a leading '^' inverts the match; a leading '=' (after any '^') asks for exact names.
struct IfnameFilter {
  bool exclude = false;
  bool exact = false;
  std::vector<std::string> names;
};

IfnameFilter parse_ifname_filter(std::string_view spec);
bool ifname_matches(const IfnameFilter& filter, std::string_view name);

struct Interface {
  std::string name;
  sockaddr_storage address{};  // port 0
  bool loopback = false;
};

// Every interface that is up and has an IPv4 or IPv6 address, in the kernel's order, with one
// address each (IPv4 preferred, then a global IPv6, then a link-local one).
Status list_interfaces(std::vector<Interface>* out);

// Applies `spec` (empty: every interface but loopback and docker*/virbr* bridges, or loopback
// when that leaves none) to `all`.
std::vector<Interface> select_interfaces(const std::vector<Interface>& all, std::string_view spec);

// What the device reports: name, sysfs speed (10 Gbit/s when unknown) and PCI path.
DeviceInfo describe_interface(const Interface& iface, int index);

// One interface and its progress thread. The thread starts with the first attached channel and
// is joined by the destructor; it owns an epoll set with every socket of every attached channel.
// Connections keep their Device alive through a shared_ptr, so it outlives the transport if they
// do.
class Device {
 public:
  Device(Interface iface, DeviceInfo info) : iface_(std::move(iface)), info_(std::move(info)) {}
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const DeviceInfo& info() const { return info_; }
  const Interface& interface() const { return iface_; }

  // Hands a channel to the progress thread (starting it if needed).
  Status attach(const std::shared_ptr<Channel>& channel);
  // Makes the progress thread look at the channel's queued operations. The caller holds
  // queue_mutex() (it has just appended to channel->incoming).
  void kick(const std::shared_ptr<Channel>& channel);
  // Removes the channel and waits until the progress thread no longer touches it or its buffers;
  // its pending requests fail. Must not be called from the progress thread.
  void detach(const std::shared_ptr<Channel>& channel);

  // The lock that guards every channel's queue of new operations (Channel::incoming).
  std::mutex& queue_mutex() { return mu_; }

  // Bumped by the progress thread whenever requests of this device complete or fail.
  ProgressSignal& progress() { return progress_; }

  // The CPUs the progress thread runs on (Transport::set_progress_cpus): applied now if the
  // thread runs, else when it starts. Never fails: a refused set is logged and ignored.
  void set_cpus(std::vector<int> cpus);

 private:
  enum class CommandKind { kAttach, kKick, kDetach };
  struct Command {
    CommandKind kind;
    std::shared_ptr<Channel> channel;
    bool* done = nullptr;  // kDetach: set under mu_ once handled
  };

  Status start_locked();
  void apply_cpus_locked();
  void push_locked(Command command);
  void run();
  void handle(Command& command);

  const Interface iface_;
  const DeviceInfo info_;
  ProgressSignal progress_;
  std::mutex mu_;
  std::condition_variable detached_;
  std::vector<Command> commands_;  // guarded by mu_
  bool stop_ = false;              // guarded by mu_
  std::vector<int> cpus_;          // guarded by mu_; empty: not pinned
  Fd epoll_;
  Fd wakeup_;  // eventfd: written when commands_ turns non-empty
  std::thread thread_;
  // Progress thread only.
  std::vector<std::shared_ptr<Channel>> channels_;
};

}  // namespace gradpack::transport::tcp
