// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/tuner/measured_link.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <vector>

namespace gradpack::plugin {

namespace {

struct Entry {
  std::string codec;
  MeasuredLink link;
};

struct Registry {
  std::mutex mu;
  std::map<uint64_t, std::vector<Entry>> by_comm;
  std::atomic<uint64_t> generation{0};
};

Registry& registry() {
  // A plain static (not leaked on purpose): NCCL may dlclose the plugin and dlopen it again.
  static Registry r;
  return r;
}

}  // namespace

void publish_measured_link(uint64_t comm_id, const std::string& codec, const MeasuredLink& link) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.by_comm[comm_id].push_back(Entry{codec, link});
  r.generation.fetch_add(1, std::memory_order_release);
}

bool measured_link(uint64_t comm_id, int nodes, const std::string& codec, MeasuredLink* out) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.by_comm.find(comm_id);
  if (it == r.by_comm.end()) return false;
  bool found = false;
  MeasuredLink slowest;
  for (const Entry& e : it->second) {
    if (e.codec != codec || e.link.model.nranks != nodes) continue;
    if (!found) {
      slowest = e.link;
      found = true;
      continue;
    }
    slowest.model = topology::slowest(slowest.model, e.link.model);
    slowest.probed_win_bytes = std::max(slowest.probed_win_bytes, e.link.probed_win_bytes);
  }
  if (found) *out = slowest;
  return found;
}

void forget_measured_links(uint64_t comm_id) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.by_comm.erase(comm_id);
}

uint64_t measured_link_generation() {
  return registry().generation.load(std::memory_order_acquire);
}

}  // namespace gradpack::plugin
