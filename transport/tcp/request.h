// SPDX-License-Identifier: Apache-2.0
// The state of one isend/irecv, shared by the caller's Request and the progress thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "common/status.h"
#include "transport/transport.h"

namespace gradpack::transport::tcp {

class RequestState {
 public:
  // Progress thread: publish the outcome once (the first call wins).
  void complete(uint64_t bytes);
  void fail(const Status& error);
  // Any thread.
  Status test(bool* done, size_t* bytes) const;

 private:
  enum : int { kPending = 0, kDone = 1, kFailed = 2 };
  std::atomic<int> state_{kPending};
  uint64_t bytes_ = 0;  // written before state_ turns kDone
  Status error_;        // written before state_ turns kFailed
};

class TcpRequest final : public Request {
 public:
  explicit TcpRequest(std::shared_ptr<RequestState> state) : state_(std::move(state)) {}
  Status test(bool* done, size_t* bytes) override { return state_->test(done, bytes); }

 private:
  std::shared_ptr<RequestState> state_;
};

}  // namespace gradpack::transport::tcp
