// SPDX-License-Identifier: Apache-2.0
// Logging by level x subsystem: GRADPACK_LOG=info, GRADPACK_LOG_SUBSYS=net,coll.
//
// Messages go to a sink: stderr by default, NCCL's logger when running as a plugin, a capturing
// function in tests. GP_LOG_* macros check the level before formatting, so a disabled message
// costs one load and a compare.
#pragma once

#include <cstdarg>

namespace gradpack {

enum class LogLevel : int { kNone = 0, kError = 1, kWarn = 2, kInfo = 3, kDebug = 4, kTrace = 5 };
enum class Subsys : int { kCore = 0, kCodec = 1, kNet = 2, kColl = 3, kTopo = 4, kPlugin = 5 };

using LogSink = void (*)(LogLevel level, Subsys subsys, const char* message);

namespace log {
// True when a message at (level, subsys) would be printed. Reads the settings on first use.
bool enabled(LogLevel level, Subsys subsys);
void write(LogLevel level, Subsys subsys, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Replaces the sink (nullptr restores stderr); returns the previous one.
LogSink set_sink(LogSink sink);
// Overrides the level from the settings (tests).
void set_level(LogLevel level);
const char* subsys_name(Subsys subsys);
}  // namespace log

}  // namespace gradpack

#define GP_LOG_AT(level, subsys, ...)                                         \
  do {                                                                        \
    if (::gradpack::log::enabled(level, ::gradpack::Subsys::subsys))          \
      ::gradpack::log::write(level, ::gradpack::Subsys::subsys, __VA_ARGS__); \
  } while (0)
#define GP_LOG_ERROR(subsys, ...) GP_LOG_AT(::gradpack::LogLevel::kError, subsys, __VA_ARGS__)
#define GP_LOG_WARN(subsys, ...) GP_LOG_AT(::gradpack::LogLevel::kWarn, subsys, __VA_ARGS__)
#define GP_LOG_INFO(subsys, ...) GP_LOG_AT(::gradpack::LogLevel::kInfo, subsys, __VA_ARGS__)
#define GP_LOG_DEBUG(subsys, ...) GP_LOG_AT(::gradpack::LogLevel::kDebug, subsys, __VA_ARGS__)
