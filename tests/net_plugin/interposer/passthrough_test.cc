// SPDX-License-Identifier: Apache-2.0
// libgradpack-nccl.so in front of a fake NCCL (stub_nccl.cc): what it does not compress reaches
// NCCL with the caller's arguments and NCCL's result comes back; groups, destroy and abort are
// forwarded. Runs with GRADPACK_COMPRESS=q8 and GRADPACK_MIN_BYTES=4096 (tests/net_plugin/interposer/
// CMakeLists.txt), so the size and dtype rules are exercised with compression on.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <nccl.h>

#include "stub_nccl.h"

namespace {

// Distinct non-null values the fake never dereferences.
const void* const kSend = reinterpret_cast<const void*>(0x1000);
void* const kRecv = reinterpret_cast<void*>(0x2000);
ncclComm_t const kComm = reinterpret_cast<ncclComm_t>(0x3000);
// A valid handle: on a machine with a GPU the interposer may ask CUDA about it.
cudaStream_t const kStream = cudaStreamPerThread;

void expect_forwarded(size_t count, ncclDataType_t dtype, ncclRedOp_t op) {
  StubNcclLog* l = stub_nccl_log();
  const int before = l->all_reduce_calls;
  EXPECT_EQ(ncclAllReduce(kSend, kRecv, count, dtype, op, kComm, kStream), ncclSuccess);
  EXPECT_EQ(l->all_reduce_calls, before + 1);
  EXPECT_EQ(l->send, kSend);
  EXPECT_EQ(l->recv, kRecv);
  EXPECT_EQ(l->count, count);
  EXPECT_EQ(l->dtype, dtype);
  EXPECT_EQ(l->op, op);
  EXPECT_EQ(l->comm, kComm);
  EXPECT_EQ(l->stream, kStream);
}

TEST(InterposerPassThrough, IneligibleCallsReachNcclUnchanged) {
  expect_forwarded(100, ncclFloat32, ncclSum);      // under GRADPACK_MIN_BYTES
  expect_forwarded(1 << 20, ncclInt32, ncclSum);    // not a float type
  expect_forwarded(1 << 20, ncclFloat32, ncclMax);  // not sum or avg
  expect_forwarded(1 << 20, ncclFloat64, ncclSum);  // not a compressed type
  stub_nccl_log()->nranks = 1;
  expect_forwarded(1 << 20, ncclFloat32, ncclSum);  // one rank
  stub_nccl_log()->nranks = 2;
}

TEST(InterposerPassThrough, NcclResultsComeBack) {
  stub_nccl_log()->result = ncclInvalidUsage;
  EXPECT_EQ(ncclAllReduce(kSend, kRecv, 10, ncclFloat32, ncclSum, kComm, kStream),
            ncclInvalidUsage);
  stub_nccl_log()->result = ncclSuccess;
}

TEST(InterposerPassThrough, CallsInsideTheCallersGroupGoToNccl) {
  StubNcclLog* l = stub_nccl_log();
  const int starts = l->group_starts, ends = l->group_ends;
  ASSERT_EQ(ncclGroupStart(), ncclSuccess);
  expect_forwarded(1 << 20, ncclFloat32, ncclSum);
  ASSERT_EQ(ncclGroupEnd(), ncclSuccess);
  EXPECT_EQ(l->group_starts, starts + 1);
  EXPECT_EQ(l->group_ends, ends + 1);
}

TEST(InterposerPassThrough, EligibleCallWithoutADeviceGoesToNccl) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    GTEST_SKIP() << "a CUDA device is present: an eligible call would run the compressed path "
                    "against the fake NCCL (tests/gpu/check.sh covers it with the real one)";
  }
  // 4 MiB of fp32 sum with q8 on: eligible by the rules, but the stream cannot be queried
  // without a device, so the interposer must not touch it.
  expect_forwarded(1 << 20, ncclFloat32, ncclSum);
  expect_forwarded(1 << 20, ncclBfloat16, ncclAvg);
}

TEST(InterposerPassThrough, SimulateEndAndAsyncErrorAreForwarded) {
  StubNcclLog* l = stub_nccl_log();
  const int sims = l->simulate_ends, queries = l->async_error_queries;
  ASSERT_EQ(ncclGroupStart(), ncclSuccess);
  ncclSimInfo_t info = NCCL_SIM_INFO_INITIALIZER;
  EXPECT_EQ(ncclGroupSimulateEnd(&info), ncclSuccess);
  EXPECT_EQ(l->simulate_ends, sims + 1);
  // The group is over: a call now is not inside one (it would be forwarded either way here, but
  // the depth must be back to 0 for the next test's compressed calls on a GPU machine).
  ncclResult_t async = ncclInternalError;
  EXPECT_EQ(ncclCommGetAsyncError(kComm, &async), ncclSuccess);
  EXPECT_EQ(async, ncclSuccess);
  EXPECT_EQ(l->async_error_queries, queries + 1);
}

TEST(InterposerPassThrough, DestroyAndAbortAreForwarded) {
  StubNcclLog* l = stub_nccl_log();
  const int destroys = l->destroys, aborts = l->aborts;
  EXPECT_EQ(ncclCommDestroy(kComm), ncclSuccess);
  EXPECT_EQ(ncclCommAbort(kComm), ncclSuccess);
  EXPECT_EQ(l->destroys, destroys + 1);
  EXPECT_EQ(l->aborts, aborts + 1);
}

}  // namespace
