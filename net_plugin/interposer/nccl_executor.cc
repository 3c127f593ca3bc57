// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/nccl_executor.h"

#include <algorithm>
#include <string>

namespace gradpack::coll {

namespace {

bool is_message(OpKind kind) {
  return kind == OpKind::kSend || kind == OpKind::kRecv || kind == OpKind::kRecvReduce;
}

// One pass over a plan in op order (deps are earlier ops): a local op's stage is the latest of
// its local deps' stages and one past its message deps' groups; a message's group is the same,
// raised to the floor its peer's side set (`floor`).
void level_plan(const Plan& plan, const std::vector<int>& floor, std::vector<int>* level) {
  level->assign(plan.ops.size(), 0);
  for (size_t i = 0; i < plan.ops.size(); ++i) {
    const Op& op = plan.ops[i];
    int l = is_message(op.kind) ? floor[i] : 0;
    for (uint32_t d : op.deps) {
      const int dl = (*level)[d];
      l = std::max(l, is_message(plan.ops[d].kind) ? dl + 1 : dl);
    }
    (*level)[i] = l;
  }
}

size_t message_size(const Plan& plan, const Span& span, size_t elem_size,
                    const FrameCapacityFn& frame_capacity) {
  if (span.buf != Buf::kFrame) return span.count * elem_size;
  if (span.offset >= plan.frames.size()) return 0;
  const FrameSlot& slot = plan.frames[span.offset];
  return frame_capacity(slot.count, slot.stage);
}

// A message: op `op` of rank `rank`'s plan.
struct End {
  int rank;
  uint32_t op;
};

// by_peer[a][b]: the op indices, in plan order, of rank a's messages of one kind with rank b.
using MessagesByPeer = std::vector<std::vector<std::vector<uint32_t>>>;

// Every rank's plan: `mine` for request.rank, make_plan's for the others.
Status make_all_plans(Algorithm algorithm, const PlanRequest& request, const Plan& mine,
                      std::vector<Plan>* plans) {
  const int p = request.nranks;
  plans->assign(static_cast<size_t>(p), Plan{});
  for (int r = 0; r < p; ++r) {
    if (r == request.rank) {
      (*plans)[static_cast<size_t>(r)] = mine;
      continue;
    }
    PlanRequest theirs = request;
    theirs.rank = r;
    GP_RETURN_IF_ERROR(make_plan(algorithm, theirs, &(*plans)[static_cast<size_t>(r)]));
  }
  return OkStatus();
}

// Sorts every plan's messages by kind and peer, refusing what the executor cannot run.
Status index_messages(const std::vector<Plan>& plans, MessagesByPeer* sends,
                      MessagesByPeer* recvs) {
  const int p = static_cast<int>(plans.size());
  sends->assign(static_cast<size_t>(p), std::vector<std::vector<uint32_t>>(static_cast<size_t>(p)));
  *recvs = *sends;
  for (int r = 0; r < p; ++r) {
    const Plan& plan = plans[static_cast<size_t>(r)];
    if (plan.scratch_count > 0) {
      return Unsupported(std::string("the NCCL executor has no scratch memory (plan \"") +
                         plan.algorithm + "\")");
    }
    for (uint32_t i = 0; i < plan.ops.size(); ++i) {
      const Op& op = plan.ops[i];
      if (op.kind == OpKind::kRecvReduce) {
        return Unsupported(std::string("the NCCL executor runs no kRecvReduce (plan \"") +
                           plan.algorithm + "\")");
      }
      if (!is_message(op.kind)) continue;
      if (op.peer < 0 || op.peer >= p || op.peer == r) {
        return Internal("rank " + std::to_string(r) + "'s plan op " + std::to_string(i) +
                        " names peer " + std::to_string(op.peer));
      }
      MessagesByPeer& list = op.kind == OpKind::kSend ? *sends : *recvs;
      list[static_cast<size_t>(r)][static_cast<size_t>(op.peer)].push_back(i);
    }
  }
  return OkStatus();
}

// Pairs every send with its receive: rank a's k-th send to b is b's k-th receive from a, and both
// ends must agree on the message's size.
Status pair_messages(const std::vector<Plan>& plans, size_t elem_size,
                     const FrameCapacityFn& frame_capacity,
                     std::vector<std::pair<End, End>>* pairs) {
  MessagesByPeer sends, recvs;
  GP_RETURN_IF_ERROR(index_messages(plans, &sends, &recvs));
  const int p = static_cast<int>(plans.size());
  for (int a = 0; a < p; ++a) {
    for (int b = 0; b < p; ++b) {
      const auto& s = sends[static_cast<size_t>(a)][static_cast<size_t>(b)];
      const auto& q = recvs[static_cast<size_t>(b)][static_cast<size_t>(a)];
      if (s.size() != q.size()) {
        return Internal("rank " + std::to_string(a) + " sends " + std::to_string(s.size()) +
                        " messages to rank " + std::to_string(b) + ", which receives " +
                        std::to_string(q.size()));
      }
      const Plan& sender = plans[static_cast<size_t>(a)];
      const Plan& receiver = plans[static_cast<size_t>(b)];
      for (size_t k = 0; k < s.size(); ++k) {
        const size_t sb = message_size(sender, sender.ops[s[k]].src, elem_size, frame_capacity);
        const size_t rb = message_size(receiver, receiver.ops[q[k]].dst, elem_size, frame_capacity);
        if (sb != rb || sb == 0) {
          return Internal("message " + std::to_string(k) + " from rank " + std::to_string(a) +
                          " to " + std::to_string(b) + ": " + std::to_string(sb) + " bytes sent, " +
                          std::to_string(rb) + " received");
        }
        pairs->push_back({End{a, s[k]}, End{b, q[k]}});
      }
    }
  }
  return OkStatus();
}

// Levels all plans, raising both ends of a message to the later of the two, until they agree.
// Each round only raises levels and the plans together are acyclic (tests/collectives/algorithms checks
// they run against each other), so this ends; the bound catches a plan that is not.
Status level_plans(const std::vector<Plan>& plans, const std::vector<std::pair<End, End>>& pairs,
                   const std::string& algorithm, std::vector<std::vector<int>>* level) {
  const size_t p = plans.size();
  std::vector<std::vector<int>> floor(p);
  level->assign(p, {});
  for (size_t r = 0; r < p; ++r) floor[r].assign(plans[r].ops.size(), 0);
  const size_t max_rounds = pairs.size() + 2;
  bool settled = false;
  for (size_t round = 0; round < max_rounds && !settled; ++round) {
    for (size_t r = 0; r < p; ++r) level_plan(plans[r], floor[r], &(*level)[r]);
    settled = true;
    for (const auto& [s, d] : pairs) {
      int& fs = floor[static_cast<size_t>(s.rank)][s.op];
      int& fd = floor[static_cast<size_t>(d.rank)][d.op];
      const int m = std::max((*level)[static_cast<size_t>(s.rank)][s.op],
                             (*level)[static_cast<size_t>(d.rank)][d.op]);
      if (fs < m || fd < m) settled = false;
      fs = std::max(fs, m);
      fd = std::max(fd, m);
    }
  }
  if (!settled) {
    return Internal(std::string("the \"") + algorithm +
                    "\" plans could not be put into NCCL groups (they wait on each other)");
  }
  return OkStatus();
}

// Writes this rank's stages, groups, message sizes and frame capacities from its levels.
Status fill_schedule(const Plan& mine, const std::vector<int>& my_level, size_t elem_size,
                     const FrameCapacityFn& frame_capacity, NcclSchedule* out) {
  int top = 0;
  for (int l : my_level) top = std::max(top, l);
  out->stages.resize(static_cast<size_t>(top) + 1);
  out->groups.resize(static_cast<size_t>(top) + 1);
  out->message_bytes.assign(mine.ops.size(), 0);
  for (uint32_t i = 0; i < mine.ops.size(); ++i) {
    const Op& op = mine.ops[i];
    const auto l = static_cast<size_t>(my_level[i]);
    if (is_message(op.kind)) {
      out->groups[l].push_back(i);
      out->message_bytes[i] =
          message_size(mine, op.kind == OpKind::kSend ? op.src : op.dst, elem_size, frame_capacity);
    } else {
      out->stages[l].push_back(i);
    }
  }
  out->frame_capacity.resize(mine.frames.size());
  for (size_t f = 0; f < mine.frames.size(); ++f) {
    out->frame_capacity[f] = frame_capacity(mine.frames[f].count, mine.frames[f].stage);
    if (out->frame_capacity[f] == 0) {
      return Unsupported("the codec cannot encode a frame of " +
                         std::to_string(mine.frames[f].count) + " elements");
    }
  }
  return OkStatus();
}

}  // namespace

Status make_nccl_schedule(Algorithm algorithm, const PlanRequest& request, const Plan& mine,
                          const FrameCapacityFn& frame_capacity, NcclSchedule* out) {
  *out = NcclSchedule{};
  const int p = request.nranks;
  if (p < 1 || request.rank < 0 || request.rank >= p) {
    return InvalidArgument("rank " + std::to_string(request.rank) + " of " + std::to_string(p));
  }
  std::vector<Plan> plans;
  GP_RETURN_IF_ERROR(make_all_plans(algorithm, request, mine, &plans));
  std::vector<std::pair<End, End>> pairs;
  GP_RETURN_IF_ERROR(pair_messages(plans, request.elem_size, frame_capacity, &pairs));
  std::vector<std::vector<int>> level;
  GP_RETURN_IF_ERROR(level_plans(plans, pairs, mine.algorithm, &level));
  return fill_schedule(mine, level[static_cast<size_t>(request.rank)], request.elem_size,
                       frame_capacity, out);
}

Status run_nccl_schedule(const Plan& plan, const NcclSchedule& schedule, NcclOps& ops,
                         bool* issued_messages) {
  if (issued_messages) *issued_messages = false;
  for (size_t l = 0; l < schedule.stages.size(); ++l) {
    for (uint32_t i : schedule.stages[l]) GP_RETURN_IF_ERROR(ops.local(plan.ops[i]));
    if (l >= schedule.groups.size() || schedule.groups[l].empty()) continue;
    if (issued_messages) *issued_messages = true;
    GP_RETURN_IF_ERROR(ops.group_start());
    Status st;
    for (uint32_t i : schedule.groups[l]) {
      const Op& op = plan.ops[i];
      st = op.kind == OpKind::kSend ? ops.send(op, schedule.message_bytes[i])
                                    : ops.recv(op, schedule.message_bytes[i]);
      if (!st.ok()) break;
    }
    // NCCL needs every group it started ended, even when an op in it failed.
    Status end = ops.group_end();
    GP_RETURN_IF_ERROR(st);
    GP_RETURN_IF_ERROR(end);
  }
  return OkStatus();
}

}  // namespace gradpack::coll
