// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/release.h"

#include <atomic>
#include <list>
#include <mutex>

namespace gradpack::interposer {

namespace {

std::mutex mu;
std::list<Release>& queue() {
  static auto* q = new std::list<Release>();  // never destroyed: the runtime may be gone at exit
  return *q;
}
std::vector<uint8_t*>& free_slots() {
  static auto* v = new std::vector<uint8_t*>();
  return *v;
}
std::atomic<size_t> pending{0};

// Frees r on its device from this thread (restoring the thread's current device).
void free_now(Release& r) {
  Device& dev = device();
  const DeviceGuard guard(r.device);  // best effort: a failed switch frees on the current one
  for (void* p : r.memory) dev.free(p, cudaStreamPerThread);
  r.scratch.reset();
  if (r.after != nullptr) dev.event_destroy(r.after);
  if (r.host_slot != nullptr) free_slots().push_back(r.host_slot);
}

bool due(const Release& r) {
  if (r.after == nullptr) return true;
  bool done = false;
  return device().query(r.after, &done).ok() && done;
}

// With mu held.
void sweep() {
  for (auto it = queue().begin(); it != queue().end();) {
    if (!due(*it)) {
      ++it;
      continue;
    }
    free_now(*it);
    it = queue().erase(it);
    pending.fetch_sub(1);
  }
}

}  // namespace

void release_later(Release r) {
  std::lock_guard<std::mutex> lock(mu);
  queue().push_back(std::move(r));
  pending.fetch_add(1);
  sweep();
}

void release_due() {
  if (pending.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> lock(mu);
  sweep();
}

size_t releases_pending() { return pending.load(); }

Status take_host_slot(uint8_t** out) {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!free_slots().empty()) {
      *out = free_slots().back();
      free_slots().pop_back();
      return OkStatus();
    }
  }
  void* p = nullptr;
  GP_RETURN_IF_ERROR(device().alloc_host(kHostSlotBytes, &p));
  *out = static_cast<uint8_t*>(p);
  return OkStatus();
}

}  // namespace gradpack::interposer
