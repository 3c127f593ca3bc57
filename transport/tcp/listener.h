// SPDX-License-Identifier: Apache-2.0
// TCP listeners: the handle they publish, the hello every socket of a connection sends first, and
// the accept side that sorts incoming sockets into connections.
//
// Handle (kHandleBytes, little-endian): u32 magic "GPTH", u16 version, u16 family (4 or 6),
// u16 port, u16 reserved, u32 IPv6 scope id, 16 address bytes (IPv4 in the first 4), 16 key bytes.
// Hello (kHelloBytes): u32 magic "GPTC", u16 version, u16 socket index, u16 nsocks, u16 reserved,
// 16 key bytes, u64 connection id (random, per connect()), u64 hello value.
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/tcp/socket.h"
#include "transport/transport.h"

namespace gradpack::transport::tcp {

class Device;

inline constexpr size_t kKeyBytes = 16;
inline constexpr size_t kHelloBytes = 44;
inline constexpr int kMaxSockets = 64;

using SessionKey = std::array<uint8_t, kKeyBytes>;

struct HandleData {
  sockaddr_storage address{};
  SessionKey key{};
};
void encode_handle(const HandleData& data, Handle* out);
Status decode_handle(const Handle& handle, HandleData* out);

struct Hello {
  SessionKey key{};
  uint64_t connection_id = 0;
  uint16_t index = 0;
  uint16_t nsocks = 0;
  uint64_t value = 0;
};
void encode_hello(const Hello& hello, uint8_t* out);
// Checks magic and version (not the key); false for anything else.
bool decode_hello(const uint8_t* in, Hello* out);

class TcpListener final : public Listener {
 public:
  // Binds an ephemeral port on the device's address. `hello_timeout`: how long a socket may take
  // to send its hello, and (times four) a connection to bring all its sockets.
  static Status create(std::shared_ptr<Device> device, std::chrono::milliseconds hello_timeout,
                       Handle* handle, std::unique_ptr<Listener>* out);
  ~TcpListener() override;

  Status accept(std::chrono::milliseconds timeout, std::unique_ptr<RecvConnection>* out) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {  // an accepted socket whose hello has not fully arrived
    Fd fd;
    std::string peer;
    Clock::time_point deadline;
    uint8_t bytes[kHelloBytes] = {};
    size_t got = 0;
  };
  struct Group {          // the sockets of one connection id seen so far
    std::vector<Fd> fds;  // by socket index
    std::string peer;
    uint16_t nsocks = 0;
    uint64_t value = 0;
    size_t arrived = 0;
    Clock::time_point deadline;
  };
  struct Ready {
    std::vector<Fd> fds;
    uint64_t value = 0;
  };

  TcpListener(std::shared_ptr<Device> device, Fd fd, SessionKey key,
              std::chrono::milliseconds hello_timeout);
  // One round: accepts new sockets, reads hellos that are there, expires stale ones.
  void step(int wait_ms);
  void accept_new();
  // Reads what `p` has; returns false when the socket is to be dropped (already logged).
  bool read_hello(Pending* p, bool* complete);
  void admit(Pending* p);
  void expire(Clock::time_point now);

  std::shared_ptr<Device> device_;
  Fd fd_;
  SessionKey key_;
  std::chrono::milliseconds hello_timeout_;
  std::vector<std::unique_ptr<Pending>> pending_;
  std::map<uint64_t, Group> groups_;
  std::deque<Ready> ready_;
};

}  // namespace gradpack::transport::tcp
