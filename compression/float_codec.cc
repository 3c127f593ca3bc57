// SPDX-License-Identifier: Apache-2.0
// The element-wise codecs: "none" (the input's own format), "fp16" and "bf16".
//
// With error feedback each element is v = x + r, sent as its nearest value in the wire format
// (finite values saturate instead of becoming Inf), and r = v - sent. A NaN or Inf v is sent as
// itself and leaves r as it was.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "common/float16.h"
#include "compression/codec_impl.h"

namespace gradpack {
namespace {

// The format of the values on the wire for an element-wise frame.
gp_dtype_t wire_dtype(CodecKind kind, gp_dtype_t source) {
  if (kind == CodecKind::kFp16) return GP_FLOAT16;
  if (kind == CodecKind::kBf16) return GP_BFLOAT16;
  return source;
}

// Integers wrap on overflow (two's complement, as NCCL's integer sums do); never undefined.
template <typename T>
void add_into(const void* in, void* out, size_t n) {
  const T* src = static_cast<const T*>(in);
  T* dst = static_cast<T*>(out);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      dst[i] = static_cast<T>(static_cast<U>(static_cast<U>(dst[i]) + static_cast<U>(src[i])));
    } else {
      dst[i] = dst[i] + src[i];
    }
  }
}

}  // namespace

size_t float_max_payload(const CodecSpec& spec, size_t count, gp_dtype_t dtype) {
  return count * dtype_size(wire_dtype(spec.kind, dtype));
}

Status float_encode(const EncodeArgs& a) {
  const gp_dtype_t wire = wire_dtype(a.spec.kind, a.dtype);
  a.header->payload_bytes = a.count * dtype_size(wire);
  if (a.residual == nullptr && wire == a.dtype) {
    if (a.count > 0) std::memcpy(a.payload, a.in, a.header->payload_bytes);
    return OkStatus();
  }
  a.scratch.resize(3 * kStageElements);
  float* xs = a.scratch.data();
  float* vs = xs + kStageElements;
  float* back = vs + kStageElements;
  for (size_t off = 0; off < a.count; off += kStageElements) {
    const size_t n = std::min(kStageElements, a.count - off);
    const float* x = load_f32(a.k, a.in, a.dtype, off, n, xs);
    float* r = a.residual ? a.residual + off : nullptr;
    if (wire == GP_FLOAT32) {  // fp32 in, fp32 out: v goes straight into the payload
      float* p = reinterpret_cast<float*>(a.payload) + off;
      a.k.add3_f32(x, r, p, n);
      a.stats->nonfinite_blocks += a.k.feedback(p, p, r, n);
      continue;
    }
    if (r) {
      a.k.add3_f32(x, r, vs, n);
      x = vs;
    }
    const float* sent = x;
    {
      uint16_t* p = reinterpret_cast<uint16_t*>(a.payload) + off;
      const bool half = wire == GP_FLOAT16;
      (half ? a.k.f32_to_f16 : a.k.f32_to_bf16)(x, p, n, true);
      if (r) {
        (half ? a.k.f16_to_f32 : a.k.bf16_to_f32)(p, back, n);
        sent = back;
      }
    }
    if (r) a.stats->nonfinite_blocks += a.k.feedback(x, sent, r, n);
  }
  return OkStatus();
}

Status float_decode(const DecodeArgs& a) {
  const size_t n_total = a.h.count;
  const gp_dtype_t wire = wire_dtype(a.h.codec, a.h.dtype);
  if (!is_float(wire) || !is_float(a.dtype)) {  // raw non-float data: same dtype enforced
    if (!a.accumulate) {
      if (n_total > 0) std::memcpy(a.out, a.payload, a.l.values_bytes);
      return OkStatus();
    }
    switch (wire) {
      case GP_FLOAT64:
        add_into<double>(a.payload, a.out, n_total);
        break;
      case GP_INT32:
        add_into<int32_t>(a.payload, a.out, n_total);
        break;
      case GP_INT64:
        add_into<int64_t>(a.payload, a.out, n_total);
        break;
      case GP_INT8:
        add_into<int8_t>(a.payload, a.out, n_total);
        break;
      case GP_UINT8:
        add_into<uint8_t>(a.payload, a.out, n_total);
        break;
      default:
        return Internal("float frame in the raw path");
    }
    return OkStatus();
  }
  if (wire == a.dtype && !a.accumulate) {
    if (n_total > 0) std::memcpy(a.out, a.payload, a.l.values_bytes);
    return OkStatus();
  }
  std::vector<float> stage(2 * kStageElements);
  for (size_t off = 0; off < n_total; off += kStageElements) {
    const size_t n = std::min(kStageElements, n_total - off);
    const float* v = load_f32(a.k, a.payload, wire, off, n, stage.data());
    store_f32(a.k, v, a.out, a.dtype, off, n, a.accumulate, stage.data() + kStageElements);
  }
  return OkStatus();
}

}  // namespace gradpack
