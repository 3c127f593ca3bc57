// SPDX-License-Identifier: Apache-2.0
// One host collective as a value: what the C ABI received, so that it can be checked now and run
// later (a group, collectives/group.h) or at once.
#pragma once

#include <cstddef>

#include "collectives/options.h"
#include "collectives/plan.h"
#include "gradpack/gradpack.h"

namespace gradpack::coll {

struct CollectiveCall {
  Collective collective = Collective::kAllReduce;
  const void* send = nullptr;
  void* recv = nullptr;
  // As the C call's count argument: all-reduce and broadcast elements, reduce-scatter recvcount,
  // all-gather sendcount, sendrecv elements each way; barrier 0.
  size_t count = 0;
  gp_dtype_t dtype = GP_FLOAT32;
  gp_redop_t op = GP_SUM;
  int root = 0;              // kBroadcast
  int send_peer = -1;        // kSendRecv
  int recv_peer = -1;        // kSendRecv
  AllreduceOptions options;  // kAllReduce
};

}  // namespace gradpack::coll
