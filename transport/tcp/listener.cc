// SPDX-License-Identifier: Apache-2.0
#include "transport/tcp/listener.h"

#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/little_endian.h"
#include "common/log.h"
#include "transport/tcp/connection.h"
#include "transport/tcp/device.h"

namespace gradpack::transport::tcp {
namespace {

constexpr uint32_t kHandleMagic = 0x48545047;  // "GPTH" in little-endian byte order
constexpr uint32_t kHelloMagic = 0x43545047;   // "GPTC"
constexpr uint16_t kWireVersion = 1;
// Sockets still sending their hello; past this the oldest is dropped, so a flood of idle clients
// cannot exhaust the process's descriptors.
constexpr size_t kMaxPending = 1024;

static_assert(4 + 2 + 2 + 2 + 2 + 4 + 16 + kKeyBytes <= kHandleBytes,
              "the TCP handle must fit in transport::Handle");
static_assert(4 + 2 + 2 + 2 + 2 + kKeyBytes + 8 + 8 == kHelloBytes);

}  // namespace

void encode_handle(const HandleData& data, Handle* out) {
  out->bytes.fill(0);
  uint8_t* p = out->bytes.data();
  store_le<uint32_t>(p, kHandleMagic);
  store_le<uint16_t>(p + 4, kWireVersion);
  if (data.address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&data.address);
    store_le<uint16_t>(p + 6, 4);
    store_le<uint16_t>(p + 8, ntohs(in->sin_port));
    std::memcpy(p + 16, &in->sin_addr, 4);
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&data.address);
    store_le<uint16_t>(p + 6, 6);
    store_le<uint16_t>(p + 8, ntohs(in6->sin6_port));
    store_le<uint32_t>(p + 12, in6->sin6_scope_id);
    std::memcpy(p + 16, &in6->sin6_addr, 16);
  }
  std::memcpy(p + 32, data.key.data(), kKeyBytes);
}

Status decode_handle(const Handle& handle, HandleData* out) {
  const uint8_t* p = handle.bytes.data();
  if (load_le<uint32_t>(p) != kHandleMagic || load_le<uint16_t>(p + 4) != kWireVersion) {
    return InvalidArgument("not a TCP transport handle (wrong magic or version)");
  }
  *out = HandleData{};
  uint16_t family = load_le<uint16_t>(p + 6);
  uint16_t port = load_le<uint16_t>(p + 8);
  if (family == 4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&out->address);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, p + 16, 4);
  } else if (family == 6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out->address);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_scope_id = load_le<uint32_t>(p + 12);
    std::memcpy(&in6->sin6_addr, p + 16, 16);
  } else {
    return InvalidArgument("TCP transport handle has unknown address family " +
                           std::to_string(family));
  }
  std::memcpy(out->key.data(), p + 32, kKeyBytes);
  return OkStatus();
}

void encode_hello(const Hello& hello, uint8_t* out) {
  store_le<uint32_t>(out, kHelloMagic);
  store_le<uint16_t>(out + 4, kWireVersion);
  store_le<uint16_t>(out + 6, hello.index);
  store_le<uint16_t>(out + 8, hello.nsocks);
  store_le<uint16_t>(out + 10, 0);
  std::memcpy(out + 12, hello.key.data(), kKeyBytes);
  store_le<uint64_t>(out + 28, hello.connection_id);
  store_le<uint64_t>(out + 36, hello.value);
}

bool decode_hello(const uint8_t* in, Hello* out) {
  if (load_le<uint32_t>(in) != kHelloMagic || load_le<uint16_t>(in + 4) != kWireVersion ||
      load_le<uint16_t>(in + 10) != 0) {
    return false;
  }
  out->index = load_le<uint16_t>(in + 6);
  out->nsocks = load_le<uint16_t>(in + 8);
  std::memcpy(out->key.data(), in + 12, kKeyBytes);
  out->connection_id = load_le<uint64_t>(in + 28);
  out->value = load_le<uint64_t>(in + 36);
  return out->nsocks >= 1 && out->nsocks <= kMaxSockets && out->index < out->nsocks;
}

Status TcpListener::create(std::shared_ptr<Device> device, std::chrono::milliseconds hello_timeout,
                           Handle* handle, std::unique_ptr<Listener>* out) {
  HandleData data;
  data.address = device->interface().address;
  GP_RETURN_IF_ERROR(random_bytes(data.key.data(), data.key.size()));
  Fd fd(socket(data.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return SystemError("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t len = data.address.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&data.address), len) != 0) {
    return SystemError("bind to " + format_address(data.address));
  }
  if (::listen(fd.get(), SOMAXCONN) != 0) return SystemError("listen");
  len = sizeof(data.address);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&data.address), &len) != 0) {
    return SystemError("getsockname");
  }
  encode_handle(data, handle);
  GP_LOG_DEBUG(kNet, "tcp: listening on %s (%s)", format_address(data.address).c_str(),
               device->info().name.c_str());
  out->reset(new TcpListener(std::move(device), std::move(fd), data.key, hello_timeout));
  return OkStatus();
}

TcpListener::TcpListener(std::shared_ptr<Device> device, Fd fd, SessionKey key,
                         std::chrono::milliseconds hello_timeout)
    : device_(std::move(device)), fd_(std::move(fd)), key_(key), hello_timeout_(hello_timeout) {}

TcpListener::~TcpListener() = default;

