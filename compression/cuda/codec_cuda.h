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
//   - quant_decode enqueues and returns without waiting: the header is compared with the expected
//     one and the payload checked on the device, into a sticky DecodeCheck the caller reads later;
//   - decode copies the header to the host and waits for it (unless given a host copy), then
//     checks the payload on the device: a corrupt frame is kCorruptData and nothing is written to
//     `out`. Quant decode is quant_decode followed by a wait for its check; top-k decode waits for
//     the check, then enqueues the writes and returns.
// A Workspace holds device scratch and pinned host memory between calls. It is not thread-safe;
// calls that share one must be ordered (one stream, or streams ordered by events), and it must live
// until the work queued by those calls has finished.
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
#include <vector>

#include "common/status.h"
#include "compression/spec.h"
#include "compression/wire.h"
#include "gradpack/gradpack.h"

namespace gradpack::cuda {

// True when the CUDA runtime sees at least one device; otherwise false and *why (if not null) says
// why (no driver, no device, ...). Tests skip with that reason.
bool device_available(std::string* why);

// Device scratch and pinned host memory reused by the calls below. Grows on demand without waiting
// for the device: device memory is stream-ordered (the old buffer is released on the stream of the
// call that outgrows it, after the work queued there), and outgrown pinned buffers are kept until
// the destructor, since cudaFreeHost would wait for the device. The destructor waits for nothing
// either: the owner destroys it once no queued work uses it.
class Workspace {
 public:
  Workspace() = default;
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // At least `bytes` of device memory, 256-byte aligned, usable by work queued on `stream` after
  // the call; earlier contents are not kept.
  Status device(size_t bytes, cudaStream_t stream, void** out);
  // At least `bytes` of pinned host memory (small readbacks).
  Status host(size_t bytes, void** out);

 private:
  void* device_ = nullptr;
  size_t device_bytes_ = 0;
  void* host_ = nullptr;
  size_t host_bytes_ = 0;
  std::vector<void*> retired_host_;  // outgrown pinned buffers, freed by the destructor
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

// The header of a q<b> frame of `count` values encoded from `in_dtype` (fp32, fp16 or bf16) with
// `q`: the bytes quant_encode (and the CPU codec) write, so a receiver that knows what its peer
// sends can check the frame without reading it on the host. kInvalidArgument for a quantizer out
// of range, a non-float dtype or a count above the largest frame.
Status quant_frame_header(const QuantSpec& q, size_t count, gp_dtype_t in_dtype,
                          uint8_t out[kFrameHeaderBytes]);

// A sticky record of what the device-side checks of received frames found, in device memory the
// caller owns (decode_check_bytes() bytes, 8-byte aligned). reset_decode_check() sets it to
// "nothing wrong" (a stream-ordered memset). Each quant_decode against it may lower it; once
// lowered it stays lowered, and every later decode against it writes nothing, until the caller
// resets it. read_decode_check() turns a host copy into ok or kCorruptData naming the first
// problem.
size_t decode_check_bytes();
Status reset_decode_check(void* check, cudaStream_t stream);
Status read_decode_check(const void* host_copy);

struct QuantDecodeArgs {
  const void* frame = nullptr;  // device memory, any alignment
  size_t frame_bytes = 0;       // must be the frame size expected_header describes
  // Host memory, kFrameHeaderBytes: what the frame must carry (quant_frame_header()). Read before
  // quant_decode returns.
  const uint8_t* expected_header = nullptr;
  void* out = nullptr;  // count values of dtype
  size_t count = 0;
  gp_dtype_t dtype = GP_FLOAT32;
  bool accumulate = false;  // out = out + decoded, in fp32, rounded once
  // Plain decode only: out = round(decoded * scale), the product in fp32, so an average's 1/n
  // costs no second rounding. Must be 1 with accumulate.
  float scale = 1.0f;
  void* check = nullptr;  // sticky DecodeCheck (see decode_check_bytes)
};

// Decodes a q<b> frame without any host wait or host copy: enqueues on `stream` a comparison of
// the frame's header with expected_header and the payload checks (both lowering *check), then the
// decode, which writes nothing when *check is lowered (by this frame or an earlier one). Returns
// kInvalidArgument when the arguments disagree (expected header not a q<b> header of frame_bytes,
// count or dtype not those of the header, scale with accumulate), kSystem for launch failures;
// a bad frame shows only in *check.
Status quant_decode(const QuantDecodeArgs& args, cudaStream_t stream);

// Decodes a q or top-k frame of frame_bytes bytes into out (count values of dtype), or adds it
// (accumulate: out = out + decoded, in fp32, rounded once to dtype). Top-k elements that were not
// sent are zero without accumulate, and untouched with it. host_header, when not null, is a host
// copy of the frame's first 56 bytes (saves one device-to-host copy and wait); it is checked like
// the frame itself.
Status decode(const void* frame, size_t frame_bytes, void* out, size_t count, gp_dtype_t dtype,
              bool accumulate, Workspace& ws, cudaStream_t stream,
              const void* host_header = nullptr);

}  // namespace gradpack::cuda
