// SPDX-License-Identifier: Apache-2.0
// A library that uses NCCL the way a framework's Python extension does: linked to libnccl (here
// a stub, stub_nccl.cc) and opened by the test with dlopen(RTLD_LOCAL), so its NCCL is not in the
// global scope. Built twice, each against its own copy of the stub: two NCCLs in one process.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "../stub_nccl.h"

#define USER_EXPORT extern "C" __attribute__((visibility("default")))

USER_EXPORT int user_group_round_trip() {
  const ncclResult_t a = ncclGroupStart();
  const ncclResult_t b = ncclGroupEnd();
  return a != ncclSuccess ? a : b;
}

// An int32 sum: never compressed, so it must reach this library's own NCCL unchanged.
USER_EXPORT int user_all_reduce_int32() {
  return ncclAllReduce(reinterpret_cast<const void*>(0x1000), reinterpret_cast<void*>(0x2000), 10,
                       ncclInt32, ncclSum, reinterpret_cast<ncclComm_t>(0x3000), nullptr);
}

USER_EXPORT int user_destroy() { return ncclCommDestroy(reinterpret_cast<ncclComm_t>(0x3000)); }

USER_EXPORT StubNcclLog* user_log() { return stub_nccl_log(); }
