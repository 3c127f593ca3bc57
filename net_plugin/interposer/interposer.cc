// SPDX-License-Identifier: Apache-2.0
// libgradpack-nccl.so: loaded with LD_PRELOAD ahead of libnccl, it defines ncclAllReduce and
// runs the calls every rank agrees to compress (comm_state.h) as gradpack's compressed direct
// all-reduce on the caller's stream; every other call goes to NCCL's own pncclAllReduce
// untouched. It also defines ncclGroupStart/ncclGroupEnd/ncclGroupSimulateEnd (to know when a
// call is inside the caller's group, which it must not split), ncclCommDestroy/ncclCommAbort (to
// release its per-communicator state) and ncclCommGetAsyncError (to report a bad frame the way
// NCCL reports its own asynchronous errors); each forwards to NCCL. gradpack_nccl.h's functions
// let a framework key residuals itself.
//
// The interposer never crashes the caller and never lets ranks part ways: a rank that cannot or
// will not compress votes so at the shape's agreement and every rank then leaves the call to
// NCCL; after the agreement a failure is returned as ncclInternalError (with the reason in a
// WARN), as NCCL returns its own.
//
// This is the only file with exported symbols (interposer.map). Everything CUDA goes through
// device.h, so the same file builds against the CPU fake (tests/net_plugin/interposer/fake/).

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/log.h"
#include "common/settings.h"
#include "gradpack/gradpack_nccl.h"
#include "net_plugin/interposer/comm_state.h"
#include "net_plugin/interposer/config.h"
#include "net_plugin/interposer/device.h"
#include "net_plugin/interposer/nccl_api.h"
#include "net_plugin/interposer/release.h"

namespace gradpack::interposer {
namespace {

// The caller's ncclGroupStart depth on this thread.
thread_local int user_group_depth = 0;
// gradpackNcclSetResidualKey's key for this thread's next ncclAllReduce.
thread_local uint64_t next_residual_key = 0;

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
                  "bytes with %s (error feedback %s, %d-bit residuals) on %s",
                  static_cast<unsigned long long>(c.min_bytes), c.canonical.c_str(),
                  c.error_feedback ? "on" : "off", c.residual_bits, device().name());
    } else {
      GP_LOG_INFO(kPlugin, "ncclAllReduce interposer off: %s", c.why.c_str());
    }
  });
  return c;
}

// Whether this process's CUDA runtime works at all (once; a WARN says why not).
bool runtime_ok() {
  static bool ok = false;
  static std::once_flag once;
  std::call_once(once, [] {
    Status st = device().check_runtime();
    ok = st.ok();
    if (!ok) {
      GP_LOG_WARN(kPlugin,
                  "ncclAllReduce interposer off: %s. Every rank passes its calls to NCCL; a job "
                  "whose ranks differ here must fix this first",
                  st.message().c_str());
    }
  });
  return ok;
}

// Per-communicator state, shared with the calls in flight. Never destroyed at exit: the CUDA
// context may be gone by then.
std::mutex states_mu;
std::map<ncclComm_t, std::shared_ptr<CommState>>& states() {
  static auto* m = new std::map<ncclComm_t, std::shared_ptr<CommState>>();
  return *m;
}

std::shared_ptr<CommState> find_state(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(states_mu);
  auto it = states().find(comm);
  return it == states().end() ? nullptr : it->second;
}

std::shared_ptr<CommState> take_state(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(states_mu);
  auto it = states().find(comm);
  if (it == states().end()) return nullptr;
  std::shared_ptr<CommState> s = std::move(it->second);
  states().erase(it);
  return s;
}

