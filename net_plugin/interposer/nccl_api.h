// SPDX-License-Identifier: Apache-2.0
// NCCL's own entry points, found at run time: the interposer defines ncclAllReduce (and a few
// more) itself, so it reaches the real ones through NCCL's profiling aliases (pncclAllReduce, ...;
// nccl.h declares one per API function). It never links libnccl: it uses the NCCL of the caller.
//
// Which NCCL is the caller's: a framework often loads libnccl as a dependency of an extension
// opened with RTLD_LOCAL (Python does this), where dlsym(RTLD_DEFAULT) cannot see it; and two
// NCCLs may be loaded at once. So the table is looked up per calling object: first in the
// caller's own dependency tree (dlopen(caller, RTLD_NOLOAD) then dlsym on that handle, which
// searches the object and its dependencies), then in the global scope, then in every loaded
// object that exports pncclAllReduce (the first one; a second one found is named in a warning).
// A lookup that finds nothing is not remembered: the next call looks again.
#pragma once

#include <nccl.h>

#include <string>

namespace gradpack::interposer {

struct NcclApi {
  ncclResult_t (*all_reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                             cudaStream_t) = nullptr;
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t,
                       cudaStream_t) = nullptr;
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*group_start)() = nullptr;
  ncclResult_t (*group_end)() = nullptr;
  ncclResult_t (*comm_count)(const ncclComm_t, int*) = nullptr;
  ncclResult_t (*comm_user_rank)(const ncclComm_t, int*) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;
  // Optional.
  ncclResult_t (*comm_cu_device)(const ncclComm_t, int*) = nullptr;
  const char* (*error_string)(ncclResult_t) = nullptr;
  ncclResult_t (*comm_get_async_error)(ncclComm_t, ncclResult_t*) = nullptr;
  ncclResult_t (*group_simulate_end)(ncclSimInfo_t*) = nullptr;
  // Where the table came from (a path), for logs.
  std::string origin;
};

// The table of the NCCL that code at `caller` (an address inside the calling object, e.g.
// __builtin_return_address(0) of an exported function) uses. Never null: entries NCCL does not
// provide stay null, and *why (if not null) then names the first missing required one.
const NcclApi& nccl_api_for(const void* caller, std::string* why = nullptr);
// True when every entry compressed calls need was found.
bool nccl_api_complete(const NcclApi& api);

}  // namespace gradpack::interposer
