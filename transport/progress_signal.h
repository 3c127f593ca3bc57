// SPDX-License-Identifier: Apache-2.0
// ProgressSignal: how a backend tells waiting callers that something finished, and how a caller
// that reads its own small messages sleeps until they arrive.
//
// The backend bumps an epoch whenever requests complete or fail. A caller that found nothing ready
// sleeps until the epoch moves or until a socket it reads itself becomes readable: a channel whose
// pending receives the callers read inline (see tcp/connection.h) registers its sockets here, and
// wait() polls them together with an eventfd the epoch's bump writes. So a small message wakes the
// waiting caller directly, without first waking the progress thread to hand it over; on a small
// machine with several ranks per core, every thread wake-up saved is latency saved.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace gradpack::transport {

class ProgressSignal {
 public:
  ProgressSignal() : event_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~ProgressSignal() {
    if (event_fd_ >= 0) close(event_fd_);
  }
  ProgressSignal(const ProgressSignal&) = delete;
  ProgressSignal& operator=(const ProgressSignal&) = delete;

  uint32_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  // Backend: something completed.
  void bump() {
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) > 0) {
      uint64_t one = 1;
      ssize_t n = write(event_fd_, &one, sizeof(one));
      (void)n;
    }
  }

  // Backend: the sockets callers read themselves for `key` (empty: none any more).
  void set_polled(const void* key, const std::vector<int>& fds) {
    std::lock_guard<std::mutex> lock(mu_);
    if (fds.empty()) {
      polled_.erase(key);
    } else {
      polled_[key] = fds;
    }
  }

  // Caller: returns once epoch() != seen, a registered socket is readable, or `until` passes (or
  // spuriously: callers re-check).
  void wait(uint32_t seen, std::chrono::steady_clock::time_point until) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) left = std::chrono::milliseconds(0);
    std::vector<pollfd> fds;
    fds.push_back(pollfd{event_fd_, POLLIN, 0});
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [key, sockets] : polled_) {
        for (int fd : sockets) fds.push_back(pollfd{fd, POLLIN, 0});
      }
    }
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    if (epoch_.load(std::memory_order_seq_cst) == seen) {
      poll(fds.data(), fds.size(), static_cast<int>(left.count()) + 1);
      if (fds[0].revents & POLLIN) {
        uint64_t count = 0;
        ssize_t n = read(event_fd_, &count, sizeof(count));
        (void)n;
      }
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
  }

 private:
  std::atomic<uint32_t> epoch_{0};
  std::atomic<int> waiters_{0};
  const int event_fd_;
  std::mutex mu_;
  std::map<const void*, std::vector<int>> polled_;
};

}  // namespace gradpack::transport
