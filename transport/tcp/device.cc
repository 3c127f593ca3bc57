// SPDX-License-Identifier: Apache-2.0
#include "transport/tcp/device.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>

#include "common/affinity.h"
#include "common/log.h"
#include "transport/tcp/connection.h"

namespace gradpack::transport::tcp {
namespace {

constexpr int kDefaultSpeedMbps = 10000;

// Lower is better: IPv4, then a global IPv6 address, then a link-local one.
int address_rank(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) return 0;
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  return IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) ? 2 : 1;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

IfnameFilter parse_ifname_filter(std::string_view spec) {
  IfnameFilter filter;
  if (!spec.empty() && spec[0] == '^') {
    filter.exclude = true;
    spec.remove_prefix(1);
  }
  if (!spec.empty() && spec[0] == '=') {
    filter.exact = true;
    spec.remove_prefix(1);
  }
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view name = spec.substr(0, comma);
    // Tolerate blanks around names ("eth0, eth1").
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (!name.empty()) filter.names.emplace_back(name);
    if (comma == std::string_view::npos) break;
    spec.remove_prefix(comma + 1);
  }
  return filter;
}

bool ifname_matches(const IfnameFilter& filter, std::string_view name) {
  bool hit = std::any_of(filter.names.begin(), filter.names.end(), [&](const std::string& n) {
    return filter.exact ? name == n : starts_with(name, n);
  });
  return hit != filter.exclude;
}

Status list_interfaces(std::vector<Interface>* out) {
  out->clear();
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return SystemError("getifaddrs");
  std::vector<int> ranks;
  for (ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_addr == nullptr || (ifa->ifa_flags & IFF_UP) == 0) continue;
    int family = ifa->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    int rank = address_rank(ifa->ifa_addr);
    auto it = std::find_if(out->begin(), out->end(),
                           [&](const Interface& i) { return i.name == ifa->ifa_name; });
    size_t index = static_cast<size_t>(it - out->begin());
    if (it == out->end()) {
      out->emplace_back();
      ranks.push_back(INT_MAX);
    }
    if (rank >= ranks[index]) continue;
    Interface& iface = (*out)[index];
    ranks[index] = rank;
    iface.name = ifa->ifa_name;
    iface.loopback = (ifa->ifa_flags & IFF_LOOPBACK) != 0;
    iface.address = sockaddr_storage{};
    std::memcpy(&iface.address, ifa->ifa_addr,
                family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
  }
  freeifaddrs(list);
  return OkStatus();
}

std::vector<Interface> select_interfaces(const std::vector<Interface>& all, std::string_view spec) {
  std::vector<Interface> out;
  if (!spec.empty()) {
    IfnameFilter filter = parse_ifname_filter(spec);
    for (const auto& iface : all) {
      if (ifname_matches(filter, iface.name)) out.push_back(iface);
    }
    return out;
  }
  for (const auto& iface : all) {
    if (iface.loopback || starts_with(iface.name, "docker") || starts_with(iface.name, "virbr")) {
      continue;
    }
    out.push_back(iface);
  }
  if (out.empty()) {
    for (const auto& iface : all) {
      if (iface.loopback) out.push_back(iface);
    }
  }
  return out;
}

DeviceInfo describe_interface(const Interface& iface, int index) {
  DeviceInfo info;
  info.name = iface.name;
  const std::string sys = "/sys/class/net/" + iface.name;
  info.speed_mbps = kDefaultSpeedMbps;
  std::ifstream speed(sys + "/speed");
  long long mbps = 0;
  // Virtual links (loopback, veth) report nothing or -1.
  if (speed >> mbps && mbps > 0 && mbps < INT_MAX) info.speed_mbps = static_cast<int>(mbps);
  info.pci_path = pci_function_path(sys + "/device");  // none for loopback, veth, bridges
  info.guid = (std::hash<std::string>{}(iface.name) << 8) ^ static_cast<uint64_t>(index);
  info.latency_us = 0;
  info.port = 1;
  info.max_comms = 65536;
  info.max_recvs = 1;
  info.cuda_memory = false;
  info.dmabuf = false;
  return info;
}

Device::~Device() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    if (thread_.joinable()) {
      uint64_t one = 1;
      ssize_t n = write(wakeup_.get(), &one, sizeof(one));
      (void)n;
    }
  }
  if (thread_.joinable()) thread_.join();
  for (auto& channel : channels_) channel->close_sockets();
}