Status TcpListener::accept(std::chrono::milliseconds timeout,
                           std::unique_ptr<RecvConnection>* out) {
  out->reset();
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (!ready_.empty()) {
      Ready ready = std::move(ready_.front());
      ready_.pop_front();
      return make_recv_connection(device_, std::move(ready.fds), ready.value, out);
    }
    auto now = Clock::now();
    int wait_ms = 0;
    if (now < deadline) {
      wait_ms =
          static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count());
    }
    // Wake up for the earliest hello deadline too, so silent clients are dropped on time.
    for (const auto& p : pending_) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(p->deadline - now).count();
      wait_ms = std::min<int>(wait_ms, static_cast<int>(std::max<int64_t>(left, 0)));
    }
    step(wait_ms);
    if (ready_.empty() && Clock::now() >= deadline) return OkStatus();
  }
}

void TcpListener::step(int wait_ms) {
  std::vector<pollfd> fds(1 + pending_.size());
  fds[0] = {fd_.get(), POLLIN, 0};
  for (size_t i = 0; i < pending_.size(); ++i) fds[i + 1] = {pending_[i]->fd.get(), POLLIN, 0};
  int n = poll(fds.data(), fds.size(), wait_ms);
  if (n < 0 && errno != EINTR) {
    GP_LOG_WARN(kNet, "tcp: listener poll failed: %s", std::strerror(errno));
    return;
  }
  if (n > 0) {
    // Hellos first (they index pending_ as polled), then new sockets.
    std::vector<std::unique_ptr<Pending>> keep;
    for (size_t i = 0; i < pending_.size(); ++i) {
      auto& p = pending_[i];
      if (fds[i + 1].revents == 0) {
        keep.push_back(std::move(p));
        continue;
      }
      bool complete = false;
      if (!read_hello(p.get(), &complete)) continue;
      if (complete) {
        admit(p.get());
      } else {
        keep.push_back(std::move(p));
      }
    }
    pending_ = std::move(keep);
    if (fds[0].revents != 0) accept_new();
  }
  expire(Clock::now());
}

void TcpListener::accept_new() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd =
        accept4(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        GP_LOG_WARN(kNet, "tcp: accept failed: %s", std::strerror(errno));
      }
      return;
    }
    auto p = std::make_unique<Pending>();
    p->fd.reset(fd);
    p->peer = format_address(addr);
    p->deadline = Clock::now() + hello_timeout_;
    // The hello usually arrives with the connection: read it now, saving a poll round.
    bool complete = false;
    if (!read_hello(p.get(), &complete)) continue;
    if (complete) {
      admit(p.get());
      continue;
    }
    if (pending_.size() >= kMaxPending) {
      GP_LOG_WARN(kNet, "tcp: too many sockets without a hello; dropping %s",
                  pending_.front()->peer.c_str());
      pending_.erase(pending_.begin());
    }
    pending_.push_back(std::move(p));
  }
}

bool TcpListener::read_hello(Pending* p, bool* complete) {
  *complete = false;
  while (p->got < kHelloBytes) {
    ssize_t n = recv(p->fd.get(), p->bytes + p->got, kHelloBytes - p->got, 0);
    if (n > 0) {
      p->got += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    GP_LOG_WARN(kNet, "tcp: %s closed before sending a full hello (%zu of %zu bytes); dropped",
                p->peer.c_str(), p->got, kHelloBytes);
    return false;
  }
  *complete = true;
  return true;
}

void TcpListener::admit(Pending* p) {
  Hello hello;
  if (!decode_hello(p->bytes, &hello)) {
    GP_LOG_WARN(kNet, "tcp: %s sent an invalid hello (not a gradpack TCP client?); dropped",
                p->peer.c_str());
    return;
  }
  // Compare every byte so the time taken does not tell how much of a guess was right.
  uint8_t diff = 0;
  for (size_t i = 0; i < kKeyBytes; ++i) diff |= static_cast<uint8_t>(hello.key[i] ^ key_[i]);
  if (diff != 0) {
    GP_LOG_WARN(kNet, "tcp: %s presented a wrong session key (a stale or foreign job?); dropped",
                p->peer.c_str());
    return;
  }
  auto [it, inserted] = groups_.try_emplace(hello.connection_id);
  Group& group = it->second;
  if (inserted) {
    group.fds.resize(hello.nsocks);
    group.nsocks = hello.nsocks;
    group.value = hello.value;
    group.peer = p->peer;
    group.deadline = Clock::now() + 4 * hello_timeout_;
  }
  if (group.nsocks != hello.nsocks || group.value != hello.value || group.fds[hello.index]) {
    GP_LOG_WARN(kNet,
                "tcp: %s sent a hello that contradicts its connection's other sockets; "
                "dropping the connection",
                p->peer.c_str());
    groups_.erase(it);
    return;
  }
  group.fds[hello.index] = std::move(p->fd);
  if (++group.arrived < group.nsocks) return;
  GP_LOG_DEBUG(kNet, "tcp: connection from %s with %u socket(s) ready", group.peer.c_str(),
               static_cast<unsigned>(group.nsocks));
  ready_.push_back(Ready{std::move(group.fds), group.value});
  groups_.erase(it);
}

void TcpListener::expire(Clock::time_point now) {
  std::erase_if(pending_, [&](const std::unique_ptr<Pending>& p) {
    if (now < p->deadline) return false;
    GP_LOG_WARN(kNet, "tcp: %s sent no complete hello within %lld ms; dropped", p->peer.c_str(),
                static_cast<long long>(hello_timeout_.count()));
    return true;
  });
  std::erase_if(groups_, [&](const auto& entry) {
    if (now < entry.second.deadline) return false;
    GP_LOG_WARN(kNet, "tcp: connection from %s brought %zu of %u sockets in time; dropped",
                entry.second.peer.c_str(), entry.second.arrived,
                static_cast<unsigned>(entry.second.nsocks));
    return true;
  });
}

}  // namespace gradpack::transport::tcp
