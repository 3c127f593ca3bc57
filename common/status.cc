// SPDX-License-Identifier: Apache-2.0
#include "common/status.h"

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace gradpack {

const char* code_name(Code code) {
  switch (code) {
    case Code::kOk:
      return "GP_OK";
    case Code::kInvalidArgument:
      return "GP_ERR_INVALID_ARGUMENT";
    case Code::kCorruptData:
      return "GP_ERR_CORRUPT_DATA";
    case Code::kUnsupported:
      return "GP_ERR_UNSUPPORTED";
    case Code::kSystem:
      return "GP_ERR_SYSTEM";
    case Code::kRemote:
      return "GP_ERR_REMOTE";
    case Code::kTimeout:
      return "GP_ERR_TIMEOUT";
    case Code::kInternal:
      return "GP_ERR_INTERNAL";
  }
  return "GP_ERR_UNKNOWN";
}

std::string Status::to_string() const {
  if (ok()) return "GP_OK";
  return std::string(code_name(code_)) + ": " + message_;
}

Status InvalidArgument(std::string message) { return {Code::kInvalidArgument, std::move(message)}; }
Status CorruptData(std::string message) { return {Code::kCorruptData, std::move(message)}; }
Status Unsupported(std::string message) { return {Code::kUnsupported, std::move(message)}; }
Status Internal(std::string message) { return {Code::kInternal, std::move(message)}; }

Status SystemError(std::string message) {
  int err = errno;
  if (err != 0) message += std::string(": ") + std::strerror(err);
  return {Code::kSystem, std::move(message)};
}

namespace detail {
void log_trail(const Status& status, const char* file, int line) {
  GP_LOG_DEBUG(kCore, "-> %s at %s:%d", code_name(status.code()), file, line);
}
}  // namespace detail

}  // namespace gradpack
