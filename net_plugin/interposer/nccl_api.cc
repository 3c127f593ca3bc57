// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/nccl_api.h"

#include <dlfcn.h>

#include <mutex>

namespace gradpack::interposer {

namespace {

// The profiling alias first (the interposer defines none of those, so whichever library exports
// it is NCCL), then the next definition of the plain name after this library.
template <typename Fn>
void resolve(Fn* out, const char* alias, const char* name, std::string* missing) {
  void* sym = dlsym(RTLD_DEFAULT, alias);
  if (sym == nullptr) sym = dlsym(RTLD_NEXT, name);
  *out = reinterpret_cast<Fn>(sym);
  if (sym == nullptr && missing->empty()) missing->assign(name);
}

}  // namespace

const NcclApi& nccl_api(std::string* why) {
  static NcclApi api;
  static std::string missing;
  static std::once_flag once;
  std::call_once(once, [] {
    resolve(&api.all_reduce, "pncclAllReduce", "ncclAllReduce", &missing);
    resolve(&api.comm_destroy, "pncclCommDestroy", "ncclCommDestroy", &missing);
    resolve(&api.comm_abort, "pncclCommAbort", "ncclCommAbort", &missing);
    resolve(&api.send, "pncclSend", "ncclSend", &missing);
    resolve(&api.recv, "pncclRecv", "ncclRecv", &missing);
    resolve(&api.group_start, "pncclGroupStart", "ncclGroupStart", &missing);
    resolve(&api.group_end, "pncclGroupEnd", "ncclGroupEnd", &missing);
    resolve(&api.comm_count, "pncclCommCount", "ncclCommCount", &missing);
    resolve(&api.comm_user_rank, "pncclCommUserRank", "ncclCommUserRank", &missing);
    // Optional: a message for NCCL's errors, and polling of nonblocking communicators.
    std::string optional;
    resolve(&api.error_string, "pncclGetErrorString", "ncclGetErrorString", &optional);
    resolve(&api.comm_get_async_error, "pncclCommGetAsyncError", "ncclCommGetAsyncError",
            &optional);
  });
  if (why) *why = missing.empty() ? std::string() : "NCCL does not export " + missing;
  return api;
}

bool nccl_api_complete(const NcclApi& api) {
  return api.all_reduce && api.send && api.recv && api.group_start && api.group_end &&
         api.comm_count && api.comm_user_rank && api.comm_destroy && api.comm_abort;
}

}  // namespace gradpack::interposer
