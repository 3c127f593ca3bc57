// SPDX-License-Identifier: Apache-2.0
#include <algorithm>

#include "collectives/algorithms/algorithms.h"

namespace gradpack::coll::algo {

PlanBuilder::PlanBuilder(const PlanRequest& request, Plan* plan) : plan_(plan) {
  segment_ = std::max<size_t>(1, request.segment_bytes / std::max<size_t>(1, request.elem_size));
  const size_t n = request.count;
  const size_t r = static_cast<size_t>(request.rank);
  switch (request.collective) {
    case Collective::kAllReduce:
    case Collective::kBroadcast:
      alias_end_ = n;  // send == recv
      break;
    case Collective::kReduceScatter:  // recv == send + rank * count
      alias_begin_ = r * n;
      alias_end_ = (r + 1) * n;
      alias_shift_ = -static_cast<int64_t>(r * n);
      break;
    case Collective::kAllGather:  // send == recv + rank * count
      alias_end_ = n;
      alias_shift_ = static_cast<int64_t>(r * n);
      break;
    case Collective::kBarrier:
    case Collective::kSendRecv:  // send and recv must not overlap
      break;
  }
  recv_space_[0] = Piece{};
  scratch_space_[0] = Piece{};
  accum_space_[0] = Piece{};
  residual_space_[0] = Piece{};
  frame_space_[0] = Piece{};
}

void PlanBuilder::need_scratch(size_t count) {
  plan_->scratch_count = std::max(plan_->scratch_count, count);
}

uint32_t PlanBuilder::send(int peer, Span src) {
  Op op;
  op.kind = OpKind::kSend;
  op.peer = peer;
  op.src = src;
  return add(std::move(op), true, false);
}

uint32_t PlanBuilder::recv(int peer, Span dst) {
  Op op;
  op.kind = OpKind::kRecv;
  op.peer = peer;
  op.dst = dst;
  return add(std::move(op), false, true);
}

uint32_t PlanBuilder::recv_reduce(int peer, Span src, Span dst) {
  Op op;
  op.kind = OpKind::kRecvReduce;
  op.peer = peer;
  op.src = src;
  op.dst = dst;
  return add(std::move(op), true, true);
}

uint32_t PlanBuilder::copy(Span src, Span dst) {
  Op op;
  op.kind = OpKind::kCopy;
  op.src = src;
  op.dst = dst;
  return add(std::move(op), true, true);
}

uint32_t PlanBuilder::reduce(Span src, Span dst) {
  Op op;
  op.kind = OpKind::kReduce;
  op.src = src;
  op.dst = dst;
  return add(std::move(op), true, true);
}

Span PlanBuilder::frame(size_t count, Stage stage) {
  plan_->frames.push_back(FrameSlot{count, stage});
  return Span{Buf::kFrame, plan_->frames.size() - 1, count};
}

uint32_t PlanBuilder::encode(Span src, Span residual, Span frame) {
  Op op;
  op.kind = OpKind::kEncode;
  op.src = src;
  op.aux = residual;  // read and written: add() orders it as a write
  op.dst = frame;
  return add(std::move(op), true, true);
}

uint32_t PlanBuilder::decode(Span frame, Span dst, bool accumulate) {
  Op op;
  op.kind = OpKind::kDecode;
  op.src = frame;
  op.dst = dst;
  op.accumulate = accumulate;
  return add(std::move(op), true, true);
}

uint32_t PlanBuilder::add_raw(Op op) {
  plan_->ops.push_back(std::move(op));
  return static_cast<uint32_t>(plan_->ops.size() - 1);
}

uint32_t PlanBuilder::add(Op op, bool reads_src, bool writes_dst) {
  const auto id = static_cast<uint32_t>(plan_->ops.size());
  std::vector<uint32_t> deps;
  if (reads_src) access(op.src, false, id, &deps);
  if (writes_dst) access(op.dst, true, id, &deps);
  if (op.aux.count > 0) access(op.aux, true, id, &deps);
  std::sort(deps.begin(), deps.end());
  deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
  if (!deps.empty() && deps.back() == id) deps.pop_back();  // an op that reads what it writes
  op.deps = std::move(deps);
  plan_->ops.push_back(std::move(op));
  return id;
}

void PlanBuilder::access(const Span& span, bool write, uint32_t id, std::vector<uint32_t>* deps) {
  if (span.buf == Buf::kFrame) {  // a slot is one unit, whatever it encodes
    touch(&frame_space_, span.offset, span.offset + 1, write, id, deps);
    return;
  }
  if (span.count == 0) return;
  const size_t begin = span.offset;
  const size_t end = span.offset + span.count;
  switch (span.buf) {
    case Buf::kRecv:
      touch(&recv_space_, begin, end, write, id, deps);
      break;
    case Buf::kScratch:
      need_scratch(end);
      touch(&scratch_space_, begin, end, write, id, deps);
      break;
    case Buf::kAccum:
      plan_->accum_count = std::max(plan_->accum_count, end);
      touch(&accum_space_, begin, end, write, id, deps);
      break;
    case Buf::kResidual:
      touch(&residual_space_, begin, end, write, id, deps);
      break;
    case Buf::kFrame:
      break;
    case Buf::kSend: {
      // Only the part that may be kRecv memory can conflict: nothing writes kSend.
      const size_t lo = std::max(begin, alias_begin_);
      const size_t hi = std::min(end, alias_end_);
      if (lo < hi) {
        touch(&recv_space_, static_cast<size_t>(static_cast<int64_t>(lo) + alias_shift_),
              static_cast<size_t>(static_cast<int64_t>(hi) + alias_shift_), write, id, deps);
      }
      break;
    }
  }
}

void PlanBuilder::touch(Space* space, size_t begin, size_t end, bool write, uint32_t id,
                        std::vector<uint32_t>* deps) {
  auto split = [space](size_t at) {
    auto it = space->upper_bound(at);
    --it;  // the piece holding `at` (key 0 always exists)
    if (it->first == at) return it;
    return space->emplace_hint(std::next(it), at, it->second);
  };
  auto it = split(begin);
  split(end);
  for (; it != space->end() && it->first < end; ++it) {
    Piece& piece = it->second;
    if (piece.writer >= 0) deps->push_back(static_cast<uint32_t>(piece.writer));
    if (write) {
      deps->insert(deps->end(), piece.readers.begin(), piece.readers.end());
      piece.readers.clear();
      piece.writer = id;
    } else {
      piece.readers.push_back(id);
    }
  }
}

Span block_of(const Span& whole, int n, int b) {
  const size_t nn = static_cast<size_t>(n);
  const size_t bb = static_cast<size_t>(b);
  const size_t base = whole.count / nn;
  const size_t rem = whole.count % nn;
  return Span{whole.buf, whole.offset + bb * base + std::min(bb, rem), base + (bb < rem ? 1 : 0)};
}

}  // namespace gradpack::coll::algo
