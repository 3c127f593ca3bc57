// SPDX-License-Identifier: Apache-2.0
// The NCCL executor's schedule (net_plugin/interposer/nccl_executor.h): structure (every op once,
// dependencies before their users, both ends of a message in the same group), and a run of every
// rank's schedule against a fake NCCL in threads with the CPU codecs: a send blocks its group
// until the receiver takes it, as NCCL's rendezvous does, so a schedule that could deadlock on a
// GPU fails here (by timeout) instead of passing.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net_plugin/interposer/nccl_executor.h"
#include "compression/codec.h"

namespace gradpack::coll {
namespace {

constexpr const char* kSpec = "q8";

size_t q8_capacity(size_t count, Stage) {
  static std::unique_ptr<Codec> codec = [] {
    std::unique_ptr<Codec> c;
    EXPECT_TRUE(Codec::create(kSpec, &c).ok());
    return c;
  }();
  return codec->max_encoded_bytes(count, GP_FLOAT32);
}

PlanRequest request_of(int rank, int nranks, size_t count, size_t segment_bytes) {
  PlanRequest r;
  r.collective = Collective::kAllReduce;
  r.rank = rank;
  r.nranks = nranks;
  r.count = count;
  r.elem_size = 4;
  r.segment_bytes = segment_bytes;
  r.compressed = true;
  return r;
}

struct Built {
  std::vector<Plan> plans;
  std::vector<NcclSchedule> schedules;
};

Built build(int nranks, size_t count, size_t segment_bytes) {
  Built b;
  b.plans.resize(static_cast<size_t>(nranks));
  b.schedules.resize(static_cast<size_t>(nranks));
  for (int r = 0; r < nranks; ++r) {
    const PlanRequest req = request_of(r, nranks, count, segment_bytes);
    Status st = make_plan(Algorithm::kDirect, req, &b.plans[static_cast<size_t>(r)]);
    EXPECT_TRUE(st.ok()) << st.message();
    st = make_nccl_schedule(Algorithm::kDirect, req, b.plans[static_cast<size_t>(r)], q8_capacity,
                            &b.schedules[static_cast<size_t>(r)]);
    EXPECT_TRUE(st.ok()) << st.message();
  }
  return b;
}

struct Shape {
  int nranks;
  size_t count;
  size_t segment_bytes;
};
const Shape kShapes[] = {{2, 1000, 1 << 20}, {2, 10000, 4096}, {3, 10001, 4096}, {4, 65536, 16384},
                         {5, 777, 4096},     {4, 3, 4096},     {8, 40000, 32768}};

bool is_message(OpKind k) { return k == OpKind::kSend || k == OpKind::kRecv; }

TEST(NcclSchedule, EveryOpOnceAfterItsDependencies) {
  for (const Shape& s : kShapes) {
    const Built b = build(s.nranks, s.count, s.segment_bytes);
    for (int r = 0; r < s.nranks; ++r) {
      const Plan& plan = b.plans[static_cast<size_t>(r)];
      const NcclSchedule& sch = b.schedules[static_cast<size_t>(r)];
      ASSERT_EQ(sch.stages.size(), sch.groups.size());
      // level[i]: 2L for stage L, 2L+1 for group L (the order they are issued in).
      std::vector<int> level(plan.ops.size(), -1);
      for (size_t l = 0; l < sch.stages.size(); ++l) {
        for (uint32_t i : sch.stages[l]) {
          ASSERT_EQ(level[i], -1) << "op " << i << " scheduled twice";
          EXPECT_FALSE(is_message(plan.ops[i].kind));
          level[i] = static_cast<int>(2 * l);
        }
        for (uint32_t i : sch.groups[l]) {
          ASSERT_EQ(level[i], -1) << "op " << i << " scheduled twice";
          EXPECT_TRUE(is_message(plan.ops[i].kind));
          EXPECT_EQ(
              sch.message_bytes[i],
              q8_capacity(plan.frames[plan.ops[i].kind == OpKind::kSend ? plan.ops[i].src.offset
                                                                        : plan.ops[i].dst.offset]
                              .count,
                          Stage::kWorker));
          level[i] = static_cast<int>(2 * l + 1);
        }
      }
      for (size_t i = 0; i < plan.ops.size(); ++i) {
        ASSERT_GE(level[i], 0) << "op " << i << " never scheduled";
        for (uint32_t d : plan.ops[i].deps) {
          // A message waits for an earlier group; a local op may follow one of the same stage.
          if (is_message(plan.ops[d].kind) || is_message(plan.ops[i].kind)) {
            EXPECT_LT(level[d], level[i]) << "rank " << r << " op " << i << " dep " << d;
          } else {
            EXPECT_LE(level[d], level[i]) << "rank " << r << " op " << i << " dep " << d;
          }
        }
      }
      ASSERT_EQ(sch.frame_capacity.size(), plan.frames.size());
    }
    // The k-th message from a to b: the same group and size on both ends.
    for (int a = 0; a < s.nranks; ++a) {
      for (int bb = 0; bb < s.nranks; ++bb) {
        if (a == bb) continue;
        std::vector<std::pair<size_t, size_t>> sent, received;  // (group, bytes)
        const NcclSchedule& sa = b.schedules[static_cast<size_t>(a)];
        const NcclSchedule& sb = b.schedules[static_cast<size_t>(bb)];
        for (size_t l = 0; l < sa.groups.size(); ++l) {
          for (uint32_t i : sa.groups[l]) {
            const Op& op = b.plans[static_cast<size_t>(a)].ops[i];
            if (op.kind == OpKind::kSend && op.peer == bb) sent.push_back({l, sa.message_bytes[i]});
          }
        }
        for (size_t l = 0; l < sb.groups.size(); ++l) {
          for (uint32_t i : sb.groups[l]) {
            const Op& op = b.plans[static_cast<size_t>(bb)].ops[i];
            if (op.kind == OpKind::kRecv && op.peer == a) {
              received.push_back({l, sb.message_bytes[i]});
            }
          }
        }
        EXPECT_EQ(sent, received) << s.nranks << " ranks, count " << s.count << ": " << a << " -> "
                                  << bb;
      }
    }
  }
}

TEST(NcclSchedule, DirectPlanNeedsTwoGroups) {
  // The direct plan: worker frames to each chunk's owner, then the owners' reduced frames.
  const Built b = build(4, 65536, 16384);
  for (const NcclSchedule& s : b.schedules) {
    size_t groups = 0;
    for (const auto& g : s.groups) groups += g.empty() ? 0 : 1;
    EXPECT_EQ(groups, 2u);
  }
}

TEST(NcclSchedule, RefusesPlansWithoutMatchingCapacities) {
  const PlanRequest req = request_of(0, 2, 1000, 4096);
  Plan plan;
  ASSERT_TRUE(make_plan(Algorithm::kDirect, req, &plan).ok());
  NcclSchedule s;
  Status st = make_nccl_schedule(
      Algorithm::kDirect, req, plan, [](size_t, Stage) -> size_t { return 0; }, &s);
  EXPECT_FALSE(st.ok());
}

// NCCL for threads: a group's sends are posted at group end, and the group ends when its receives
// have their messages and its sends have been taken (rendezvous).
class FakeNccl {
 public:
  FakeNccl() = default;
  explicit FakeNccl(std::chrono::milliseconds patience) : patience_(patience) {}
  void post(int from, int to, std::vector<uint8_t> bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    box_[{from, to}].push_back(std::move(bytes));
    ++posted_[{from, to}];
    cv_.notify_all();
  }
  uint64_t posted(int from, int to) {
    std::lock_guard<std::mutex> lock(mu_);
    return posted_[{from, to}];
  }
  Status take(int from, int to, uint8_t* dst, size_t bytes) {
    std::unique_lock<std::mutex> lock(mu_);
    auto& q = box_[{from, to}];
    if (!cv_.wait_for(lock, patience_, [&] { return !q.empty(); })) {
      return Status(Code::kTimeout, "rank " + std::to_string(to) + " waited for rank " +
                                        std::to_string(from) + ": the schedule deadlocks");
    }
    std::vector<uint8_t> m = std::move(q.front());
    q.pop_front();
    ++taken_[{from, to}];
    cv_.notify_all();
    if (m.size() != bytes) return Internal("message size differs from the receive");
    std::memcpy(dst, m.data(), bytes);
    return OkStatus();
  }
  Status wait_taken(int from, int to, uint64_t upto) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, patience_, [&] { return taken_[{from, to}] >= upto; })) {
      return Status(Code::kTimeout, "rank " + std::to_string(from) + "'s send to rank " +
                                        std::to_string(to) + " was never received: deadlock");
    }
    return OkStatus();
  }

 private:
  std::chrono::milliseconds patience_{10000};
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<int, int>, std::deque<std::vector<uint8_t>>> box_;
  std::map<std::pair<int, int>, uint64_t> posted_, taken_;
};