Status Device::start_locked() {
  if (thread_.joinable()) return OkStatus();
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return SystemError("epoll_create1");
  wakeup_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wakeup_) return SystemError("eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wakeup descriptor
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wakeup_.get(), &ev) != 0) {
    return SystemError("epoll_ctl(eventfd)");
  }
  thread_ = std::thread([this] { run(); });
  apply_cpus_locked();
  return OkStatus();
}

void Device::set_cpus(std::vector<int> cpus) {
  std::lock_guard<std::mutex> lock(mu_);
  cpus_ = std::move(cpus);
  apply_cpus_locked();
}

void Device::apply_cpus_locked() {
  if (cpus_.empty() || !thread_.joinable()) return;
  const std::string list = format_cpu_list(cpus_);
  Status st = set_thread_cpus(thread_.native_handle(), cpus_);
  if (st.ok()) {
    GP_LOG_DEBUG(kNet, "tcp: %s progress thread pinned to CPUs %s", iface_.name.c_str(),
                 list.c_str());
  } else {
    GP_LOG_DEBUG(kNet, "tcp: %s progress thread not pinned to CPUs %s: %s", iface_.name.c_str(),
                 list.c_str(), st.message().c_str());
  }
}

void Device::push_locked(Command command) {
  bool was_empty = commands_.empty();
  commands_.push_back(std::move(command));
  // The thread swaps the whole list after draining the eventfd, so one write per non-empty
  // period is enough.
  if (was_empty) {
    uint64_t one = 1;
    ssize_t n = write(wakeup_.get(), &one, sizeof(one));
    (void)n;
  }
}

Status Device::attach(const std::shared_ptr<Channel>& channel) {
  std::lock_guard<std::mutex> lock(mu_);
  GP_RETURN_IF_ERROR(start_locked());
  channel->set_epoll(epoll_.get());
  for (size_t i = 0; i < channel->socket_count(); ++i) {
    epoll_event ev{};
    // Edge-triggered: the thread moves bytes until EAGAIN, then waits for the next edge.
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = channel->ref(i);
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, channel->fd(i), &ev) != 0) {
      Status status = SystemError("epoll_ctl(ADD)");
      for (size_t j = 0; j < i; ++j)
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, channel->fd(j), nullptr);
      return status;
    }
  }
  push_locked(Command{CommandKind::kAttach, channel});
  return OkStatus();
}

void Device::kick(const std::shared_ptr<Channel>& channel) {
  // Called with queue_mutex() held by the connection.
  if (channel->kicked) return;
  channel->kicked = true;
  push_locked(Command{CommandKind::kKick, channel});
}

void Device::detach(const std::shared_ptr<Channel>& channel) {
  std::unique_lock<std::mutex> lock(mu_);
  bool done = false;
  push_locked(Command{CommandKind::kDetach, channel, &done});
  detached_.wait(lock, [&] { return done; });
}

void Device::handle(Command& command) {
  Channel* channel = command.channel.get();
  switch (command.kind) {
    case CommandKind::kAttach:
      channels_.push_back(command.channel);
      break;
    case CommandKind::kKick:
      channel->kick_from_queue(mu_);
      break;
    case CommandKind::kDetach: {
      for (size_t i = 0; i < channel->socket_count(); ++i) {
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, channel->fd(i), nullptr);
      }
      std::deque<Operation> incoming;
      {
        std::lock_guard<std::mutex> lock(mu_);
        incoming.swap(channel->incoming);
      }
      channel->fail_and_close(
          Status(Code::kRemote, "the connection to " + channel->peer() + " was closed locally"),
          &incoming);
      std::erase(channels_, command.channel);
      std::lock_guard<std::mutex> lock(mu_);
      *command.done = true;
      detached_.notify_all();
      break;
    }
  }
}

void Device::run() {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  for (;;) {
    int n = epoll_wait(epoll_.get(), events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      GP_LOG_ERROR(kNet, "tcp: epoll_wait failed: %s; progress thread stops", std::strerror(errno));
      return;
    }
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        woken = true;
        continue;
      }
      auto* ref = static_cast<Channel::SocketRef*>(events[i].data.ptr);
      ref->channel->on_event(ref->index, events[i].events);
    }
    // Commands after the socket events: a detached channel's events of this batch were handled
    // while it still existed, and the next epoll_wait no longer reports its sockets.
    if (!woken) continue;
    uint64_t count = 0;
    ssize_t got = read(wakeup_.get(), &count, sizeof(count));
    (void)got;
    std::vector<Command> commands;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      commands.swap(commands_);
    }
    for (auto& command : commands) handle(command);
  }
}

}  // namespace gradpack::transport::tcp