std::shared_ptr<CommState> state_for(const NcclApi& api, ncclComm_t comm, int nranks) {
  std::lock_guard<std::mutex> lock(states_mu);
  auto& slot = states()[comm];
  if (slot) return slot;
  int rank = 0;
  int dev = -1;
  if (api.comm_user_rank(comm, &rank) != ncclSuccess) {
    states().erase(comm);
    return nullptr;
  }
  // The communicator's device; without ncclCommCuDevice, the caller's current one.
  if (api.comm_cu_device == nullptr || api.comm_cu_device(comm, &dev) != ncclSuccess) {
    if (!device().get_device(&dev).ok()) dev = 0;
  }
  slot = std::make_shared<CommState>(api, comm, rank, nranks, dev, config());
  return slot;
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

// Whether `stream` is being captured. A runtime that cannot tell is said once and taken as
// capturing: nothing is then allocated or waited for on it.
bool capturing(cudaStream_t stream) {
  bool cap = false;
  Status st = device().is_capturing(stream, &cap);
  if (st.ok()) return cap;
  static std::once_flag warned;
  std::call_once(warned, [&] {
    GP_LOG_WARN(kPlugin,
                "ncclAllReduce interposer: cannot tell whether a stream is being captured (%s); "
                "such calls are treated as captured (a CUDA runtime newer than the driver does "
                "this: build libgradpack-nccl.so with the framework's CUDA version)",
                st.message().c_str());
  });
  return true;
}

void note_group_fallback() {
  static std::once_flag first;
  bool logged = false;
  std::call_once(first, [&] {
    logged = true;
    GP_LOG_INFO(kPlugin,
                "ncclAllReduce interposer: a call inside the caller's ncclGroupStart/End goes "
                "to NCCL (gradpack never splits the caller's group); later ones are logged at "
                "debug");
  });
  if (!logged) GP_LOG_DEBUG(kPlugin, "ncclAllReduce inside the caller's group: to NCCL");
}

ncclResult_t compressed(const NcclApi& api, const Call& call, CallArgs args, ncclComm_t comm,
                        bool* to_nccl_instead) {
  *to_nccl_instead = false;
  std::shared_ptr<CommState> state = state_for(api, comm, call.nranks);
  if (!state) {
    *to_nccl_instead = true;  // ncclCommUserRank failed: NCCL will say what is wrong
    return ncclSuccess;
  }
  DeviceGuard guard(state->device_id());
  if (!guard.status().ok()) {
    GP_LOG_WARN(kPlugin, "ncclAllReduce interposer: cannot switch to the communicator's device: %s",
                guard.status().message().c_str());
    return ncclInvalidUsage;
  }
  args.capturing = capturing(args.stream);
  Path path = state->path(args.count, args.dtype);
  if (path == Path::kUnknown) {
    if (args.capturing) {
      // No host wait may happen inside a capture; every rank captures the same calls.
      GP_LOG_INFO(kPlugin,
                  "ncclAllReduce of %zu elements under graph capture before any uncaptured call "
                  "of that size: NCCL runs it",
                  args.count);
      *to_nccl_instead = true;
      return ncclSuccess;
    }
    Status st = state->agree(args.count, args.dtype, local_ok(config(), call), args.stream, &path);
    if (!st.ok()) {
      GP_LOG_WARN(kPlugin, "ncclAllReduce interposer: agreement failed: %s", st.message().c_str());
      return ncclInternalError;
    }
  }
  if (path == Path::kNccl) {
    *to_nccl_instead = true;
    return ncclSuccess;
  }
  Status st = state->all_reduce(args);
  if (st.ok()) return ncclSuccess;
  GP_LOG_WARN(kPlugin, "compressed ncclAllReduce of %zu elements failed: %s", args.count,
              st.message().c_str());
  return ncclInternalError;
}

ncclResult_t all_reduce(const void* caller, const void* send, void* recv, size_t count,
                        ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                        cudaStream_t stream) {
  release_due();
  const uint64_t key = std::exchange(next_residual_key, 0);
  std::string missing;
  const NcclApi& api = nccl_api_for(caller, &missing);
  if (!nccl_api_complete(api)) {
    if (!missing.empty()) {
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
  if (const char* why = candidate(call)) {
    GP_LOG_DEBUG(kPlugin, "ncclAllReduce of %zu elements to NCCL: %s", count, why);
    return to_nccl(api, send, recv, count, datatype, op, comm, stream);
  }
  if (user_group_depth > 0) {
    note_group_fallback();
    return to_nccl(api, send, recv, count, datatype, op, comm, stream);
  }
  // A runtime that cannot work at all (checked once, said once) passes everything through.
  if (!runtime_ok()) return to_nccl(api, send, recv, count, datatype, op, comm, stream);
  CallArgs args{send, recv, count, dtype, op == ncclAvg, key, stream, false};
  bool pass = false;
  ncclResult_t r = ncclInternalError;
  try {
    r = compressed(api, call, args, comm, &pass);
  } catch (const std::exception& e) {  // std::bad_alloc and the like: never into NCCL's caller
    GP_LOG_WARN(kPlugin, "compressed ncclAllReduce failed: exception: %s", e.what());
    return ncclInternalError;
  }
  if (pass) return to_nccl(api, send, recv, count, datatype, op, comm, stream);
  return r;
}

// Forgets the communicator's state: later calls find none; calls in flight keep theirs alive.
void forget(ncclComm_t comm, bool aborting) {
  std::shared_ptr<CommState> state = take_state(comm);
  if (state && aborting) state->abort();
  state.reset();  // its memory goes once its last call has completed (release.h)
  release_due();
}

}  // namespace
}  // namespace gradpack::interposer

namespace gi = gradpack::interposer;

#define GP_EXPORT extern "C" __attribute__((visibility("default"), noinline))
#define GP_CALLER __builtin_return_address(0)

GP_EXPORT ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                     ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                                     cudaStream_t stream) {
  return gi::all_reduce(GP_CALLER, sendbuff, recvbuff, count, datatype, op, comm, stream);
}

