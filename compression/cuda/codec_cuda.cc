// SPDX-License-Identifier: Apache-2.0
// Host side of the CUDA codecs: device discovery, the workspace, argument checks shared with the
// CPU codec, and dispatch by codec kind.
#include "compression/cuda/codec_cuda.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "compression/codec_impl.h"
#include "compression/cuda/launch.h"
#include "compression/wire.h"

namespace gradpack::cuda {

Status cuda_error(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return OkStatus();
  return Status(Code::kSystem, std::string("CUDA: ") + what + ": " + cudaGetErrorName(err) + " (" +
                                   cudaGetErrorString(err) + ")");
}

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    (void)cudaGetLastError();  // clear it so later calls start clean
    return false;
  }
  if (count == 0) {
    if (why) *why = "the CUDA runtime found no device";
    return false;
  }
  return true;
}

int multiprocessor_count() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0)
    return 32;
  return sms;
}

TileShape tile_shape(uint64_t n, uint32_t block) {
  TileShape s;
  s.block = block;
  if (block <= kTileElems) {
    s.tile_blocks = kTileElems / block;
    s.tile_elems = s.tile_blocks * block;
    s.chunks_per_block = 1;
    s.tiles = (n + s.tile_elems - 1) / s.tile_elems;
  } else {
    s.tile_blocks = 1;
    s.tile_elems = kTileElems;
    s.chunks_per_block = (block + kTileElems - 1) / kTileElems;
    s.tiles = (n + block - 1) / block * s.chunks_per_block;
  }
  return s;
}

Status check_result(const DecodeCheck& c) {
  constexpr unsigned long long kNone = ~0ull;
  if (c.bad_header != ~0u)
    return CorruptData("frame rejected: header byte " + std::to_string(c.bad_header) +
                       " differs from the header the receiver expects (spec, count or dtype "
                       "disagree with the sender's, or the header is corrupt)");
  if (c.bad_scale_block != kNone)
    return CorruptData("frame rejected: block " + std::to_string(c.bad_scale_block) +
                       " has a negative or infinite scale");
  if (c.bad_padding != ~0u) return CorruptData("frame rejected: code padding is not zero");
  if (c.bad_index != kNone) {
    const uint64_t error = c.bad_index >> kIndexErrorShift;
    const std::string at = std::to_string(c.bad_index & ((uint64_t{1} << kIndexErrorShift) - 1));
    switch (error) {
      case kIndexLastByteContinues:
        return CorruptData("frame rejected: the varint index section ends inside a varint");
      case kIndexVarintTooLong:
        return CorruptData("frame rejected: index varint " + at + " is longer than 10 bytes");
      case kIndexOutOfRange:
        return CorruptData("frame rejected: index " + at + " is past the element count");
      case kIndexNotIncreasing:
        return CorruptData("frame rejected: index " + at + " does not increase");
      case kIndexCountMismatch:
        return CorruptData(
            "frame rejected: the index section does not hold exactly the kept count");
      case kIndexBitmapPadding:
        return CorruptData("frame rejected: bitmap padding bits are not zero");
      default:
        return CorruptData("frame rejected: malformed index section");
    }
  }
  return OkStatus();
}

Workspace::~Workspace() {
  // The owner keeps it until no queued work uses it, so any stream orders the free well enough.
  // The per-thread stream, unlike the legacy one, does not synchronise with other streams (which
  // would invalidate a graph capture in progress on another thread).
  if (device_) (void)cudaFreeAsync(device_, cudaStreamPerThread);
  if (host_) (void)cudaFreeHost(host_);
  for (void* p : retired_host_) (void)cudaFreeHost(p);
}

Status Workspace::device(size_t bytes, cudaStream_t stream, void** out) {
  if (bytes <= device_bytes_ && device_ != nullptr) {
    *out = device_;
    return OkStatus();
  }
  // Work queued before on `stream` (or ordered before it) may still use the old buffer: release
  // it in stream order instead of waiting for the device.
  if (device_) {
    GP_CUDA_RETURN_IF_ERROR(cudaFreeAsync(device_, stream));
    device_ = nullptr;
    device_bytes_ = 0;
  }
  const size_t want = bytes < 4096 ? 4096 : bytes + bytes / 8;
  GP_CUDA_RETURN_IF_ERROR(cudaMallocAsync(&device_, want, stream));
  device_bytes_ = want;
  *out = device_;
  return OkStatus();
}

Status Workspace::host(size_t bytes, void** out) {
  if (bytes <= host_bytes_ && host_ != nullptr) {
    *out = host_;
    return OkStatus();
  }
  // A queued copy may still target the old buffer, and freeing it would wait for the device:
  // keep it until the destructor (readbacks are small, so little is kept).
  if (host_) {
    retired_host_.push_back(host_);
    host_ = nullptr;
    host_bytes_ = 0;
  }
  const size_t want = bytes < 256 ? 256 : bytes;
  GP_CUDA_RETURN_IF_ERROR(cudaMallocHost(&host_, want));
  host_bytes_ = want;
  *out = host_;
  return OkStatus();
}

size_t decode_check_bytes() { return sizeof(DecodeCheck); }

Status reset_decode_check(void* check, cudaStream_t stream) {
  if (check == nullptr) return InvalidArgument("check is NULL");
  // All-ones is "nothing wrong": every field is lowered with atomicMin.
  return cuda_error(cudaMemsetAsync(check, 0xFF, sizeof(DecodeCheck), stream),
                    "cudaMemsetAsync(decode check)");
}

Status read_decode_check(const void* host_copy) {
  if (host_copy == nullptr) return InvalidArgument("host_copy is NULL");
  DecodeCheck c;
  std::memcpy(&c, host_copy, sizeof c);
  return check_result(c);
}

