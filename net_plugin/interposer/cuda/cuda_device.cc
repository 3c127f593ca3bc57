// SPDX-License-Identifier: Apache-2.0
// The real Device (device.h): the CUDA runtime, the codecs of compression/cuda and the
// accumulator kernels. Nothing here waits for the device except synchronize(); launches are
// checked with a peek (cudaPeekAtLastError) so an error the application left pending stays there.
#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "compression/cuda/codec_cuda.h"
#include "net_plugin/interposer/cuda/accum_kernels.h"
#include "net_plugin/interposer/device.h"

namespace gradpack::interposer {
namespace {

Status failed(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return OkStatus();
  return Status(Code::kSystem, std::string("CUDA: ") + what + ": " + cudaGetErrorName(err) + " (" +
                                   cudaGetErrorString(err) + ")");
}

std::string version_text(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

class CudaScratch final : public Scratch {
 public:
  cuda::Workspace ws;
};

// Device memory for GPUs without stream-ordered pools (cudaDevAttrMemoryPoolsSupported 0: some
// virtualised or older setups). cudaMalloc works there, but cudaFree synchronises the device, so a
// freed buffer waits in `pending_` behind an event recorded on its stream and is released by a
// later alloc() once that event has completed: the implicit synchronisation of cudaFree then costs
// little (the work that used the buffer is done), and it never happens inside free() or while a
// capture is recording the freeing stream. A buffer freed on a capturing stream is kept for the
// life of the process (the interposer allocates and frees outside captures, so this is rare).
class DeferredFrees {
 public:
  void add(void* ptr) { owned_.insert(ptr); }
  bool owns(void* ptr) const { return owned_.count(ptr) != 0; }

  void release_later(void* ptr, cudaStream_t stream) {
    owned_.erase(ptr);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    cudaEvent_t event = nullptr;
    if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess ||
        capture != cudaStreamCaptureStatusNone ||
        cudaEventCreateWithFlags(&event, cudaEventDisableTiming) != cudaSuccess) {
      return;  // kept: see the class comment
    }
    if (cudaEventRecord(event, stream) != cudaSuccess) {
      (void)cudaEventDestroy(event);
      return;
    }
    pending_.emplace_back(ptr, event);
  }

  // Frees the buffers whose streams have passed their event; never waits.
  void release_finished() {
    std::vector<std::pair<void*, cudaEvent_t>> still;
    for (const auto& [ptr, event] : pending_) {
      if (cudaEventQuery(event) == cudaSuccess) {
        (void)cudaFree(ptr);
        (void)cudaEventDestroy(event);
      } else {
        still.emplace_back(ptr, event);
      }
    }
    pending_ = std::move(still);
  }

 private:
  std::unordered_set<void*> owned_;
  std::vector<std::pair<void*, cudaEvent_t>> pending_;
};

class CudaDevice final : public Device {
 public:
  const char* name() const override { return "cuda"; }

  Status check_runtime() override;

  Status get_device(int* device) override { return failed(cudaGetDevice(device), "cudaGetDevice"); }
  Status set_device(int device) override { return failed(cudaSetDevice(device), "cudaSetDevice"); }

  Status is_capturing(cudaStream_t stream, bool* capturing) override {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    GP_RETURN_IF_ERROR(failed(cudaStreamIsCapturing(stream, &status), "cudaStreamIsCapturing"));
    // An invalidated capture is still a capture: anything enqueued now would fail with it.
    *capturing = status != cudaStreamCaptureStatusNone;
    return OkStatus();
  }

  Status alloc(size_t bytes, cudaStream_t stream, void** out) override;
  void free(void* ptr, cudaStream_t stream) override;
  Status alloc_host(size_t bytes, void** out) override {
    return failed(cudaMallocHost(out, bytes), "cudaMallocHost");
  }

  Status memset(void* dst, int value, size_t bytes, cudaStream_t stream) override {
    return failed(cudaMemsetAsync(dst, value, bytes, stream), "cudaMemsetAsync");
  }
  Status copy(void* dst, const void* src, size_t bytes, cudaStream_t stream) override {
    // cudaMemcpyDefault: unified addressing tells device from pinned host memory.
    return failed(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream), "cudaMemcpyAsync");
  }

