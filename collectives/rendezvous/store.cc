// SPDX-License-Identifier: Apache-2.0
#include "collectives/rendezvous/store.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>

namespace gradpack {

std::vector<uint8_t> counter_bytes(int64_t value) {
  const std::string text = std::to_string(value);
  return {text.begin(), text.end()};
}

bool parse_counter(const std::vector<uint8_t>& bytes, int64_t* value) {
  if (bytes.empty() || bytes.size() > 20) return false;
  const std::string text(bytes.begin(), bytes.end());
  size_t used = 0;
  try {
    *value = std::stoll(text, &used);
  } catch (...) {
    return false;
  }
  return used == text.size();
}

Status Store::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<uint8_t> ignored;
  for (const std::string& key : keys) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    GP_RETURN_IF_ERROR(get(key, std::max(left, std::chrono::milliseconds(0)), &ignored));
  }
  return OkStatus();
}

namespace {

class MemoryStore : public Store {
 public:
  Status set(const std::string& key, const std::vector<uint8_t>& value) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      values_[key] = value;
    }
    changed_.notify_all();
    return OkStatus();
  }

  Status get(const std::string& key, std::chrono::milliseconds timeout,
             std::vector<uint8_t>* value) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!changed_.wait_for(lock, timeout, [&] { return values_.count(key) != 0; }))
      return {Code::kTimeout, "rendezvous key \"" + key + "\" was not set within " +
                                  std::to_string(timeout.count()) + " ms"};
    *value = values_[key];
    return OkStatus();
  }

  Status add(const std::string& key, int64_t delta, int64_t* result) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      int64_t current = 0;
      auto it = values_.find(key);
      if (it != values_.end() && !parse_counter(it->second, &current))
        return InvalidArgument("rendezvous key \"" + key + "\" does not hold a counter");
      current += delta;
      values_[key] = counter_bytes(current);
      *result = current;
    }
    changed_.notify_all();
    return OkStatus();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, std::vector<uint8_t>> values_;
};

}  // namespace

std::shared_ptr<Store> make_memory_store() { return std::make_shared<MemoryStore>(); }

}  // namespace gradpack
