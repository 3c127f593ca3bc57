// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <utility>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {

Status sendrecv_plan(const PlanRequest& req, Plan* out) {
  const size_t segment =
      std::max<size_t>(1, req.segment_bytes / std::max<size_t>(1, req.elem_size));
  for (size_t offset = 0; offset < req.count || (offset == 0 && req.count == 0);
       offset += segment) {
    const size_t n = std::min(segment, req.count - offset);
    if (req.send_peer == req.rank) {
      // Both peers are this rank (a world of one, or a self loop): a local copy.
      Op copy;
      copy.kind = OpKind::kCopy;
      copy.src = Span{Buf::kSend, offset, n};
      copy.dst = Span{Buf::kRecv, offset, n};
      out->ops.push_back(std::move(copy));
    } else {
      Op send;
      send.kind = OpKind::kSend;
      send.peer = req.send_peer;
      send.src = Span{Buf::kSend, offset, n};
      out->ops.push_back(std::move(send));
      Op recv;
      recv.kind = OpKind::kRecv;
      recv.peer = req.recv_peer;
      recv.dst = Span{Buf::kRecv, offset, n};
      out->ops.push_back(std::move(recv));
    }
    if (req.count == 0) break;
  }
  return OkStatus();
}

}  // namespace gradpack::coll::algo