  Status event_create(cudaEvent_t* out) override {
    return failed(cudaEventCreateWithFlags(out, cudaEventDisableTiming),
                  "cudaEventCreateWithFlags");
  }
  void event_destroy(cudaEvent_t event) override { (void)cudaEventDestroy(event); }
  Status record(cudaEvent_t event, cudaStream_t stream, bool external) override {
    if (external)
      return failed(cudaEventRecordWithFlags(event, stream, cudaEventRecordExternal),
                    "cudaEventRecordWithFlags(cudaEventRecordExternal)");
    return failed(cudaEventRecord(event, stream), "cudaEventRecord");
  }
  Status wait(cudaStream_t stream, cudaEvent_t event, bool external) override {
    return failed(cudaStreamWaitEvent(stream, event, external ? cudaEventWaitExternal : 0),
                  "cudaStreamWaitEvent");
  }
  Status query(cudaEvent_t event, bool* done) override;
  Status synchronize(cudaEvent_t event) override {
    return failed(cudaEventSynchronize(event), "cudaEventSynchronize");
  }

  Status make_scratch(std::unique_ptr<Scratch>* out) override {
    *out = std::make_unique<CudaScratch>();
    return OkStatus();
  }
  size_t max_encoded_bytes(const CodecSpec& spec, size_t count) override {
    // q<b> frames have the same size for every input dtype.
    if (spec.kind != CodecKind::kQuant) return 0;
    return cuda::max_encoded_bytes(spec, count, GP_FLOAT32);
  }
  Status encode(Scratch& scratch, const EncodeArgs& args, cudaStream_t stream) override;
  Status decode(Scratch& scratch, const DecodeArgs& args, cudaStream_t stream) override;
  size_t check_bytes() const override { return cuda::decode_check_bytes(); }
  Status reset_check(void* check, cudaStream_t stream) override {
    return cuda::reset_decode_check(check, stream);
  }
  Status read_check(const void* host_copy) override { return cuda::read_decode_check(host_copy); }
  Status widen(const void* src, gp_dtype_t dtype, float* dst, size_t n, bool add,
               cudaStream_t stream) override {
    return coll::cuda::widen(src, dtype, dst, n, add, stream);
  }
  Status narrow(const float* src, void* dst, gp_dtype_t dtype, size_t n, float scale,
                cudaStream_t stream) override {
    return coll::cuda::narrow(src, dst, dtype, n, scale, stream);
  }

 private:
  Status pools_supported(bool* yes);

