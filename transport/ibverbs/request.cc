// SPDX-License-Identifier: Apache-2.0
#include "transport/ibverbs/request.h"

namespace gradpack::transport {

Status IbRequest::test(bool* done, size_t* bytes) {
  *done = false;
  return conn_->test(*op_, done, bytes);
}

}  // namespace gradpack::transport
