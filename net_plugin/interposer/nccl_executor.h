// SPDX-License-Identifier: Apache-2.0
// The NCCL executor: runs one rank's compressed Plan on a CUDA stream, its messages as grouped
// ncclSend/ncclRecv and its local ops (kEncode, kDecode, kCopy, kReduce) as kernels on the same
// stream (the ncclAllReduce interposer, net_plugin/interposer/, is its user).
//
// Why a schedule: everything goes onto one stream, so ops run in the order they are issued, and an
// NCCL send blocks the stream until its receive is posted. A send and its matching receive must
// therefore be in the same group on both ranks, and no group may wait for a message that the peer
// only sends in a later group. make_nccl_schedule() levels every rank's plan together: a local op
// runs after the groups that wrote its inputs (stage), a message goes in the first group that both
// its sender's and its receiver's dependencies allow, and both ends of a message get the same
// group. Group L then completes on every rank once every rank has issued it, so ranks issuing
// "stage 0, group 0, stage 1, group 1, ..." never wait on each other in a cycle.
//
// Frames travel at a fixed size, known to both ends before the data: the slot's capacity
// (max_encoded_bytes of its count). For the q<b> codecs that is exactly the frame's size, so
// nothing is padded and no size message is needed; codecs whose frames vary (top-k) would send
// their whole capacity, which is why the interposer takes q<b> only for now (docs/plugin.md).
//
// This file is plain C++ (no CUDA, no NCCL): the device side is an NcclOps implementation, and
// tests drive the schedule and the runner with a fake one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "collectives/plan.h"
#include "common/status.h"

namespace gradpack::coll {

struct NcclSchedule {
  // stages[L]: local ops (indices into the plan, in plan order) issued before group L;
  // groups[L]: messages (kSend, kRecv) issued together between group start and end. Both have
  // the same length; the last group may be empty (local ops after the last message).
  std::vector<std::vector<uint32_t>> stages;
  std::vector<std::vector<uint32_t>> groups;
  // Bytes each message carries: a frame slot's capacity for kFrame spans, count * elem_size
  // otherwise. Indexed by op (0 for local ops).
  std::vector<size_t> message_bytes;
  // Bytes of each frame slot of the plan (the device buffer of that slot).
  std::vector<size_t> frame_capacity;
};

// Bytes of a frame of `count` elements written by `stage`'s codec (the executor's caller knows
// the codecs; the schedule only needs the sizes). 0 means "this codec cannot encode it".
using FrameCapacityFn = std::function<size_t(size_t count, Stage stage)>;

// Writes the schedule of rank `request.rank` running `algorithm`. It builds every rank's plan
// (make_plan is pure and cheap) to agree with the peers on groups; `mine` must be this rank's.
// kUnsupported for plans with kRecvReduce or scratch memory (no compressed plan uses them);
// kInternal if the plans cannot be levelled (a plan that would deadlock).
Status make_nccl_schedule(Algorithm algorithm, const PlanRequest& request, const Plan& mine,
                          const FrameCapacityFn& frame_capacity, NcclSchedule* out);

// What the runner needs from the device: NCCL's group calls, messages, and the local ops.
class NcclOps {
 public:
  virtual ~NcclOps() = default;
  virtual Status group_start() = 0;
  virtual Status group_end() = 0;
  // `op` is a kSend or kRecv of the plan; bytes from the schedule.
  virtual Status send(const Op& op, size_t bytes) = 0;
  virtual Status recv(const Op& op, size_t bytes) = 0;
  // A kCopy, kReduce, kEncode or kDecode of the plan.
  virtual Status local(const Op& op) = 0;
};

// Issues `schedule` through `ops`. *issued_messages (may be null) tells the caller whether any
// group was started, i.e. whether peers may already be waiting on this rank: before that, a
// failed call can still be handed to NCCL's own all-reduce. A failure inside a group still ends
// the group (NCCL requires it) before the error is returned.
Status run_nccl_schedule(const Plan& plan, const NcclSchedule& schedule, NcclOps& ops,
                         bool* issued_messages);

}  // namespace gradpack::coll