// The NCCL executor's device side, on host memory with the CPU codecs (fp32 only).
class CpuOps : public NcclOps {
 public:
  CpuOps(int rank, FakeNccl& net, const Plan& plan, const NcclSchedule& schedule,
         std::vector<float>& send, std::vector<float>& recv, std::vector<float>& residual)
      : rank_(rank), net_(net), send_(send), recv_(recv), residual_(residual) {
    accum_.assign(plan.accum_count, 0.0f);
    frames_.resize(plan.frames.size());
    for (size_t f = 0; f < frames_.size(); ++f) frames_[f].resize(schedule.frame_capacity[f]);
    capacity_ = schedule.frame_capacity;
    EXPECT_TRUE(Codec::create(kSpec, &codec_).ok());
  }
  Status group_start() override {
    if (in_group_) return Internal("nested group");
    in_group_ = true;
    return OkStatus();
  }
  Status group_end() override {
    in_group_ = false;
    std::map<int, uint64_t> wait_for;
    for (auto& [peer, bytes] : sends_) {
      net_.post(rank_, peer, std::move(bytes));
      wait_for[peer] = net_.posted(rank_, peer);
    }
    sends_.clear();
    for (const auto& r : recvs_) GP_RETURN_IF_ERROR(net_.take(r.peer, rank_, r.dst, r.bytes));
    recvs_.clear();
    for (const auto& [peer, upto] : wait_for)
      GP_RETURN_IF_ERROR(net_.wait_taken(rank_, peer, upto));
    return OkStatus();
  }
  Status send(const Op& op, size_t bytes) override {
    if (!in_group_) return Internal("send outside a group");
    const uint8_t* p = address(op.src);
    sends_.push_back({op.peer, std::vector<uint8_t>(p, p + bytes)});
    return OkStatus();
  }
  Status recv(const Op& op, size_t bytes) override {
    if (!in_group_) return Internal("recv outside a group");
    recvs_.push_back({op.peer, address(op.dst), bytes});
    return OkStatus();
  }
  Status local(const Op& op) override {
    if (in_group_) return Internal("local op inside a group");
    auto* dst = reinterpret_cast<float*>(address(op.dst));
    switch (op.kind) {
      case OpKind::kCopy:
        std::memmove(dst, address(op.src), op.dst.count * 4);
        return OkStatus();
      case OpKind::kReduce: {
        const auto* src = reinterpret_cast<const float*>(address(op.src));
        for (size_t i = 0; i < op.dst.count; ++i) dst[i] += src[i];
        return OkStatus();
      }
      case OpKind::kEncode: {
        float* res = op.aux.count > 0 ? residual_.data() + op.aux.offset : nullptr;
        size_t bytes = 0;
        const size_t slot = op.dst.offset;
        GP_RETURN_IF_ERROR(codec_->encode(address(op.src), op.src.count, GP_FLOAT32, res,
                                          frames_[slot].data(), capacity_[slot], &bytes));
        if (bytes != capacity_[slot]) return Internal("q8 frame is not its capacity");
        return OkStatus();
      }
      case OpKind::kDecode:
        return decode_frame(frames_[op.src.offset].data(), capacity_[op.src.offset], dst,
                            op.dst.count, GP_FLOAT32, op.accumulate);
      default:
        return Internal("not a local op");
    }
  }

