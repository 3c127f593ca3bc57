// ProgressSignal: how a backend's progress thread tells waiting callers that something finished.
//
// The thread bumps an epoch whenever requests complete or fail; a caller that found nothing
// ready sleeps on a futex until the epoch moves (or a deadline passes). This keeps the calling
// thread off the CPU while the progress thread works, which on a small machine with several ranks
// per core is the difference between moving data and fighting over cores; and it wakes the caller
// within microseconds, which spinning with sleeps cannot do.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>

namespace gradpack::transport {

class ProgressSignal {
 public:
  uint32_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  // Progress thread: something completed.
  void bump() {
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) > 0) {
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&epoch_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
              nullptr, 0);
    }
  }

  // Caller: returns once epoch() != seen, or at `until` (or spuriously: callers re-check).
  void wait(uint32_t seen, std::chrono::steady_clock::time_point until) {
    auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    if (epoch_.load(std::memory_order_seq_cst) == seen) {
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&epoch_), FUTEX_WAIT_PRIVATE, seen, &ts,
              nullptr, 0);
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
  }

 private:
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  std::atomic<uint32_t> epoch_{0};
  std::atomic<int> waiters_{0};
};

}  // namespace gradpack::transport
