// SPDX-License-Identifier: Apache-2.0
// Every CUDA call the ncclAllReduce interposer makes goes through this interface: memory, streams,
// events and the kernels (codecs and the fp32 accumulator). Two implementations:
//   - the real one (net_plugin/interposer/cuda/cuda_device.cc), in libgradpack-nccl.so;
//   - a CPU fake (tests/net_plugin/interposer/fake/): device memory is host memory, a stream is a
//     worker thread running its work in order, kernels are the CPU codecs, and every host wait is
//     counted. The interposer is built once more against it, so its control flow runs in CI.
// Whichever is linked defines device().
//
// Rules the interposer keeps, and the reasons:
//   - Nothing on the call path waits for the device: no stream or device synchronisation, no
//     blocking copy. The only host wait is synchronize(), used once per new call shape (the
//     agreement, comm_state.h) and never while the stream is being captured.
//   - Memory is stream-ordered: alloc() and free() never wait for the device (cudaMallocAsync /
//     cudaFreeAsync), so growing a buffer or dropping a residual never stalls other work or
//     invalidates another thread's graph capture. Nothing is allocated while capturing.
//   - Errors of the application are not consumed: launches are checked with a peek, not
//     cudaGetLastError.
//   - A bad received frame is not a host wait either: decodes lower a sticky DecodeCheck in
//     device memory (and leave their output untouched), which the interposer copies back with the
//     call's last op and reads at a later call, once the call's event has completed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "compression/spec.h"
#include "gradpack/gradpack.h"

namespace gradpack::interposer {

// Codec scratch reused by the kernel launches of one communicator state (whose calls are ordered
// by its events, so one scratch serves all its streams). Destroyed only once no queued work uses
// it; its memory is released without waiting for the device.
class Scratch {
 public:
  virtual ~Scratch() = default;
};

struct EncodeArgs {
  const CodecSpec* spec = nullptr;  // q<b> only
  const void* in = nullptr;         // count values of dtype
  gp_dtype_t dtype = GP_FLOAT32;
  size_t count = 0;
  float* residual = nullptr;  // fp32 error feedback (count values, updated), or null
  uint64_t call_index = 0;    // stochastic rounding stream, as Codec's encode call number
  void* frame = nullptr;
  size_t frame_bytes = 0;  // exactly max_encoded_bytes(spec, count): q<b> frames have one size
};

struct DecodeArgs {
  const void* frame = nullptr;
  size_t frame_bytes = 0;
  // The header the frame must carry, built on the host (q<b> headers follow from spec, count and
  // the sender's input dtype); the kernel compares the received one with it.
  const uint8_t* expected_header = nullptr;  // kFrameHeaderBytes (compression/wire.h)
  void* out = nullptr;
  size_t count = 0;
  gp_dtype_t dtype = GP_FLOAT32;  // of out
  bool accumulate = false;        // out += decoded, in fp32, rounded once
  // Multiplies the decoded value in fp32 before it is rounded to dtype (the 1/n of an average,
  // applied in the final decode: no second rounding, no fp16 overflow of the sum). Only without
  // accumulate.
  float scale = 1.0f;
  // Sticky check (device memory, check_bytes()): a bad frame lowers it and writes nothing; once
  // lowered, later decodes against it write nothing either.
  void* check = nullptr;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const char* name() const = 0;  // "cuda", "fake"

  // Whether the runtime can be used at all (the real one: a driver older than the runtime
  // libgradpack-nccl.so was built with makes every stream query fail). Not ok: *why says what
  // to change. Called once per process.
  virtual Status check_runtime() = 0;

  // The calling thread's current device.
  virtual Status get_device(int* device) = 0;
  virtual Status set_device(int device) = 0;

  // Whether `stream` is being captured into a graph; an error when the runtime cannot tell.
  virtual Status is_capturing(cudaStream_t stream, bool* capturing) = 0;

  // Stream-ordered device memory of the current device: usable by work queued on `stream` after
  // the call; free() releases it once the work queued on `stream` before has finished. Neither
  // waits for the device.
  virtual Status alloc(size_t bytes, cudaStream_t stream, void** out) = 0;
  virtual void free(void* ptr, cudaStream_t stream) = 0;
  // Pinned host memory for small copies back (the interposer keeps what it takes for the life
  // of the process, so nothing is ever freed: cudaFreeHost would wait for the device).
  virtual Status alloc_host(size_t bytes, void** out) = 0;

  virtual Status memset(void* dst, int value, size_t bytes, cudaStream_t stream) = 0;
  // Any direction (device, pinned host); asynchronous on `stream`.
  virtual Status copy(void* dst, const void* src, size_t bytes, cudaStream_t stream) = 0;

  // Events without timing. external: the stream is being captured and the record or wait must
  // become an external node of the graph (it orders against work outside the capture).
  virtual Status event_create(cudaEvent_t* out) = 0;
  virtual void event_destroy(cudaEvent_t event) = 0;
  virtual Status record(cudaEvent_t event, cudaStream_t stream, bool external) = 0;
  virtual Status wait(cudaStream_t stream, cudaEvent_t event, bool external) = 0;
  // Never blocks: *done is whether every piece of work before the last record has finished.
  virtual Status query(cudaEvent_t event, bool* done) = 0;
  // Blocks the calling thread until the event completes: the one host wait (see above).
  virtual Status synchronize(cudaEvent_t event) = 0;

  // Kernels, on `stream`, none waiting for the device.
  virtual Status make_scratch(std::unique_ptr<Scratch>* out) = 0;
  // Frames exactly max_encoded_bytes long (q<b>); kUnsupported for other codecs.
  virtual size_t max_encoded_bytes(const CodecSpec& spec, size_t count) = 0;
  virtual Status encode(Scratch& scratch, const EncodeArgs& args, cudaStream_t stream) = 0;
  virtual Status decode(Scratch& scratch, const DecodeArgs& args, cudaStream_t stream) = 0;
  // Bytes of a sticky DecodeCheck, and its "nothing wrong" state.
  virtual size_t check_bytes() const = 0;
  virtual Status reset_check(void* check, cudaStream_t stream) = 0;
  // What a host copy of a DecodeCheck says: ok, or kCorruptData naming the first problem.
  virtual Status read_check(const void* host_copy) = 0;
  // dst[i] = src[i] (add: dst[i] += src[i]), src of dtype widened to fp32.
  virtual Status widen(const void* src, gp_dtype_t dtype, float* dst, size_t n, bool add,
                       cudaStream_t stream) = 0;
  // dst[i] = round_to_dtype(src[i] * scale), the multiply in fp32 (scale 1: exact copy).
  virtual Status narrow(const float* src, void* dst, gp_dtype_t dtype, size_t n, float scale,
                        cudaStream_t stream) = 0;
};

// The implementation linked into this library.
Device& device();

// Makes `dev` current for a scope and restores the caller's device after: a process driving
// several GPUs must not allocate on, launch to or free on the wrong one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int dev) {
    Device& d = device();
    status_ = d.get_device(&previous_);
    if (status_.ok() && previous_ != dev) {
      status_ = d.set_device(dev);
      switched_ = status_.ok();
    }
  }
  ~DeviceGuard() {
    if (switched_) (void)device().set_device(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  const Status& status() const { return status_; }

 private:
  int previous_ = 0;
  bool switched_ = false;
  Status status_;
};

}  // namespace gradpack::interposer