GP_EXPORT ncclResult_t ncclGroupStart() {
  const gi::NcclApi& api = gi::nccl_api_for(GP_CALLER);
  if (api.group_start == nullptr) return ncclInternalError;
  const ncclResult_t r = api.group_start();
  if (r == ncclSuccess) ++gi::user_group_depth;
  return r;
}

GP_EXPORT ncclResult_t ncclGroupEnd() {
  const gi::NcclApi& api = gi::nccl_api_for(GP_CALLER);
  if (api.group_end == nullptr) return ncclInternalError;
  if (gi::user_group_depth > 0) --gi::user_group_depth;
  return api.group_end();
}

// NCCL 2.22+: ends the group like ncclGroupEnd, estimating instead of running it.
GP_EXPORT ncclResult_t ncclGroupSimulateEnd(ncclSimInfo_t* simInfo) {
  const gi::NcclApi& api = gi::nccl_api_for(GP_CALLER);
  if (api.group_simulate_end == nullptr) return ncclInternalError;
  if (gi::user_group_depth > 0) --gi::user_group_depth;
  return api.group_simulate_end(simInfo);
}

GP_EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  const gi::NcclApi& api = gi::nccl_api_for(GP_CALLER);
  if (api.comm_destroy == nullptr) return ncclInternalError;
  gi::forget(comm, false);
  return api.comm_destroy(comm);
}

// NCCL's abort first, then the state is dropped without waiting for anything: a watchdog aborts
// from its own thread exactly when the device or a peer is stuck.
GP_EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) {
  const gi::NcclApi& api = gi::nccl_api_for(GP_CALLER);
  if (api.comm_abort == nullptr) return ncclInternalError;
  if (std::shared_ptr<gi::CommState> s = gi::find_state(comm)) s->abort();
  const ncclResult_t r = api.comm_abort(comm);
  gi::forget(comm, true);
  return r;
}

GP_EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  const gi::NcclApi& api = gi::nccl_api_for(GP_CALLER);
  if (api.comm_get_async_error == nullptr) return ncclInternalError;
  const ncclResult_t r = api.comm_get_async_error(comm, asyncError);
  if (r != ncclSuccess || asyncError == nullptr || *asyncError != ncclSuccess) return r;
  if (std::shared_ptr<gi::CommState> s = gi::find_state(comm); s && !s->async_error().ok()) {
    *asyncError = ncclInternalError;
  }
  return r;
}

GP_EXPORT void gradpackNcclSetResidualKey(uint64_t key) { gi::next_residual_key = key; }

GP_EXPORT ncclResult_t gradpackNcclResetResiduals(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  if (std::shared_ptr<gi::CommState> s = gi::find_state(comm)) s->reset_residuals();
  return ncclSuccess;
}