  std::mutex mu_;
  std::unordered_map<int, bool> pools_;  // device -> cudaDevAttrMemoryPoolsSupported
  DeferredFrees deferred_;
};

Status CudaDevice::check_runtime() {
  int driver = 0;
  int runtime = 0;
  GP_RETURN_IF_ERROR(failed(cudaDriverGetVersion(&driver), "cudaDriverGetVersion"));
  GP_RETURN_IF_ERROR(failed(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion"));
  if (driver == 0)
    return Unsupported("no CUDA driver is installed (libgradpack-nccl.so was built with CUDA " +
                       version_text(runtime) + ")");
  // Across a major version the runtime refuses to start (every call, stream queries included,
  // fails with cudaErrorInsufficientDriver). Within one, CUDA's minor version compatibility runs
  // the runtime on an older driver, so that is only worth a warning.
  if (driver / 1000 < runtime / 1000)
    return Unsupported("the CUDA driver supports CUDA " + version_text(driver) +
                       " but libgradpack-nccl.so was built with the CUDA " + version_text(runtime) +
                       " runtime: build libgradpack-nccl.so with the CUDA version of the "
                       "framework (e.g. torch.version.cuda), or update the NVIDIA driver");
  if (driver < runtime)
    GP_LOG_WARN(kPlugin,
                "the CUDA driver (CUDA %s) is older than the runtime libgradpack-nccl.so was built "
                "with (CUDA %s); running on CUDA minor version compatibility",
                version_text(driver).c_str(), version_text(runtime).c_str());
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();  // our own probe's error, before any work of the application
    return Unsupported("the CUDA runtime sees no device");
  }
  return OkStatus();
}

Status CudaDevice::pools_supported(bool* yes) {
  int device = 0;
  GP_RETURN_IF_ERROR(failed(cudaGetDevice(&device), "cudaGetDevice"));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_.find(device);
  if (it == pools_.end()) {
    int value = 0;
    GP_RETURN_IF_ERROR(
        failed(cudaDeviceGetAttribute(&value, cudaDevAttrMemoryPoolsSupported, device),
               "cudaDeviceGetAttribute(cudaDevAttrMemoryPoolsSupported)"));
    it = pools_.emplace(device, value != 0).first;
  }
  *yes = it->second;
  return OkStatus();
}

Status CudaDevice::alloc(size_t bytes, cudaStream_t stream, void** out) {
  *out = nullptr;
  if (bytes == 0) return OkStatus();
  bool pools = false;
  GP_RETURN_IF_ERROR(pools_supported(&pools));
  if (pools) return failed(cudaMallocAsync(out, bytes, stream), "cudaMallocAsync");
  std::lock_guard<std::mutex> lock(mu_);
  deferred_.release_finished();
  GP_RETURN_IF_ERROR(failed(cudaMalloc(out, bytes), "cudaMalloc"));
  deferred_.add(*out);
  return OkStatus();
}

void CudaDevice::free(void* ptr, cudaStream_t stream) {
  if (ptr == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (deferred_.owns(ptr)) {
      deferred_.release_later(ptr, stream);
      return;
    }
  }
  // free() has no Status to give: a failure here (a context already lost) leaves the memory to
  // the process's end, which is all that could be done anyway.
  if (const cudaError_t err = cudaFreeAsync(ptr, stream); err != cudaSuccess)
    GP_LOG_WARN(kPlugin, "cudaFreeAsync: %s", cudaGetErrorString(err));
}

Status CudaDevice::query(cudaEvent_t event, bool* done) {
  // "Not ready" is no error, but some runtimes record it as the thread's last error. Clear it
  // then, and only when nothing was pending before, so no error of the application is consumed.
  const cudaError_t before = cudaPeekAtLastError();
  const cudaError_t err = cudaEventQuery(event);
  if (err == cudaErrorNotReady) {
    if (before == cudaSuccess && cudaPeekAtLastError() == cudaErrorNotReady)
      (void)cudaGetLastError();
    *done = false;
    return OkStatus();
  }
  GP_RETURN_IF_ERROR(failed(err, "cudaEventQuery"));
  *done = true;
  return OkStatus();
}

Status CudaDevice::encode(Scratch& scratch, const EncodeArgs& args, cudaStream_t stream) {
  auto* s = dynamic_cast<CudaScratch*>(&scratch);
  if (s == nullptr) return Internal("encode with a scratch this device did not make");
  if (args.spec == nullptr) return InvalidArgument("encode without a codec spec");
  if (args.spec->kind != CodecKind::kQuant)
    return Unsupported("codec " + args.spec->canonical() +
                       " has no host-wait-free GPU encoder (q<b> has)");
  size_t written = 0;
  GP_RETURN_IF_ERROR(cuda::encode(*args.spec, args.in, args.dtype, args.count, args.residual,
                                  args.call_index, s->ws, args.frame, args.frame_bytes, &written,
                                  stream));
  if (written != args.frame_bytes)
    return Internal("q<b> frame of " + std::to_string(written) + " bytes, expected " +
                    std::to_string(args.frame_bytes));
  return OkStatus();
}

Status CudaDevice::decode(Scratch& scratch, const DecodeArgs& args, cudaStream_t stream) {
  (void)scratch;  // quant_decode needs none: its check is the caller's
  cuda::QuantDecodeArgs a;
  a.frame = args.frame;
  a.frame_bytes = args.frame_bytes;
  a.expected_header = args.expected_header;
  a.out = args.out;
  a.count = args.count;
  a.dtype = args.dtype;
  a.accumulate = args.accumulate;
  a.scale = args.scale;
  a.check = args.check;
  return cuda::quant_decode(a, stream);
}

}  // namespace

// Never destroyed: the CUDA runtime may already be torn down when static destructors run, and the
// process's memory goes with it anyway.
Device& device() {
  static CudaDevice* const instance = new CudaDevice();
  return *instance;
}

}  // namespace gradpack::interposer
