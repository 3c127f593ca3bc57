// SPDX-License-Identifier: Apache-2.0
// libgradpack-nccl.so: loaded with LD_PRELOAD ahead of libnccl, it defines ncclAllReduce and
// runs the eligible calls (config.h) as gradpack's compressed direct all-reduce on the caller's
// stream; every other call, and every call it cannot take, goes to NCCL's own pncclAllReduce
// untouched. It also defines ncclGroupStart/ncclGroupEnd (to know when a call is inside the
// caller's group, which it must not split) and ncclCommDestroy/ncclCommAbort (to free its
// per-communicator state); each forwards to NCCL.
//
// The interposer never crashes the caller: a failure before any message left this rank logs a
// WARN and hands the call to NCCL; after that, peers are already in the compressed exchange and
// the call returns ncclInternalError (with the reason in the WARN).
//
// This is the only file with exported symbols (interposer.map).

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/log.h"
#include "common/settings.h"
#include "net_plugin/interposer/comm_state.h"
#include "net_plugin/interposer/config.h"
#include "net_plugin/interposer/nccl_api.h"

namespace gradpack::interposer {
namespace {

// The caller's ncclGroupStart depth on this thread.
thread_local int user_group_depth = 0;

const Config& config() {
  static Config c;
  static std::once_flag once;
  std::call_once(once, [] {
    const Settings* s = nullptr;
    Status st = Settings::global(&s);
    if (!st.ok()) {
      c.why = "a GRADPACK_* setting is invalid: " + st.message();
      GP_LOG_WARN(kPlugin, "ncclAllReduce interposer off: %s", c.why.c_str());
      return;
    }
    c = load_config(*s);
    if (c.enabled) {
      GP_LOG_INFO(kPlugin,
                  "ncclAllReduce interposer: compressing float sums and averages of at least %llu "
                  "bytes with %s (error feedback %s)",
                  static_cast<unsigned long long>(c.min_bytes), c.canonical.c_str(),
                  c.error_feedback ? "on" : "off");
    } else {
      GP_LOG_INFO(kPlugin, "ncclAllReduce interposer off: %s", c.why.c_str());
    }
  });
  return c;
}

// Per-communicator state. Never destroyed at exit: the CUDA context may be gone by then.
std::mutex states_mu;
std::map<ncclComm_t, std::unique_ptr<CommState>>& states() {
  static auto* m = new std::map<ncclComm_t, std::unique_ptr<CommState>>();
  return *m;
}

void forget(ncclComm_t comm) {
  std::unique_ptr<CommState> gone;
  {
    std::lock_guard<std::mutex> lock(states_mu);
    auto it = states().find(comm);
    if (it == states().end()) return;
    gone = std::move(it->second);
    states().erase(it);
  }
}

bool map_dtype(ncclDataType_t t, gp_dtype_t* out) {
  switch (t) {
    case ncclFloat32:
      *out = GP_FLOAT32;
      return true;
    case ncclFloat16:
      *out = GP_FLOAT16;
      return true;
#if NCCL_VERSION_CODE >= 21000
    case ncclBfloat16:
      *out = GP_BFLOAT16;
      return true;
#endif
    default:
      return false;
  }
}

// The pass-through, or ncclInternalError when NCCL could not be found at all.
ncclResult_t to_nccl(const NcclApi& api, const void* send, void* recv, size_t count,
                     ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                     cudaStream_t stream) {
  if (api.all_reduce == nullptr) {
    GP_LOG_ERROR(kPlugin,
                 "ncclAllReduce interposer: NCCL's pncclAllReduce was not found: is "
                 "libnccl loaded by the application?");
    return ncclInternalError;
  }
  return api.all_reduce(send, recv, count, datatype, op, comm, stream);
}

ncclResult_t all_reduce(const void* send, void* recv, size_t count, ncclDataType_t datatype,
                        ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  std::string missing;
  const NcclApi& api = nccl_api(&missing);
  const Config& cfg = config();
  if (!cfg.enabled || !nccl_api_complete(api)) {
    if (cfg.enabled) {
      static std::once_flag warned;
      std::call_once(warned, [&] {
        GP_LOG_WARN(kPlugin, "ncclAllReduce interposer off: %s", missing.c_str());
      });
    }
    return to_nccl(api, send, recv, count, datatype, op, comm, stream);
  }
  Call call;
  gp_dtype_t dtype = GP_FLOAT32;
  call.float_dtype = map_dtype(datatype, &dtype);
  call.elem_size = call.float_dtype ? (dtype == GP_FLOAT32 ? 4 : 2) : 1;
  call.sum_or_avg = op == ncclSum || op == ncclAvg;
  call.count = count;
  if (api.comm_count(comm, &call.nranks) != ncclSuccess) call.nranks = 1;
  call.in_user_group = user_group_depth > 0;
  const char* why = ineligible(cfg, call);
  if (why == nullptr) {  // only then ask CUDA about the stream (the cheap rules come first)
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) {
      (void)cudaGetLastError();
      capture = cudaStreamCaptureStatusActive;  // unknown: do not risk synchronizing it
    }
    call.capturing = capture != cudaStreamCaptureStatusNone;
    why = ineligible(cfg, call);
  }
  if (why != nullptr) {
    GP_LOG_DEBUG(kPlugin, "ncclAllReduce of %zu elements to NCCL: %s", count, why);
    return to_nccl(api, send, recv, count, datatype, op, comm, stream);
  }

