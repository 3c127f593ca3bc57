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
  coll::LinkModel model;
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

void publish_measured_link(uint64_t comm_id, const std::string& codec,
                           const coll::LinkModel& model) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.by_comm[comm_id].push_back(Entry{codec, model});
  r.generation.fetch_add(1, std::memory_order_release);
}

bool measured_link(uint64_t comm_id, int nodes, const std::string& codec, coll::LinkModel* out) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.by_comm.find(comm_id);
  if (it == r.by_comm.end()) return false;
  bool found = false;
  coll::LinkModel slowest;
  for (const Entry& e : it->second) {
    if (e.codec != codec || e.model.nranks != nodes) continue;
    const coll::LinkModel& m = e.model;
    if (!found) {
      slowest = m;
      found = true;
      continue;
    }
    slowest.latency_s = std::max(slowest.latency_s, m.latency_s);
    slowest.compressed_latency_s = std::max(slowest.compressed_latency_s, m.compressed_latency_s);
    slowest.link_Bps = std::min(slowest.link_Bps, m.link_Bps);
    slowest.encode_Bps = std::min(slowest.encode_Bps, m.encode_Bps);
    slowest.decode_Bps = std::min(slowest.decode_Bps, m.decode_Bps);
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
