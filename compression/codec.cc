// SPDX-License-Identifier: Apache-2.0
#include "compression/codec.h"

#include <algorithm>
#include <cstring>

#include "common/float16.h"
#include "common/log.h"
#include "compression/codec_impl.h"
#include "compression/quantize/quant_ref.h"
#include "compression/wire.h"

namespace gradpack {

const float* load_f32(const cpu::CpuKernels& k, const void* in, gp_dtype_t dtype, size_t off,
                      size_t n, float* tmp) {
  switch (dtype) {
    case GP_FLOAT32:
      return static_cast<const float*>(in) + off;
    case GP_FLOAT16:
      k.f16_to_f32(static_cast<const uint16_t*>(in) + off, tmp, n);
      return tmp;
    case GP_BFLOAT16:
      k.bf16_to_f32(static_cast<const uint16_t*>(in) + off, tmp, n);
      return tmp;
    default:
      return nullptr;
  }
}

void store_f32(const cpu::CpuKernels& k, const float* src, void* out, gp_dtype_t dtype, size_t off,
               size_t n, bool accumulate, float* tmp) {
  if (dtype == GP_FLOAT32) {
    float* dst = static_cast<float*>(out) + off;
    if (accumulate) {
      k.add_f32(src, dst, n);
    } else if (dst != src) {
      std::memcpy(dst, src, n * sizeof(float));
    }
    return;
  }
  uint16_t* dst = static_cast<uint16_t*>(out) + off;
  const bool half = dtype == GP_FLOAT16;
  if (accumulate) {
    (half ? k.f16_to_f32 : k.bf16_to_f32)(dst, tmp, n);
    k.add_f32(src, tmp, n);
    src = tmp;
  }
  (half ? k.f32_to_f16 : k.f32_to_bf16)(src, dst, n, false);
}

Status Codec::create(std::string_view spec, std::unique_ptr<Codec>* out) {
  const cpu::CpuKernels* kernels = nullptr;
  GP_RETURN_IF_ERROR(cpu::select_kernels(&kernels));
  return create(spec, *kernels, out);
}

Status Codec::create(std::string_view spec, const cpu::CpuKernels& kernels,
                     std::unique_ptr<Codec>* out) {
  std::unique_ptr<Codec> codec(new Codec());
  GP_RETURN_IF_ERROR(parse_codec_spec(spec, &codec->spec_));
  codec->canonical_ = codec->spec_.canonical();
  codec->kernels_ = &kernels;
  *out = std::move(codec);
  return OkStatus();
}

Status Codec::create(const CodecSpec& spec, std::unique_ptr<Codec>* out) {
  const cpu::CpuKernels* kernels = nullptr;
  GP_RETURN_IF_ERROR(cpu::select_kernels(&kernels));
  std::unique_ptr<Codec> codec(new Codec());
  codec->spec_ = spec;
  codec->canonical_ = spec.canonical();
  codec->kernels_ = kernels;
  *out = std::move(codec);
  return OkStatus();
}

size_t Codec::max_encoded_bytes(size_t count, gp_dtype_t dtype) const {
  if (dtype_size(dtype) == 0 || count > kMaxFrameCount) return 0;
  if (spec_.kind != CodecKind::kNone && !is_float(dtype)) return 0;
  size_t payload = 0;
  switch (spec_.kind) {
    case CodecKind::kNone:
    case CodecKind::kFp16:
    case CodecKind::kBf16:
      payload = float_max_payload(spec_, count, dtype);
      break;
    case CodecKind::kQuant:
      payload = quant_max_payload(spec_, count);
      break;
    case CodecKind::kTopk:
      payload = topk_max_payload(spec_, count);
      break;
  }
  return kFrameHeaderBytes + payload;
}

Status Codec::encode(const void* in, size_t count, gp_dtype_t dtype, float* residual, void* out,
                     size_t out_capacity, size_t* out_bytes) {
  return encode(in, count, dtype, residual, out, out_capacity, out_bytes, stats_.encodes);
}

Status Codec::encode(const void* in, size_t count, gp_dtype_t dtype, float* residual, void* out,
                     size_t out_capacity, size_t* out_bytes, uint64_t call_index) {
  if (out_bytes == nullptr) return InvalidArgument("out_bytes is NULL");
  if (out == nullptr) return InvalidArgument("out is NULL");
  if (count > 0 && in == nullptr) return InvalidArgument("in is NULL with a non-zero count");
  if (dtype_size(dtype) == 0)
    return InvalidArgument("dtype " + std::to_string(static_cast<int>(dtype)) + " is unknown");
  if (spec_.kind != CodecKind::kNone && !is_float(dtype))
    return Unsupported("codec " + canonical_ +
                       " encodes float32, float16 and bfloat16 only; use \"none\" for other types");
  if (residual != nullptr && !is_float(dtype))
    return InvalidArgument("error feedback (a residual) needs a float dtype");
  if (count > kMaxFrameCount)
    return InvalidArgument("count " + std::to_string(count) + " exceeds the largest frame");
  const size_t need = max_encoded_bytes(count, dtype);
  if (out_capacity < need)
    return InvalidArgument("output buffer of " + std::to_string(out_capacity) +
                           " bytes is too small: gp_codec_max_encoded_bytes() gives " +
                           std::to_string(need) + " for this count and dtype");
  FrameHeader header;
  header.codec = spec_.kind;
  header.dtype = dtype;
  header.count = count;
  header.kept = count;
  const uint32_t key = quant::stream_key(spec_.quant.seed, call_index);
  EncodeArgs args{spec_,
                  *kernels_,
                  in,
                  count,
                  dtype,
                  residual,
                  static_cast<uint8_t*>(out) + kFrameHeaderBytes,
                  key,
                  scratch_,
                  &header,
                  &stats_};
  const uint64_t nonfinite_before = stats_.nonfinite_blocks;
  switch (spec_.kind) {
    case CodecKind::kNone:
    case CodecKind::kFp16:
    case CodecKind::kBf16:
      GP_RETURN_IF_ERROR(float_encode(args));
      break;
    case CodecKind::kQuant:
      GP_RETURN_IF_ERROR(quant_encode(args));
      break;
    case CodecKind::kTopk:
      GP_RETURN_IF_ERROR(topk_encode(args));
      break;
  }
  write_frame_header(header, static_cast<uint8_t*>(out));
  ++stats_.encodes;
  if (stats_.nonfinite_blocks != nonfinite_before)
    GP_LOG_WARN(kCodec,
                "%s: %llu block(s) held NaN or Inf and were sent as NaN; their residual was kept",
                canonical_.c_str(),
                static_cast<unsigned long long>(stats_.nonfinite_blocks - nonfinite_before));
  *out_bytes = kFrameHeaderBytes + header.payload_bytes;
  return OkStatus();
}

Status check_decode_target(const FrameHeader& h, size_t count, gp_dtype_t dtype, const void* out) {
  if (h.count != count)
    return InvalidArgument("frame holds " + std::to_string(h.count) +
                           " elements but the caller expects " + std::to_string(count));
  if (dtype_size(dtype) == 0)
    return InvalidArgument("dtype " + std::to_string(static_cast<int>(dtype)) + " is unknown");
  if (dtype != h.dtype && !(is_float(dtype) && is_float(h.dtype)))
    return InvalidArgument("a frame of dtype " + std::to_string(static_cast<int>(h.dtype)) +
                           " cannot be decoded as dtype " +
                           std::to_string(static_cast<int>(dtype)));
  if (count > 0 && out == nullptr) return InvalidArgument("out is NULL with a non-zero count");
  return OkStatus();
}

Status decode_frame(const void* in, size_t in_bytes, void* out, size_t count, gp_dtype_t dtype,
                    bool accumulate, const cpu::CpuKernels* kernels) {
  FrameHeader h;
  FrameLayout l;
  GP_RETURN_IF_ERROR(read_frame_header(in, in_bytes, &h, &l));
  GP_RETURN_IF_ERROR(check_decode_target(h, count, dtype, out));
  if (kernels == nullptr) GP_RETURN_IF_ERROR(cpu::select_kernels(&kernels));
  DecodeArgs args{
      h, l, static_cast<const uint8_t*>(in) + kFrameHeaderBytes, out, dtype, accumulate, *kernels};
  switch (h.codec) {
    case CodecKind::kNone:
    case CodecKind::kFp16:
    case CodecKind::kBf16:
      return float_decode(args);
    case CodecKind::kQuant:
      return quant_decode(args);
    case CodecKind::kTopk:
      return topk_decode(args);
  }
  return Internal("unreachable codec kind");
}

Status read_frame_info(const void* in, size_t in_bytes, gp_frame_info_t* info) {
  FrameHeader h;
  FrameLayout l;
  GP_RETURN_IF_ERROR(read_frame_header(in, in_bytes, &h, &l));
  CodecSpec spec;
  spec.kind = h.codec;
  spec.quant.bits = h.bits;
  spec.quant.block = h.block == 0 ? kDefaultBlock : h.block;
  spec.quant.rounding = (h.flags & kFlagStochastic) ? Rounding::kStochastic : Rounding::kNearest;
  spec.fraction = h.count == 0 ? 0.0 : static_cast<double>(h.kept) / static_cast<double>(h.count);
  std::string s = spec.canonical();
  // The seed is not on the wire: drop it from the description.
  if (size_t pos = s.find(":seed="); pos != std::string::npos) s.erase(pos);
  std::memset(info, 0, sizeof *info);
  std::snprintf(info->spec, sizeof info->spec, "%s", s.c_str());
  info->dtype = h.dtype;
  info->count = h.count;
  info->kept = h.kept;
  info->frame_bytes = kFrameHeaderBytes + h.payload_bytes;
  return OkStatus();
}

}  // namespace gradpack
