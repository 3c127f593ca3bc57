// SPDX-License-Identifier: Apache-2.0
#include "transport/ibverbs/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/little_endian.h"
#include "common/log.h"

namespace gradpack::transport {
namespace {

using Clock = std::chrono::steady_clock;

std::string peer_name(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  }
  return std::string(text) + ":" + std::to_string(port);
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000 * 1000));
}

// The first up, non-loopback IPv4 address; false when there is none.
bool default_ipv4(in_addr* out) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* it = list; it != nullptr && !found; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    if ((it->ifa_flags & IFF_UP) == 0 || (it->ifa_flags & IFF_LOOPBACK) != 0) continue;
    *out = reinterpret_cast<const sockaddr_in*>(it->ifa_addr)->sin_addr;
    found = true;
  }
  freeifaddrs(list);
  return found;
}

}  // namespace

void encode_handle(const IbHandle& in, Handle* out) {
  out->bytes.fill(0);
  uint8_t* p = out->bytes.data();
  store_le<uint32_t>(p, kIbHandleMagic);
  store_le<uint16_t>(p + 4, kIbWireVersion);
  store_le<uint16_t>(p + 6, static_cast<uint16_t>(in.family));
  store_le<uint16_t>(p + 8, in.port);
  std::memcpy(p + 10, in.address, 16);
  std::memcpy(p + 26, in.key, kIbKeyBytes);
  // Bytes 42..43 are reserved (zero).
}

Status decode_handle(const Handle& in, IbHandle* out) {
  const uint8_t* p = in.bytes.data();
  if (load_le<uint32_t>(p) != kIbHandleMagic) {
    return CorruptData("ib: the handle was not made by an ib listener");
  }
  if (load_le<uint16_t>(p + 4) != kIbWireVersion) {
    return CorruptData("ib: handle of version " + std::to_string(load_le<uint16_t>(p + 4)) +
                       ", expected " + std::to_string(kIbWireVersion));
  }
  const uint16_t family = load_le<uint16_t>(p + 6);
  if (family != 4 && family != 6) {
    return CorruptData("ib: handle with address family " + std::to_string(family));
  }
  out->family = family;
  out->port = load_le<uint16_t>(p + 8);
  if (out->port == 0) return CorruptData("ib: handle with port 0");
  std::memcpy(out->address, p + 10, 16);
  std::memcpy(out->key, p + 26, kIbKeyBytes);
  return OkStatus();
}

bool same_key(const uint8_t* a, const uint8_t* b) {
  uint8_t diff = 0;
  for (size_t i = 0; i < kIbKeyBytes; ++i) diff |= static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

Status random_key(uint8_t key[kIbKeyBytes]) {
  size_t got = 0;
  while (got < kIbKeyBytes) {
    const ssize_t n = getrandom(key + got, kIbKeyBytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return SystemError("ib: getrandom for the session key failed");
    }
    got += static_cast<size_t>(n);
  }
  return OkStatus();
}

Status bootstrap_listen(const std::string& address, int* fd, IbHandle* where) {
  in_addr published{};
  if (!address.empty()) {
    if (inet_pton(AF_INET, address.c_str(), &published) != 1) {
      return InvalidArgument("ib: bootstrap address '" + address + "' is not an IPv4 address");
    }
  } else if (!default_ipv4(&published)) {
    published.s_addr = htonl(INADDR_LOOPBACK);
  }
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return SystemError("ib: socket() for the bootstrap listener failed");
  sockaddr_in bind_addr{};
  bind_addr.sin_family = AF_INET;
  // Loopback publishes loopback only; otherwise any interface may carry the bootstrap.
  bind_addr.sin_addr.s_addr =
      published.s_addr == htonl(INADDR_LOOPBACK) ? htonl(INADDR_LOOPBACK) : htonl(INADDR_ANY);
  socklen_t len = sizeof(bind_addr);
  if (bind(s, reinterpret_cast<sockaddr*>(&bind_addr), len) != 0 || listen(s, 128) != 0 ||
      getsockname(s, reinterpret_cast<sockaddr*>(&bind_addr), &len) != 0) {
    Status status = SystemError("ib: binding the bootstrap listener failed");
    close(s);
    return status;
  }
  where->family = 4;
  where->port = ntohs(bind_addr.sin_port);
  std::memset(where->address, 0, sizeof(where->address));
  std::memcpy(where->address, &published, 4);
  *fd = s;
  return OkStatus();
}

Status bootstrap_connect(const IbHandle& where, std::chrono::milliseconds timeout, int* fd) {
  sockaddr_storage storage{};
  socklen_t len = 0;
  if (where.family == 4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(where.port);
    std::memcpy(&in->sin_addr, where.address, 4);
    len = sizeof(*in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(where.port);
    std::memcpy(&in6->sin6_addr, where.address, 16);
    len = sizeof(*in6);
  }
  const std::string name = peer_name(storage);
  const int s = socket(storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return SystemError("ib: socket() for the bootstrap connection failed");
  const int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const Clock::time_point deadline = Clock::now() + timeout;
  int rc = ::connect(s, reinterpret_cast<sockaddr*>(&storage), len);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{s, POLLOUT, 0};
    do {
      rc = poll(&p, 1, remaining_ms(deadline));
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
      close(s);
      return Status(Code::kTimeout, "ib: the listener at " + name + " did not answer within " +
                                        std::to_string(timeout.count()) + " ms");
    }
    int error = 0;
    socklen_t error_len = sizeof(error);
    getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &error_len);
    errno = error;
    rc = error == 0 ? 0 : -1;
  }
  if (rc != 0) {
    const int error = errno;
    close(s);
    if (error == ECONNREFUSED) {
      return Status(Code::kRemote, "ib: the listener at " + name + " refused the connection");
    }
    if (error == ETIMEDOUT) {
      return Status(Code::kTimeout, "ib: connecting to " + name + " timed out");
    }
    return Status(Code::kRemote,
                  "ib: connecting to the listener at " + name + " failed: " + strerror(error));
  }
  *fd = s;
  return OkStatus();
}

Status bootstrap_send_all(int fd, const uint8_t* data, size_t size, Clock::time_point deadline) {
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (Clock::now() >= deadline) return Status(Code::kTimeout, "ib: bootstrap send timed out");
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, std::max(1, remaining_ms(deadline)));
      continue;
    }
    return Status(Code::kRemote, std::string("ib: bootstrap send failed: ") + strerror(errno));
  }
  return OkStatus();
}

