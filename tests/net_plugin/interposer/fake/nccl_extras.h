// SPDX-License-Identifier: Apache-2.0
// What libgradpack_fake_nccl.so exports beside NCCL's API, for tests: its counters and a unique
// id made from a rendezvous URL.
#pragma once

#include <nccl.h>

#include <cstdint>

extern "C" {

// Process-wide, updated atomically by the operations as they run (not when they are issued).
struct FakeNcclCounters {
  uint64_t all_reduces;  // all-reduces run
  uint64_t sends;        // sends run (one per ncclSend)
  uint64_t recvs;        // receives run
  uint64_t groups;       // outermost ncclGroupEnd calls, and single operations outside a group
  uint64_t errors;       // operations that failed (the communicator's async error was set)
};
const FakeNcclCounters* gradpack_fake_nccl_counters();
void gradpack_fake_nccl_reset_counters();

// id.internal = url, NUL-terminated: any rendezvous URL (tcp://HOST:PORT, file:///PATH), with an
// optional "#NAME" suffix naming the communicator, so that several share one URL (the store's
// keys are prefixed with NAME). ncclInvalidArgument when it does not fit (127 bytes at most).
ncclResult_t gradpack_fake_nccl_unique_id(const char* url, ncclUniqueId* out);

}  // extern "C"