size_t max_encoded_bytes(const CodecSpec& spec, size_t count, gp_dtype_t dtype) {
  if (!is_float(dtype) || count > kMaxFrameCount) return 0;
  switch (spec.kind) {
    case CodecKind::kQuant:
      return kFrameHeaderBytes + quant_max_payload(spec, count);
    case CodecKind::kTopk:
      return kFrameHeaderBytes + topk_max_payload(spec, count);
    default:
      return 0;
  }
}

Status check_encode_args(const CodecSpec& spec, const void* in, gp_dtype_t dtype, size_t count,
                         float* residual, void* frame, size_t capacity, size_t* frame_bytes) {
  if (frame_bytes == nullptr) return InvalidArgument("frame_bytes is NULL");
  if (frame == nullptr) return InvalidArgument("frame is NULL");
  if (count > 0 && in == nullptr) return InvalidArgument("in is NULL with a non-zero count");
  if (dtype_size(dtype) == 0)
    return InvalidArgument("dtype " + std::to_string(static_cast<int>(dtype)) + " is unknown");
  if (!is_float(dtype))
    return Unsupported("codec " + spec.canonical() +
                       " encodes float32, float16 and bfloat16 only; use \"none\" for other types");
  if (count > kMaxFrameCount)
    return InvalidArgument("count " + std::to_string(count) + " exceeds the largest frame");
  const size_t need = max_encoded_bytes(spec, count, dtype);
  if (capacity < need)
    return InvalidArgument("output buffer of " + std::to_string(capacity) +
                           " bytes is too small: max_encoded_bytes() gives " +
                           std::to_string(need) + " for this count and dtype");
  (void)residual;
  return OkStatus();
}

Status encode(const CodecSpec& spec, const void* in, gp_dtype_t dtype, size_t count,
              float* residual, uint64_t call_index, Workspace& ws, void* frame, size_t capacity,
              size_t* frame_bytes, cudaStream_t stream) {
  switch (spec.kind) {
    case CodecKind::kQuant:
      return quant_encode(in, dtype, count, residual, spec.quant, call_index, ws, frame, capacity,
                          frame_bytes, stream);
    case CodecKind::kTopk:
      return topk_encode(in, dtype, count, residual, spec, call_index, ws, frame, capacity,
                         frame_bytes, stream);
    default:
      return Unsupported("codec " + spec.canonical() + " has no GPU encoder (q<b> and topk do)");
  }
}

namespace {

// decode() of a q<b> frame: quant_decode against a fresh check, which is then read back.
Status quant_decode_and_wait(const void* frame, size_t frame_bytes, const uint8_t* header,
                             void* out, size_t count, gp_dtype_t dtype, bool accumulate,
                             Workspace& ws, cudaStream_t stream) {
  void* check = nullptr;
  void* host = nullptr;
  GP_RETURN_IF_ERROR(ws.device(sizeof(DecodeCheck), stream, &check));
  GP_RETURN_IF_ERROR(ws.host(sizeof(DecodeCheck), &host));
  GP_RETURN_IF_ERROR(reset_decode_check(check, stream));
  QuantDecodeArgs a;
  a.frame = frame;
  a.frame_bytes = frame_bytes;
  a.expected_header = header;
  a.out = out;
  a.count = count;
  a.dtype = dtype;
  a.accumulate = accumulate;
  a.check = check;
  GP_RETURN_IF_ERROR(quant_decode(a, stream));
  GP_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(host, check, sizeof(DecodeCheck), cudaMemcpyDeviceToHost, stream));
  GP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return read_decode_check(host);
}

}  // namespace

Status decode(const void* frame, size_t frame_bytes, void* out, size_t count, gp_dtype_t dtype,
              bool accumulate, Workspace& ws, cudaStream_t stream, const void* host_header) {
  if (frame == nullptr && frame_bytes > 0) return InvalidArgument("frame is NULL");
  if (frame_bytes < kFrameHeaderBytes)
    return CorruptData("frame rejected: truncated: " + std::to_string(frame_bytes) +
                       " bytes is shorter than the " + std::to_string(kFrameHeaderBytes) +
                       "-byte header");
  // A private copy: the pinned buffer it may come through is reused for the check's readback.
  uint8_t header[kFrameHeaderBytes];
  if (host_header == nullptr) {
    void* pinned = nullptr;
    GP_RETURN_IF_ERROR(ws.host(kFrameHeaderBytes, &pinned));
    if (pinned == nullptr) return Internal("no pinned memory for the header");
    GP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(pinned, frame, kFrameHeaderBytes, cudaMemcpyDeviceToHost, stream));
    GP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    host_header = pinned;
  }
  std::memcpy(header, host_header, kFrameHeaderBytes);
  FrameHeader h;
  FrameLayout l;
  GP_RETURN_IF_ERROR(read_frame_header(header, frame_bytes, &h, &l));
  GP_RETURN_IF_ERROR(check_decode_target(h, count, dtype, out));
  const auto* payload = static_cast<const uint8_t*>(frame) + kFrameHeaderBytes;
  switch (h.codec) {
    case CodecKind::kQuant:
      // The header just read is the expected one: the device compares the frame's own header
      // with it, which also catches a host_header that is not this frame's.
      return quant_decode_and_wait(frame, frame_bytes, header, out, count, dtype, accumulate, ws,
                                   stream);
    case CodecKind::kTopk:
      return topk_decode_frame(h, l, payload, out, dtype, accumulate, ws, stream);
    default:
      return Unsupported(std::string("a ") + codec_kind_name(h.codec) +
                         " frame has no GPU decoder (q<b> and topk do)");
  }
}

}  // namespace gradpack::cuda
