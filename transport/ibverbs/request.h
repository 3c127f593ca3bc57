// SPDX-License-Identifier: Apache-2.0
// A queued isend or irecv of an ib connection; test() makes progress on the connection.
#pragma once

#include <memory>

#include "transport/ibverbs/connection.h"

namespace gradpack::transport {

class IbRequest : public Request {
 public:
  IbRequest(std::shared_ptr<IbConn> conn, std::shared_ptr<IbOp> op)
      : conn_(std::move(conn)), op_(std::move(op)) {}
  Status test(bool* done, size_t* bytes) override;

 private:
  std::shared_ptr<IbConn> conn_;
  std::shared_ptr<IbOp> op_;
};

}  // namespace gradpack::transport
