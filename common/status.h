// SPDX-License-Identifier: Apache-2.0
// Status: the error type used everywhere inside gradpack.
//
// A function that can fail returns a Status (or fills an out-parameter and returns one). Codes map
// one-to-one onto the C ABI's gp_status_t, so the one conversion at the boundary is a cast. Use
// GP_RETURN_IF_ERROR to propagate: at debug level it logs a "-> code at file:line" trail, so an
// error that surfaces at the API can be traced back to where it started.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace gradpack {

enum class Code : int {
  kOk = 0,
  kInvalidArgument = 1,  // the caller's fault: fix the call or the setting
  kCorruptData = 2,      // bytes from a peer or a file are malformed
  kUnsupported = 3,      // valid, but this build or machine cannot do it
  kSystem = 4,           // the OS or a driver failed
  kRemote = 5,           // a peer failed or went away
  kTimeout = 6,          // a bounded wait expired
  kInternal = 7,         // a broken invariant: a gradpack bug
};

const char* code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return {}; }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "GP_ERR_CORRUPT_DATA: frame is truncated ..."
  std::string to_string() const;
  // Keeps the first error: a later failure does not overwrite an earlier one.
  void update(const Status& other) {
    if (ok() && !other.ok()) *this = other;
  }
  void ignore() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status OkStatus() { return {}; }
Status InvalidArgument(std::string message);
Status CorruptData(std::string message);
Status Unsupported(std::string message);
Status SystemError(std::string message);  // appends strerror(errno) when errno is set
Status Internal(std::string message);

namespace detail {
void log_trail(const Status& status, const char* file, int line);
}  // namespace detail

}  // namespace gradpack

#define GP_RETURN_IF_ERROR(expr)                                     \
  do {                                                               \
    ::gradpack::Status gp_status_ = (expr);                          \
    if (!gp_status_.ok()) {                                          \
      ::gradpack::detail::log_trail(gp_status_, __FILE__, __LINE__); \
      return gp_status_;                                             \
    }                                                                \
  } while (0)
