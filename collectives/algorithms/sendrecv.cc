#include <algorithm>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {

Status sendrecv_plan(const PlanRequest& req, Plan* out) {
  const size_t segment = std::max<size_t>(1, req.segment_bytes / std::max<size_t>(1, req.elem_size));
  for (size_t offset = 0; offset < req.count || (offset == 0 && req.count == 0);
       offset += segment) {
    const size_t n = std::min(segment, req.count - offset);
    if (req.send_peer == req.rank) {
      // Both peers are this rank (a world of one, or a self loop): a local copy.
      out->ops.push_back(Op{OpKind::kCopy, -1, Span{Buf::kSend, offset, n},
                            Span{Buf::kRecv, offset, n}, {}});
    } else {
      out->ops.push_back(Op{OpKind::kSend, req.send_peer, Span{Buf::kSend, offset, n}, Span{}, {}});
      out->ops.push_back(Op{OpKind::kRecv, req.recv_peer, Span{}, Span{Buf::kRecv, offset, n}, {}});
    }
    if (req.count == 0) break;
  }
  return OkStatus();
}

}  // namespace gradpack::coll::algo