IbListener::IbListener(int fd, const uint8_t key[kIbKeyBytes], IbAcceptFn accept_fn,
                       std::chrono::milliseconds stall_timeout)
    : fd_(fd), accept_fn_(std::move(accept_fn)), stall_timeout_(stall_timeout) {
  std::memcpy(key_, key, kIbKeyBytes);
}

IbListener::~IbListener() {
  for (Pending& pending : pending_) close(pending.fd);
  close(fd_);
}

void IbListener::accept_new_sockets() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int s =
        accept4(fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0) return;  // EAGAIN, or a transient error: the next call retries
    const int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Pending pending;
    pending.fd = s;
    pending.peer = peer_name(addr);
    pending.deadline = Clock::now() + stall_timeout_;
    pending_.push_back(pending);
  }
}

void IbListener::drop(Pending* pending, const char* why) {
  GP_LOG_WARN(kNet, "ib: closed the bootstrap connection from %s: %s", pending->peer.c_str(), why);
  close(pending->fd);
  pending->fd = -1;
}

bool IbListener::service(Pending* pending, std::unique_ptr<RecvConnection>* out) {
  while (pending->got < kConnectMsgBytes) {
    const ssize_t n =
        recv(pending->fd, pending->buffer + pending->got, kConnectMsgBytes - pending->got, 0);
    if (n > 0) {
      pending->got += static_cast<size_t>(n);
      // Garbage is dropped as soon as the magic is wrong, not after a full message.
      if (pending->got >= 4 && load_le<uint32_t>(pending->buffer) != kIbConnectMagic) {
        drop(pending, "not a gradpack ib connect message");
        return true;
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (Clock::now() >= pending->deadline) {
        drop(pending, "no connect message in time");
        return true;
      }
      return false;
    }
    drop(pending, "closed before its connect message");
    return true;
  }
  ConnectMsg msg;
  Status status = decode_connect(pending->buffer, &msg);
  if (!status.ok()) {
    drop(pending, status.message().c_str());
    return true;
  }
  if (!same_key(msg.key, key_)) {
    drop(pending, "wrong session key");
    return true;
  }
  const int fd = pending->fd;
  pending->fd = -1;
  status = accept_fn_(msg, fd, out);
  if (!status.ok()) {
    GP_LOG_WARN(kNet, "ib: accepting the connection from %s failed: %s", pending->peer.c_str(),
                status.to_string().c_str());
    out->reset();
  }
  return true;
}

Status IbListener::accept(std::chrono::milliseconds timeout, std::unique_ptr<RecvConnection>* out) {
  out->reset();
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    accept_new_sockets();
    for (size_t i = 0; i < pending_.size() && *out == nullptr;) {
      if (service(&pending_[i], out)) {
        pending_.erase(pending_.begin() + static_cast<ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    if (*out != nullptr) return OkStatus();
    const Clock::time_point now = Clock::now();
    if (now >= deadline) return OkStatus();
    Clock::time_point wake = deadline;
    std::vector<pollfd> fds;
    fds.push_back({fd_, POLLIN, 0});
    for (const Pending& pending : pending_) {
      fds.push_back({pending.fd, POLLIN, 0});
      wake = std::min(wake, pending.deadline);
    }
    const int rc = poll(fds.data(), fds.size(), std::max(1, remaining_ms(wake)));
    if (rc < 0 && errno != EINTR) return SystemError("ib: poll on the bootstrap listener failed");
  }
}

}  // namespace gradpack::transport
