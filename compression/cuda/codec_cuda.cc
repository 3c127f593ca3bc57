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
  if (device_) cudaFree(device_);
  if (host_) cudaFreeHost(host_);
}

Status Workspace::device(size_t bytes, void** out) {
  if (bytes <= device_bytes_ && device_ != nullptr) {
    *out = device_;
    return OkStatus();
  }
  // Work still queued may use the old buffer.
  if (device_) {
    GP_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    GP_CUDA_RETURN_IF_ERROR(cudaFree(device_));
    device_ = nullptr;
    device_bytes_ = 0;
  }
  const size_t want = bytes < 4096 ? 4096 : bytes + bytes / 8;
  GP_CUDA_RETURN_IF_ERROR(cudaMalloc(&device_, want));
  device_bytes_ = want;
  *out = device_;
  return OkStatus();
}

Status Workspace::host(size_t bytes, void** out) {
  if (bytes <= host_bytes_ && host_ != nullptr) {
    *out = host_;
    return OkStatus();
  }
  if (host_) {
    GP_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    GP_CUDA_RETURN_IF_ERROR(cudaFreeHost(host_));
    host_ = nullptr;
    host_bytes_ = 0;
  }
  const size_t want = bytes < 256 ? 256 : bytes;
  GP_CUDA_RETURN_IF_ERROR(cudaMallocHost(&host_, want));
  host_bytes_ = want;
  *out = host_;
  return OkStatus();
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

Status decode(const void* frame, size_t frame_bytes, void* out, size_t count, gp_dtype_t dtype,
              bool accumulate, Workspace& ws, cudaStream_t stream, const void* host_header) {
  if (frame == nullptr && frame_bytes > 0) return InvalidArgument("frame is NULL");
  if (frame_bytes < kFrameHeaderBytes)
    return CorruptData("frame rejected: truncated: " + std::to_string(frame_bytes) +
                       " bytes is shorter than the " + std::to_string(kFrameHeaderBytes) +
                       "-byte header");
  const void* header = host_header;
  if (header == nullptr) {
    void* pinned = nullptr;
    GP_RETURN_IF_ERROR(ws.host(kFrameHeaderBytes, &pinned));
    GP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(pinned, frame, kFrameHeaderBytes, cudaMemcpyDeviceToHost, stream));
    GP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    header = pinned;
  }
  FrameHeader h;
  FrameLayout l;
  GP_RETURN_IF_ERROR(read_frame_header(header, frame_bytes, &h, &l));
  GP_RETURN_IF_ERROR(check_decode_target(h, count, dtype, out));
  const auto* payload = static_cast<const uint8_t*>(frame) + kFrameHeaderBytes;
  switch (h.codec) {
    case CodecKind::kQuant:
      return quant_decode_frame(h, l, payload, out, dtype, accumulate, ws, stream);
    case CodecKind::kTopk:
      return topk_decode_frame(h, l, payload, out, dtype, accumulate, ws, stream);
    default:
      return Unsupported(std::string("a ") + codec_kind_name(h.codec) +
                         " frame has no GPU decoder (q<b> and topk do)");
  }
}

}  // namespace gradpack::cuda
