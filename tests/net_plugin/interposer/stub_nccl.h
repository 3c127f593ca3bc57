// SPDX-License-Identifier: Apache-2.0
// A stand-in for libnccl in the interposer's pass-through and RTLD_LOCAL tests: NCCL's pnccl* entry points that
// record their arguments and return what the test asks.
#pragma once

#include <nccl.h>

#include <cstddef>

struct StubNcclLog {
  int all_reduce_calls = 0;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  ncclDataType_t dtype = ncclInt8;
  ncclRedOp_t op = ncclSum;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int group_starts = 0;
  int group_ends = 0;
  int destroys = 0;
  int aborts = 0;
  int simulate_ends = 0;
  int async_error_queries = 0;
  int nranks = 2;                     // what pncclCommCount answers
  ncclResult_t result = ncclSuccess;  // what pncclAllReduce returns
};

extern "C" StubNcclLog* stub_nccl_log();
