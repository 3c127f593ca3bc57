// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <string>

#include "common/settings.h"

namespace gradpack::log {
namespace {

constexpr const char* kLevelNames[] = {"none", "error", "warn", "info", "debug", "trace"};
constexpr const char* kSubsysNames[] = {"core", "codec", "net", "coll", "topo", "plugin"};
constexpr int kSubsysCount = sizeof(kSubsysNames) / sizeof(kSubsysNames[0]);

struct LogState {
  std::atomic<int> level{static_cast<int>(LogLevel::kWarn)};
  std::atomic<unsigned> subsys_mask{~0u};
  std::atomic<LogSink> sink{nullptr};
};

void stderr_sink(LogLevel level, Subsys subsys, const char* message) {
  std::fprintf(stderr, "gradpack %s %s: %s\n", kLevelNames[static_cast<int>(level)],
               kSubsysNames[static_cast<int>(subsys)], message);
}

LogState& state() {
  static LogState s;
  static std::once_flag once;
  std::call_once(once, [] {
    const Settings* settings = nullptr;
    if (!Settings::global(&settings).ok()) return;  // the API call reports the bad setting
    const std::string& level = settings->get(SettingId::kLog);
    for (int i = 0; i < 6; ++i)
      if (level == kLevelNames[i]) s.level = i;
    unsigned mask = 0;
    std::stringstream in(settings->get(SettingId::kLogSubsys));
    std::string item;
    while (std::getline(in, item, ',')) {
      if (item == "all") mask = ~0u;
      for (int i = 0; i < kSubsysCount; ++i)
        if (item == kSubsysNames[i]) mask |= 1u << i;
    }
    s.subsys_mask = mask;
  });
  return s;
}

}  // namespace

bool enabled(LogLevel level, Subsys subsys) {
  LogState& s = state();
  return static_cast<int>(level) <= s.level.load(std::memory_order_relaxed) &&
         (s.subsys_mask.load(std::memory_order_relaxed) >> static_cast<int>(subsys) & 1u);
}

void write(LogLevel level, Subsys subsys, const char* fmt, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buffer, sizeof buffer, fmt, args);
  va_end(args);
  LogSink sink = state().sink.load();
  (sink ? sink : stderr_sink)(level, subsys, buffer);
}

LogSink set_sink(LogSink sink) { return state().sink.exchange(sink); }
void set_level(LogLevel level) { state().level = static_cast<int>(level); }
const char* subsys_name(Subsys subsys) { return kSubsysNames[static_cast<int>(subsys)]; }

}  // namespace gradpack::log
