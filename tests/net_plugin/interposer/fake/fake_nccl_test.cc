// SPDX-License-Identifier: Apache-2.0
// The fake NCCL across processes (label multiproc): run by gradpack-run, every rank runs every
// test in the same order; each test's communicators meet at gradpack-run's rendezvous under their
// own "#NAME". Grouped send/recv both ways (0 B, 1 B, 3 MiB), all-reduce results identical on
// every rank, abort from another thread, a peer's abort as an async error, destroy waiting.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "collectives/rendezvous/env.h"
#include "common/float16.h"
#include "tests/net_plugin/interposer/fake/gpu.h"
#include "tests/net_plugin/interposer/fake/nccl_extras.h"

namespace gradpack::fake {
namespace {

using namespace std::chrono_literals;

struct World {
  int rank = 0;
  int size = 1;
  std::string url;
};

const World& world() {
  static World w = [] {
    coll::EnvRendezvous r;
    World out;
    if (coll::rendezvous_from_env(coll::environment_map(), &r).ok()) {
      out = World{r.rank, r.nranks, r.url};
    }
    return out;
  }();
  return w;
}

ncclComm_t make_comm(const std::string& name) {
  ncclUniqueId id;
  EXPECT_EQ(gradpack_fake_nccl_unique_id((world().url + "#" + name).c_str(), &id), ncclSuccess);
  ncclComm_t comm = nullptr;
  EXPECT_EQ(ncclCommInitRank(&comm, world().size, id, world().rank), ncclSuccess);
  return comm;
}

void* dev_alloc(size_t bytes) {
  void* p = nullptr;
  EXPECT_TRUE(device_malloc(bytes, &p).ok());
  return p;
}

uint8_t pattern(int from, int to, size_t i) { return static_cast<uint8_t>(from * 31 + to * 7 + i); }

void barrier(ncclComm_t comm, cudaStream_t s) {
  auto* x = static_cast<float*>(dev_alloc(4));
  *x = 1.0f;
  ASSERT_EQ(ncclAllReduce(x, x, 1, ncclFloat32, ncclSum, comm, s), ncclSuccess);
  ASSERT_TRUE(stream_synchronize(s).ok());
  EXPECT_EQ(*x, static_cast<float>(world().size));
  device_free(x);
}

class FakeNccl : public testing::Test {
 protected:
  void SetUp() override {
    if (world().url.empty()) GTEST_SKIP() << "run under gradpack-run";
    ASSERT_TRUE(set_current_device(0).ok());
    stream_ = stream_create(0);
  }
  void TearDown() override {
    if (stream_ != nullptr) stream_destroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

TEST_F(FakeNccl, QueriesAnswerForTheCommunicator) {
  ncclComm_t comm = make_comm("queries");
  int n = 0;
  int r = -1;
  int d = -1;
  ncclResult_t async = ncclInternalError;
  ASSERT_EQ(ncclCommCount(comm, &n), ncclSuccess);
  ASSERT_EQ(ncclCommUserRank(comm, &r), ncclSuccess);
  ASSERT_EQ(ncclCommCuDevice(comm, &d), ncclSuccess);
  ASSERT_EQ(ncclCommGetAsyncError(comm, &async), ncclSuccess);
  EXPECT_EQ(n, world().size);
  EXPECT_EQ(r, world().rank);
  EXPECT_EQ(d, 0);
  EXPECT_EQ(async, ncclSuccess);
  int version = 0;
  ASSERT_EQ(pncclGetVersion(&version), ncclSuccess);
  EXPECT_EQ(version, NCCL_VERSION_CODE);
  EXPECT_STRNE(ncclGetErrorString(ncclRemoteError), "");
  ASSERT_EQ(ncclCommDestroy(comm), ncclSuccess);
}

TEST_F(FakeNccl, GroupedSendRecvBothWaysNeverDeadlock) {
  ncclComm_t comm = make_comm("sendrecv");
  const int me = world().rank;
  const int n = world().size;
  const int right = (me + 1) % n;
  const int left = (me + n - 1) % n;
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{3} << 20}) {
    // To both neighbours and from both (with 2 ranks they are the same peer: two messages each
    // way, matched in order).
    auto* to_right = static_cast<uint8_t*>(dev_alloc(bytes));
    auto* to_left = static_cast<uint8_t*>(dev_alloc(bytes));
    auto* from_left = static_cast<uint8_t*>(dev_alloc(bytes));
    auto* from_right = static_cast<uint8_t*>(dev_alloc(bytes));
    for (size_t i = 0; i < bytes; ++i) {
      to_right[i] = pattern(me, right, i);
      to_left[i] = pattern(me, left, i);
    }
    gradpack_fake_nccl_reset_counters();
    ASSERT_EQ(ncclGroupStart(), ncclSuccess);
    ASSERT_EQ(ncclSend(to_right, bytes, ncclUint8, right, comm, stream_), ncclSuccess);
    ASSERT_EQ(ncclSend(to_left, bytes, ncclUint8, left, comm, stream_), ncclSuccess);
    ASSERT_EQ(ncclRecv(from_left, bytes, ncclUint8, left, comm, stream_), ncclSuccess);
    ASSERT_EQ(ncclRecv(from_right, bytes, ncclUint8, right, comm, stream_), ncclSuccess);
    ASSERT_EQ(ncclGroupEnd(), ncclSuccess);
    ASSERT_TRUE(stream_synchronize(stream_).ok());
    ncclResult_t async = ncclSuccess;
    ASSERT_EQ(ncclCommGetAsyncError(comm, &async), ncclSuccess);
    ASSERT_EQ(async, ncclSuccess);
    // With 2 ranks, left == right: the first message from that peer is its "to_right".
    for (size_t i = 0; i < bytes; ++i) {
      ASSERT_EQ(from_left[i], pattern(left, me, i)) << bytes << " bytes, at " << i;
      ASSERT_EQ(from_right[i], pattern(right, me, i)) << bytes << " bytes, at " << i;
    }
    const FakeNcclCounters* c = gradpack_fake_nccl_counters();
    EXPECT_EQ(c->sends, 2u);
    EXPECT_EQ(c->recvs, 2u);
    EXPECT_EQ(c->groups, 1u);
    for (void* p : {to_right, to_left, from_left, from_right}) device_free(p);
  }
  ASSERT_EQ(ncclCommDestroy(comm), ncclSuccess);
}

// A checksum of the result, reduced with min and max: equal when every rank holds the same bits.
void expect_identical_on_all_ranks(ncclComm_t comm, cudaStream_t s, const void* data,
                                   size_t bytes) {
  int32_t h = 0;
  const auto* b = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i) h = h * 16777619 + b[i];
  auto* v = static_cast<int32_t*>(dev_alloc(8));
  v[0] = h;
  v[1] = h;
  ASSERT_EQ(ncclAllReduce(v, v, 1, ncclInt32, ncclMin, comm, s), ncclSuccess);
  ASSERT_EQ(ncclAllReduce(v + 1, v + 1, 1, ncclInt32, ncclMax, comm, s), ncclSuccess);
  ASSERT_TRUE(stream_synchronize(s).ok());
  EXPECT_EQ(v[0], v[1]);
  device_free(v);
}

TEST_F(FakeNccl, AllReduceSumAndAvgAreIdenticalOnEveryRank) {
  ncclComm_t comm = make_comm("allreduce");
  const size_t count = 100003;
  const int n = world().size;
  for (ncclRedOp_t op : {ncclSum, ncclAvg}) {
    auto* f = static_cast<float*>(dev_alloc(count * 4));
    auto* h = static_cast<uint16_t*>(dev_alloc(count * 2));
    for (size_t i = 0; i < count; ++i) {
      const float x =
          std::sin(0.001f * static_cast<float>(i)) * static_cast<float>(world().rank + 1);
      f[i] = x;
      h[i] = f32_to_bf16(x);
    }
    ASSERT_EQ(ncclAllReduce(f, f, count, ncclFloat32, op, comm, stream_), ncclSuccess);
    ASSERT_EQ(ncclAllReduce(h, h, count, ncclBfloat16, op, comm, stream_), ncclSuccess);
    ASSERT_TRUE(stream_synchronize(stream_).ok());
    const float factor = static_cast<float>(n * (n + 1) / 2) / (op == ncclAvg ? n : 1);
    for (size_t i = 0; i < count; i += 997) {
      const float want = std::sin(0.001f * static_cast<float>(i)) * factor;
      ASSERT_NEAR(f[i], want, 1e-4f * factor) << i;
      ASSERT_NEAR(bf16_to_f32(h[i]), want, 0.05f * factor) << i;
    }
    expect_identical_on_all_ranks(comm, stream_, f, count * 4);
    expect_identical_on_all_ranks(comm, stream_, h, count * 2);
    device_free(f);
    device_free(h);
  }
  ASSERT_EQ(ncclCommDestroy(comm), ncclSuccess);
}

TEST_F(FakeNccl, AbortFromAnotherThreadEndsARecvThatNeverCompletes) {
  ncclComm_t comm = make_comm("abort");
  ncclComm_t sync = make_comm("abort-barrier");
  if (world().rank == 0) {
    auto* buf = dev_alloc(1024);
    ASSERT_EQ(ncclRecv(buf, 1024, ncclUint8, 1, comm, stream_), ncclSuccess);  // never sent
    const auto start = std::chrono::steady_clock::now();
    std::thread aborter([comm] {
      std::this_thread::sleep_for(300ms);
      EXPECT_EQ(ncclCommAbort(comm), ncclSuccess);
    });
    ASSERT_TRUE(stream_synchronize(stream_).ok());  // the op ended; the stream is not faulted
    aborter.join();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
    device_free(buf);
    barrier(sync, stream_);
  } else {
    barrier(sync, stream_);  // rank 0 has aborted: closing now cannot be what ended its recv
    ASSERT_EQ(ncclCommDestroy(comm), ncclSuccess);
  }
  ASSERT_EQ(ncclCommDestroy(sync), ncclSuccess);
}

TEST_F(FakeNccl, PeersAbortBecomesTheAsyncError) {
  ncclComm_t comm = make_comm("peer-abort");
  if (world().rank == 1) {
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(ncclCommAbort(comm), ncclSuccess);
    return;
  }
  if (world().rank == 0) {
    auto* buf = dev_alloc(64);
    ASSERT_EQ(ncclRecv(buf, 64, ncclUint8, 1, comm, stream_), ncclSuccess);
    ASSERT_EQ(ncclRecv(buf, 64, ncclUint8, 1, comm, stream_), ncclSuccess);  // skipped
    ASSERT_TRUE(stream_synchronize(stream_).ok());
    ncclResult_t async = ncclSuccess;
    ASSERT_EQ(ncclCommGetAsyncError(comm, &async), ncclSuccess);
    EXPECT_TRUE(async == ncclRemoteError || async == ncclSystemError) << async;
    device_free(buf);
  }
  ASSERT_EQ(ncclCommDestroy(comm), ncclSuccess);
}

TEST_F(FakeNccl, DestroyWaitsForQueuedOperations) {
  ncclComm_t comm = make_comm("destroy");
  // A slow kernel ahead of the all-reduce on this rank's stream.
  ASSERT_TRUE(enqueue(stream_, "slow kernel", [] {
                std::this_thread::sleep_for(300ms);
                return OkStatus();
              }).ok());
  auto* x = static_cast<float*>(dev_alloc(4 * 1000));
  for (int i = 0; i < 1000; ++i) x[i] = 2.0f;
  gradpack_fake_nccl_reset_counters();
  ASSERT_EQ(ncclAllReduce(x, x, 1000, ncclFloat32, ncclSum, comm, stream_), ncclSuccess);
  ASSERT_EQ(ncclCommDestroy(comm), ncclSuccess);
  EXPECT_EQ(gradpack_fake_nccl_counters()->all_reduces, 1u);
  EXPECT_EQ(x[999], 2.0f * static_cast<float>(world().size));
  device_free(x);
}

}  // namespace
}  // namespace gradpack::fake

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
