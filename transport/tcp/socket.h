// SPDX-License-Identifier: Apache-2.0
// Small socket helpers shared by the TCP backend's listener, connections and connect().
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace gradpack::transport::tcp {

// "10.0.0.1:5000" or "[fe80::1%eth0]:5000".
std::string format_address(const sockaddr_storage& addr);
// The remote address of a connected socket, formatted; "?" when unknown.
std::string peer_address(int fd);
Status set_nonblocking(int fd);
// TCP_NODELAY: messages are already batched by the caller, so Nagle only adds latency.
Status set_nodelay(int fd);
// Fills `out` with cryptographically random bytes (getrandom).
Status random_bytes(void* out, size_t size);

// Owns a file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace gradpack::transport::tcp