 private:
  uint8_t* address(const Span& s) {
    switch (s.buf) {
      case Buf::kSend:
        return reinterpret_cast<uint8_t*>(send_.data() + s.offset);
      case Buf::kRecv:
        return reinterpret_cast<uint8_t*>(recv_.data() + s.offset);
      case Buf::kAccum:
        return reinterpret_cast<uint8_t*>(accum_.data() + s.offset);
      case Buf::kResidual:
        return reinterpret_cast<uint8_t*>(residual_.data() + s.offset);
      case Buf::kFrame:
        return frames_[s.offset].data();
      default:
        return nullptr;
    }
  }
  struct PendingRecv {
    int peer;
    uint8_t* dst;
    size_t bytes;
  };
  int rank_;
  FakeNccl& net_;
  std::vector<float>& send_;
  std::vector<float>& recv_;
  std::vector<float>& residual_;
  std::vector<float> accum_;
  std::vector<std::vector<uint8_t>> frames_;
  std::vector<size_t> capacity_;
  std::unique_ptr<Codec> codec_;
  bool in_group_ = false;
  std::vector<std::pair<int, std::vector<uint8_t>>> sends_;
  std::vector<PendingRecv> recvs_;
};

TEST(NcclSchedule, RanksRunTheirSchedulesToTheCompressedSum) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(std::to_string(s.nranks) + " ranks, count " + std::to_string(s.count));
    const Built b = build(s.nranks, s.count, s.segment_bytes);
    const auto p = static_cast<size_t>(s.nranks);
    std::vector<std::vector<float>> in(p), out(p), residual(p);
    std::vector<double> exact(s.count, 0.0);
    uint32_t state = 12345;
    for (size_t r = 0; r < p; ++r) {
      in[r].resize(s.count);
      for (float& v : in[r]) {
        state = state * 1664525u + 1013904223u;
        v = static_cast<float>(state >> 8) / 8388608.0f - 1.0f;  // [-1, 1)
      }
      for (size_t i = 0; i < s.count; ++i) exact[i] += in[r][i];
      out[r].assign(s.count, NAN);
      residual[r].assign(s.count, 0.0f);
    }
    FakeNccl net;
    std::vector<Status> result(p);
    std::vector<std::thread> threads;
    for (size_t r = 0; r < p; ++r) {
      threads.emplace_back([&, r] {
        CpuOps ops(static_cast<int>(r), net, b.plans[r], b.schedules[r], in[r], out[r],
                   residual[r]);
        bool issued = false;
        result[r] = run_nccl_schedule(b.plans[r], b.schedules[r], ops, &issued);
        EXPECT_TRUE(issued);
      });
    }
    for (auto& t : threads) t.join();
    for (size_t r = 0; r < p; ++r) ASSERT_TRUE(result[r].ok()) << r << ": " << result[r].message();
    // Every rank decodes the same frames: the same bits everywhere. Each element carries at most
    // one worker rounding per rank and one server rounding, each at most half a q8 step of its
    // block's largest magnitude (1 per rank, nranks for the sum).
    const double bound = (static_cast<double>(p) + static_cast<double>(p)) / 127.0 / 2.0 + 1e-5;
    for (size_t r = 1; r < p; ++r) {
      ASSERT_EQ(0, std::memcmp(out[r].data(), out[0].data(), s.count * 4)) << "rank " << r;
    }
    double worst = 0;
    for (size_t i = 0; i < s.count; ++i) worst = std::max(worst, std::fabs(out[0][i] - exact[i]));
    EXPECT_LE(worst, bound);
    // Error feedback kept what the frames did not carry.
    if (s.count >= 1000) {  // (chunks of one element quantize exactly)
      double kept = 0;
      for (size_t r = 0; r < p; ++r) {
        for (float v : residual[r]) kept += std::fabs(v);
      }
      EXPECT_GT(kept, 0.0);
    }
  }
}

