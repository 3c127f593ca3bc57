// SPDX-License-Identifier: Apache-2.0
// The codecs on the GPU: "q<b>" and "topk:<f>[+q<b>]" frames encoded from and decoded into device
// memory, byte for byte the frames of the CPU reference (compression/codec.h with the scalar
// kernels), and with the same residual bits.
//
// Memory: every pointer argument except `ws`, `frame_bytes` and `host_header` is device memory of
// the current device; inputs, residuals and outputs may have any alignment of their element type,
// frames any alignment at all. Each call runs on `stream`:
//   - quant encode enqueues and returns without waiting;
//   - top-k encode waits once, mid-way, for the kept indices' varint size (the header needs it);
//   - decode copies the header to the host and waits for it (unless given a host copy), then
//     checks the payload on the device: a corrupt frame is kCorruptData and nothing is written to
//     `out`. Quant decode enqueues the check and the writes together (the writes stand down on a
//     bad frame) and waits for both; top-k decode waits for the check, then enqueues the writes
//     and returns.
// A Workspace holds device scratch and pinned host memory between calls; use one per stream (it is
// not thread-safe) and keep it alive until the stream has finished the calls that used it.
//
// Stochastic rounding: the stream key is quant::stream_key(seed, call_index), where call_index is
// what Codec::encode uses (its stats().encodes): encode call number `call_index` of a CPU codec and
// of these functions give the same frame.
//
// Errors: kInvalidArgument for bad arguments (as Codec::encode and decode_frame give them),
// kUnsupported for codecs without a GPU path (none, fp16, bf16), kCorruptData for bad frames,
// kSystem for CUDA failures (with the CUDA error string).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "compression/spec.h"
#include "gradpack/gradpack.h"

namespace gradpack::cuda {

// True when the CUDA runtime sees at least one device; otherwise false and *why (if not null) says
// why (no driver, no device, ...). Tests skip with that reason.
bool device_available(std::string* why);

// Device scratch and pinned host memory reused by the calls below. Grows on demand (growing waits
// for the device to be idle); freed by the destructor.
class Workspace {
 public:
  Workspace() = default;
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // At least `bytes` of device memory, 256-byte aligned; earlier contents are not kept.
  Status device(size_t bytes, void** out);
  // At least `bytes` of pinned host memory (small readbacks).
  Status host(size_t bytes, void** out);

 private:
  void* device_ = nullptr;
  size_t device_bytes_ = 0;
  void* host_ = nullptr;
  size_t host_bytes_ = 0;
};

// The largest frame these encoders write: Codec::max_encoded_bytes() for the same spec. 0 when the
// dtype is not fp32/fp16/bf16 or the count is too large.
size_t max_encoded_bytes(const CodecSpec& spec, size_t count, gp_dtype_t dtype);

// Encodes count values of `in` (fp32, fp16 or bf16) as a "q<b>" frame into frame[0, capacity).
// residual (fp32, count values, may be null) is error feedback, updated in place.
Status quant_encode(const void* in, gp_dtype_t dtype, size_t count, float* residual,
                    const QuantSpec& q, uint64_t call_index, Workspace& ws, void* frame,
                    size_t capacity, size_t* frame_bytes, cudaStream_t stream);

// Encodes a top-k frame; spec.kind must be kTopk (values fp32, or quantized by spec.quant).
Status topk_encode(const void* in, gp_dtype_t dtype, size_t count, float* residual,
                   const CodecSpec& spec, uint64_t call_index, Workspace& ws, void* frame,
                   size_t capacity, size_t* frame_bytes, cudaStream_t stream);

// One of the above, by spec.kind.
Status encode(const CodecSpec& spec, const void* in, gp_dtype_t dtype, size_t count,
              float* residual, uint64_t call_index, Workspace& ws, void* frame, size_t capacity,
              size_t* frame_bytes, cudaStream_t stream);

// Decodes a q or top-k frame of frame_bytes bytes into out (count values of dtype), or adds it
// (accumulate: out = out + decoded, in fp32, rounded once to dtype). Top-k elements that were not
// sent are zero without accumulate, and untouched with it. host_header, when not null, is a host
// copy of the frame's first 56 bytes (saves one device-to-host copy and wait); it is checked like
// the frame itself.
Status decode(const void* frame, size_t frame_bytes, void* out, size_t count, gp_dtype_t dtype,
              bool accumulate, Workspace& ws, cudaStream_t stream,
              const void* host_header = nullptr);

}  // namespace gradpack::cuda
