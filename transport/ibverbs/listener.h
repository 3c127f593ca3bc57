// SPDX-License-Identifier: Apache-2.0
// The ib listener: a TCP bootstrap socket whose address and session key make up the Handle, and the
// small socket helpers the bootstrap needs (kept here, independent of the TCP backend).
//
// Handle layout (little-endian): u32 'GPIB', u16 version, u16 family (4 or 6), u16 port,
// address[16] (IPv4 in the first 4 bytes), key[16]; the rest of the 128 bytes is zero.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "transport/ibverbs/connection.h"

namespace gradpack::transport {

inline constexpr uint32_t kIbHandleMagic = 0x42495047;  // "GPIB"
inline constexpr size_t kIbHandleUsedBytes = 44;
static_assert(kIbHandleUsedBytes <= kHandleBytes, "the ib handle must fit the transport Handle");

struct IbHandle {
  int family = 4;  // 4 or 6
  uint16_t port = 0;
  uint8_t address[16] = {};
  uint8_t key[kIbKeyBytes] = {};
};

void encode_handle(const IbHandle& in, Handle* out);
// kCorruptData when the bytes are not an ib handle of this version.
Status decode_handle(const Handle& in, IbHandle* out);
// Compares session keys in constant time.
bool same_key(const uint8_t* a, const uint8_t* b);
// A fresh random key (getrandom).
Status random_key(uint8_t key[kIbKeyBytes]);

// Bootstrap sockets. `address` "" picks the first up, non-loopback IPv4 interface (loopback when
// there is none); the listener binds the wildcard address and publishes that one.
Status bootstrap_listen(const std::string& address, int* fd, IbHandle* where);
// Connects within `timeout`: kTimeout when nothing answers, kRemote when refused. Non-blocking fd.
Status bootstrap_connect(const IbHandle& where, std::chrono::milliseconds timeout, int* fd);
Status bootstrap_send_all(int fd, const uint8_t* data, size_t size,
                          std::chrono::steady_clock::time_point deadline);

// Makes the RecvConnection for a connect message that presented the right key; owns `fd` from the
// call on (closes it on failure).
using IbAcceptFn =
    std::function<Status(const ConnectMsg& msg, int fd, std::unique_ptr<RecvConnection>* out)>;

class IbListener : public Listener {
 public:
  // Owns `fd` (a listening socket from bootstrap_listen). `stall_timeout`: how long a bootstrap
  // connection may take to send its connect message before it is dropped.
  IbListener(int fd, const uint8_t key[kIbKeyBytes], IbAcceptFn accept_fn,
             std::chrono::milliseconds stall_timeout = std::chrono::seconds(10));
  ~IbListener() override;
  Status accept(std::chrono::milliseconds timeout, std::unique_ptr<RecvConnection>* out) override;

 private:
  struct Pending {
    int fd = -1;
    std::string peer;
    uint8_t buffer[kConnectMsgBytes] = {};
    size_t got = 0;
    std::chrono::steady_clock::time_point deadline;
  };
  void accept_new_sockets();
  // Reads what is there; true when the pending entry is finished (handed on or dropped).
  bool service(Pending* pending, std::unique_ptr<RecvConnection>* out);
  void drop(Pending* pending, const char* why);

  int fd_;
  uint8_t key_[kIbKeyBytes];
  IbAcceptFn accept_fn_;
  std::chrono::milliseconds stall_timeout_;
  std::vector<Pending> pending_;
};

}  // namespace gradpack::transport
