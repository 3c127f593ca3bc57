// SPDX-License-Identifier: Apache-2.0
// Rendezvous stores: the small key-value service ranks use to find each other before any
// connection exists (addresses, connection handles, barrier counters).
//
// Three backends share this interface: MemoryStore (threads of one process, for tests),
// FileStore (a directory every rank can see) and a TCP store served by rank 0. A get or wait that
// outlives its timeout is kTimeout naming the missing keys, so a rank that never arrives is an
// error on every other rank, never a hang.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace gradpack {

class Store {
 public:
  virtual ~Store() = default;

  // Sets key to value, replacing any earlier value.
  virtual Status set(const std::string& key, const std::vector<uint8_t>& value) = 0;

  // Waits until key is set (at most `timeout`) and returns its value.
  virtual Status get(const std::string& key, std::chrono::milliseconds timeout,
                     std::vector<uint8_t>* value) = 0;

  // Adds delta to the integer counter at key (a missing key counts as 0) atomically across every
  // user of the store; *result is the new value. A key holding a non-counter is kInvalidArgument.
  virtual Status add(const std::string& key, int64_t delta, int64_t* result) = 0;

  // Waits until every key is set (at most `timeout` in all).
  virtual Status wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
};

// Every key of `inner` seen through a prefix ("<prefix>/<key>"), so that several communicators
// can share one store.
class PrefixStore : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> inner)
      : prefix_(std::move(prefix) + "/"), inner_(std::move(inner)) {}
  Status set(const std::string& key, const std::vector<uint8_t>& value) override {
    return inner_->set(prefix_ + key, value);
  }
  Status get(const std::string& key, std::chrono::milliseconds timeout,
             std::vector<uint8_t>* value) override {
    return inner_->get(prefix_ + key, timeout, value);
  }
  Status add(const std::string& key, int64_t delta, int64_t* result) override {
    return inner_->add(prefix_ + key, delta, result);
  }

 private:
  std::string prefix_;
  std::shared_ptr<Store> inner_;
};

// Threads of one process.
std::shared_ptr<Store> make_memory_store();

// A directory shared by every rank (a local or network file system). Each key is one file,
// written to a temporary name and renamed into place, so a reader never sees half a value;
// counters are updated under an flock.
Status make_file_store(const std::string& directory, std::shared_ptr<Store>* out);

// A store served over TCP by rank 0 (like torch's TCPStore). With serve=true this process is the
// root: a thread listens on host:port (port 0 picks a free port; tcp_store_port() tells which)
// and the returned store is a loopback client of it; the root's thread stops when that store is
// destroyed. With serve=false the store connects to the root at host:port, retrying until
// connect_timeout (the root may start later): a root that never answers is kTimeout naming
// host:port, a bad host name kInvalidArgument. Keys are at most 4 KiB, values at most 64 MiB.
// A root that goes away makes every later call kRemote. One store may be shared by threads; their
// requests are served one at a time, so a long get delays the other threads' calls.
Status make_tcp_store(const std::string& host, uint16_t port, bool serve,
                      std::chrono::milliseconds connect_timeout, std::shared_ptr<Store>* out);
// The root's port as seen by a TCP store (the bound port for the serving one); 0 for others.
uint16_t tcp_store_port(const Store& store);

// Counter values are stored as decimal text.
std::vector<uint8_t> counter_bytes(int64_t value);
bool parse_counter(const std::vector<uint8_t>& bytes, int64_t* value);

}  // namespace gradpack