  CommState* state = nullptr;
  {
    std::lock_guard<std::mutex> lock(states_mu);
    auto& slot = states()[comm];
    if (!slot) {
      int rank = 0;
      if (api.comm_user_rank(comm, &rank) != ncclSuccess) {
        states().erase(comm);
        GP_LOG_WARN(kPlugin, "ncclCommUserRank failed: this call goes to NCCL");
        return to_nccl(api, send, recv, count, datatype, op, comm, stream);
      }
      slot = std::make_unique<CommState>(comm, rank, call.nranks, cfg);
    }
    state = slot.get();
  }
  bool issued = false;
  Status st;
  try {
    st = state->all_reduce(api, send, recv, count, dtype, op == ncclAvg, stream, &issued);
  } catch (const std::exception& e) {  // std::bad_alloc and the like: never into NCCL's caller
    st = Internal(std::string("exception: ") + e.what());
  }
  if (st.ok()) return ncclSuccess;
  if (!issued) {
    GP_LOG_WARN(kPlugin,
                "compressed ncclAllReduce of %zu elements failed before sending (%s): "
                "NCCL runs this call",
                count, st.message().c_str());
    return to_nccl(api, send, recv, count, datatype, op, comm, stream);
  }
  GP_LOG_WARN(kPlugin, "compressed ncclAllReduce of %zu elements failed mid-exchange: %s", count,
              st.message().c_str());
  return ncclInternalError;
}

}  // namespace
}  // namespace gradpack::interposer

namespace gi = gradpack::interposer;

extern "C" {

__attribute__((visibility("default"))) ncclResult_t ncclAllReduce(const void* sendbuff,
                                                                  void* recvbuff, size_t count,
                                                                  ncclDataType_t datatype,
                                                                  ncclRedOp_t op, ncclComm_t comm,
                                                                  cudaStream_t stream) {
  return gi::all_reduce(sendbuff, recvbuff, count, datatype, op, comm, stream);
}

__attribute__((visibility("default"))) ncclResult_t ncclGroupStart() {
  const gi::NcclApi& api = gi::nccl_api();
  if (api.group_start == nullptr) return ncclInternalError;
  const ncclResult_t r = api.group_start();
  if (r == ncclSuccess) ++gi::user_group_depth;
  return r;
}

__attribute__((visibility("default"))) ncclResult_t ncclGroupEnd() {
  const gi::NcclApi& api = gi::nccl_api();
  if (api.group_end == nullptr) return ncclInternalError;
  if (gi::user_group_depth > 0) --gi::user_group_depth;
  return api.group_end();
}

__attribute__((visibility("default"))) ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  gi::forget(comm);
  const gi::NcclApi& api = gi::nccl_api();
  if (api.comm_destroy == nullptr) return ncclInternalError;
  return api.comm_destroy(comm);
}

__attribute__((visibility("default"))) ncclResult_t ncclCommAbort(ncclComm_t comm) {
  gi::forget(comm);
  const gi::NcclApi& api = gi::nccl_api();
  if (api.comm_abort == nullptr) return ncclInternalError;
  return api.comm_abort(comm);
}

}  // extern "C"
