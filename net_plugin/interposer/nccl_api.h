// SPDX-License-Identifier: Apache-2.0
// NCCL's own entry points, resolved at run time: the interposer defines ncclAllReduce (and a few
// more) itself, so it reaches the real ones through NCCL's profiling aliases (pncclAllReduce, ...)
// or, failing that, the next definition after this library (dlsym RTLD_NEXT). The interposer
// never links libnccl: it uses the one the application loaded.
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
  const char* (*error_string)(ncclResult_t) = nullptr;
  ncclResult_t (*comm_get_async_error)(ncclComm_t, ncclResult_t*) = nullptr;
};

// The table, resolved on first use (thread-safe). Entries NCCL does not provide stay null; *why
// (if not null) names the first missing one. all_reduce, comm_destroy and comm_abort are what the
// pass-through needs; the rest only compressed calls.
const NcclApi& nccl_api(std::string* why = nullptr);
// True when every entry compressed calls need was found.
bool nccl_api_complete(const NcclApi& api);

}  // namespace gradpack::interposer