// The fake NCCL does catch a schedule that deadlocks: the plan in order with one group per
// message (each rank first sends, and a send waits for its receive).
TEST(NcclSchedule, TheFakeNcclCatchesADeadlock) {
  const Built b = build(2, 10000, 4096);
  std::vector<NcclSchedule> naive(2);
  for (size_t r = 0; r < 2; ++r) {
    NcclSchedule& s = naive[r];
    s = b.schedules[r];
    s.stages.clear();
    s.groups.clear();
    for (uint32_t i = 0; i < b.plans[r].ops.size(); ++i) {
      s.stages.emplace_back();
      s.groups.emplace_back();
      (is_message(b.plans[r].ops[i].kind) ? s.groups : s.stages).back().push_back(i);
    }
  }
  FakeNccl net(std::chrono::milliseconds(300));
  std::vector<std::vector<float>> in(2, std::vector<float>(10000, 1.0f)), out = in, res = in;
  std::vector<Status> result(2);
  std::vector<std::thread> threads;
  for (size_t r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      CpuOps ops(static_cast<int>(r), net, b.plans[r], naive[r], in[r], out[r], res[r]);
      result[r] = run_nccl_schedule(b.plans[r], naive[r], ops, nullptr);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(result[0].code(), Code::kTimeout) << result[0].message();
  EXPECT_EQ(result[1].code(), Code::kTimeout) << result[1].message();
}

// A failure before the first group leaves the call to NCCL; one inside a group still ends it.
class FailingOps : public NcclOps {
 public:
  explicit FailingOps(bool fail_local) : fail_local_(fail_local) {}
  Status group_start() override {
    ++starts;
    return OkStatus();
  }
  Status group_end() override {
    ++ends;
    return OkStatus();
  }
  Status send(const Op&, size_t) override { return Internal("send failed"); }
  Status recv(const Op&, size_t) override { return Internal("recv failed"); }
  Status local(const Op&) override { return fail_local_ ? Internal("kernel failed") : OkStatus(); }
  int starts = 0, ends = 0;

 private:
  bool fail_local_;
};

TEST(NcclSchedule, FailuresSayWhetherMessagesWentOut) {
  const Built b = build(2, 10000, 4096);
  FailingOps local_fails(true);
  bool issued = true;
  EXPECT_FALSE(run_nccl_schedule(b.plans[0], b.schedules[0], local_fails, &issued).ok());
  EXPECT_FALSE(issued);
  EXPECT_EQ(local_fails.starts, 0);

  FailingOps message_fails(false);
  Status st = run_nccl_schedule(b.plans[0], b.schedules[0], message_fails, &issued);
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(issued);
  EXPECT_EQ(message_fails.starts, 1);
  EXPECT_EQ(message_fails.ends, 1);
}

}  // namespace
}  // namespace gradpack::coll
