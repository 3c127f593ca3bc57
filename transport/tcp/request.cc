// SPDX-License-Identifier: Apache-2.0
#include "transport/tcp/request.h"

namespace gradpack::transport::tcp {

void RequestState::complete(uint64_t bytes) {
  if (state_.load(std::memory_order_relaxed) != kPending) return;
  bytes_ = bytes;
  state_.store(kDone, std::memory_order_release);
}

void RequestState::fail(const Status& error) {
  if (state_.load(std::memory_order_relaxed) != kPending) return;
  error_ = error;
  state_.store(kFailed, std::memory_order_release);
}

Status RequestState::test(bool* done, size_t* bytes) const {
  int state = state_.load(std::memory_order_acquire);
  *done = state == kDone;
  if (state == kFailed) return error_;
  if (state == kDone && bytes != nullptr) *bytes = static_cast<size_t>(bytes_);
  return OkStatus();
}

}  // namespace gradpack::transport::tcp
