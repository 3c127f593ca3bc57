// SPDX-License-Identifier: Apache-2.0
// The block quantizer on the GPU: "q<b>" frames, and the quantized value sections of top-k frames.
//
// Encode, blocks up to kTileElems values: one pass. A tile (thread block) holds whole quant blocks;
// each thread loads one group of 8 values (v = x + r), the tile reduces |v| bit patterns per block
// (warp segments by __match_any_sync, then a shared-memory atomicMax), and each thread quantizes,
// packs its `bits` code bytes and writes its residual. Larger blocks: one pass for the per-block
// absmax (global atomicMax), one to quantize.
// Decode: each thread unpacks one group and writes (or adds) 8 values.
#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "compression/codec_impl.h"
#include "compression/cuda/codec_cuda.h"
#include "compression/cuda/float_device.cuh"
#include "compression/cuda/launch.h"
#include "compression/cuda/quant_device.cuh"
#include "compression/quantize/quant_ref.h"

namespace gradpack::cuda {
namespace {

using dev::BFloat;
using dev::Half;

// The largest of v over the lanes of `peers`, in every lane of it: __reduce_max_sync from sm_80 on.
// Before sm_80 a segmented shuffle scan gives the same bits (an unsigned max is exact in any
// order). Callers keep what the scan relies on: the whole warp calls it, and each lane's `peers`
// is a contiguous run of lanes containing it (the lanes of one quant block are consecutive).
__device__ __forceinline__ uint32_t lanes_max(unsigned peers, uint32_t v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_max_sync(peers, v);
#else
  const unsigned lane = threadIdx.x & 31u;
#pragma unroll
  for (unsigned off = 1; off < 32; off <<= 1) {
    const uint32_t other = __shfl_down_sync(0xFFFFFFFFu, v, off);
    // lane + off inside the run: every lane between is too, so v covers [lane, lane + 2 * off).
    if (lane + off < 32 && ((peers >> (lane + off)) & 1u) != 0) v = v > other ? v : other;
  }
  // The run's lowest lane now holds the whole run's max.
  return __shfl_sync(0xFFFFFFFFu, v, __ffs(peers) - 1);
#endif
}

enum class Feedback { kNone, kDense, kScatter };

struct EncodeParams {
  TileShape shape;
  uint64_t n;
  int bits;
  bool stochastic;
  uint32_t key;
  uint8_t* scales;
  uint8_t* codes;
  uint32_t* absmax;         // large blocks: one word per block, zeroed
  const uint64_t* scatter;  // Feedback::kScatter
  HeaderBytes header;
  uint8_t* header_out;  // null: no header
};

__device__ __forceinline__ void write_header(const EncodeParams& p) {
  if (p.header_out != nullptr && blockIdx.x == 0 && threadIdx.x < kFrameHeaderBytes)
    p.header_out[threadIdx.x] = p.header.bytes[threadIdx.x];
}

// v for one group: x, or x + r (rounded as the CPU rounds, NaN bits included).
template <typename T, Feedback F>
__device__ __forceinline__ void load_values(const T* x, const float* r, const dev::GroupPos& g,
                                            float (&v)[8]) {
  dev::load8(x + g.first, g.count, v);
  if constexpr (F == Feedback::kDense) {
    float rv[8];
    dev::load8(r + g.first, g.count, rv);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = dev::add(v[i], rv[i]);
  }
}

template <Feedback F, int kBits>
__device__ __forceinline__ void encode_group(float* r, const EncodeParams& p,
                                             const dev::GroupPos& g, const float (&v)[8],
                                             uint32_t absmax) {
  const int bits = kBits != 0 ? kBits : p.bits;
  const quant::BlockScale s = quant::block_scale(absmax, bits);
  if (g.block_start) dev::store_u32(p.scales + 4 * g.block, float_bits(s.scale));
  float nr[8];
  const dev::Codes c = dev::quantize8(v, g.count, s, bits, p.stochastic, p.key, g.first, nr);
  dev::store_codes(p.codes + (g.first / kGroupElems) * static_cast<uint64_t>(bits), c,
                   dev::group_bytes(g.count, bits));
  if (!s.finite) return;  // a NaN/Inf block keeps its residual
  if constexpr (F == Feedback::kDense) dev::store8(r + g.first, g.count, nr);
  if constexpr (F == Feedback::kScatter) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (i < g.count) r[p.scatter[g.first + i]] = nr[i];
  }
}

template <typename T, Feedback F, int kBits>
__global__ void __launch_bounds__(kTileThreads)
    quant_encode_tiles(const T* __restrict__ x, float* r, EncodeParams p) {
  write_header(p);
  __shared__ uint32_t block_absmax[kTileThreads];
  const dev::GroupPos g = dev::locate(p.shape, p.n, blockIdx.x, threadIdx.x);
  float v[8];
  if (g.count > 0) {
    load_values<T, F>(x, r, g, v);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = 0.0f;
  }
  const uint32_t absmax = dev::group_absmax(v, g.count);
  if (threadIdx.x < p.shape.tile_blocks) block_absmax[threadIdx.x] = 0;
  __syncthreads();
  // Lanes of one warp that share a block reduce together; the lowest one publishes.
  const uint32_t segment = g.count > 0 ? g.tile_block : 0xFFFFFFFFu;
  const unsigned peers = __match_any_sync(0xFFFFFFFFu, segment);
  const uint32_t m = lanes_max(peers, absmax);
  if (g.count > 0 && (threadIdx.x & 31u) == static_cast<unsigned>(__ffs(peers) - 1))
    atomicMax(&block_absmax[g.tile_block], m);
  __syncthreads();
  if (g.count == 0) return;
  encode_group<F, kBits>(r, p, g, v, block_absmax[g.tile_block]);
}

// Large blocks, pass 1: every tile lies inside one block.
template <typename T, Feedback F>
__global__ void __launch_bounds__(kTileThreads)
    quant_absmax_large(const T* __restrict__ x, const float* r, EncodeParams p) {
  __shared__ uint32_t warp_max[kTileThreads / 32];
  const dev::GroupPos g = dev::locate(p.shape, p.n, blockIdx.x, threadIdx.x);
  float v[8];
  uint32_t m = 0;
  if (g.count > 0) {
    load_values<T, F>(x, r, g, v);
    m = dev::group_absmax(v, g.count);
  }
  m = lanes_max(0xFFFFFFFFu, m);
  if ((threadIdx.x & 31u) == 0) warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = threadIdx.x < kTileThreads / 32 ? warp_max[threadIdx.x] : 0u;
    m = lanes_max(0xFFFFFFFFu, m);
    const uint64_t block = blockIdx.x / p.shape.chunks_per_block;
    if (threadIdx.x == 0 && m != 0) atomicMax(&p.absmax[block], m);
  }
}

// Large blocks, pass 2.
template <typename T, Feedback F, int kBits>
__global__ void __launch_bounds__(kTileThreads)
    quant_encode_large(const T* __restrict__ x, float* r, EncodeParams p) {
  write_header(p);
  const dev::GroupPos g = dev::locate(p.shape, p.n, blockIdx.x, threadIdx.x);
  if (g.count == 0) return;
  float v[8];
  load_values<T, F>(x, r, g, v);
  encode_group<F, kBits>(r, p, g, v, p.absmax[g.block]);
}

struct DecodeParams {
  TileShape shape;
  uint64_t n;
  int bits;
  bool accumulate;
  float scale;  // 1 with accumulate
  const uint8_t* scales;
  const uint8_t* codes;
  const unsigned long long* scatter_pos1;
  const DecodeCheck* check;
};

__device__ __forceinline__ bool check_failed(const DecodeCheck* c) {
  return c != nullptr && (c->bad_scale_block != ~0ull || c->bad_index != ~0ull ||
                          c->bad_padding != ~0u || c->bad_header != ~0u);
}

template <typename T, bool kScatter, int kBits>
__global__ void __launch_bounds__(kTileThreads) quant_decode_tiles(T* out, DecodeParams p) {
  if (check_failed(p.check)) return;
  const dev::GroupPos g = dev::locate(p.shape, p.n, blockIdx.x, threadIdx.x);
  if (g.count == 0) return;
  const int bits = kBits != 0 ? kBits : p.bits;
  const int32_t l = quant::levels(bits);
  const float scale = bits_float(dev::load_u32(p.scales + 4 * g.block));
  const dev::Codes c =
      dev::load_codes(p.codes + (g.first / kGroupElems) * static_cast<uint64_t>(bits),
                      dev::group_bytes(g.count, bits));
  float d[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int32_t q = static_cast<int32_t>(dev::code_at(c, i, bits)) - l;
    d[i] = dev::mul(static_cast<float>(q), scale);
  }
  if (p.scale != 1.0f) {  // the caller's factor (an average's 1/n), before the one rounding
#pragma unroll
    for (int i = 0; i < 8; ++i) d[i] = dev::mul(d[i], p.scale);
  }
  if constexpr (!kScatter) {
    T* o = out + g.first;
    if (p.accumulate) {
      float prev[8];
      dev::load8(o, g.count, prev);
#pragma unroll
      for (int i = 0; i < 8; ++i) d[i] = dev::add(prev[i], d[i]);
    }
    dev::store8(o, g.count, d);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (i >= g.count) break;
      T* o = out + (p.scatter_pos1[g.first + i] - 1);
      const float value = p.accumulate ? dev::add(dev::to_f32(*o), d[i]) : d[i];
      *o = dev::from_f32<T>(value);
    }
  }
}

// Scales must be +0, positive finite or NaN; the code padding must be zero; the header (when
// given) must be the expected one.
__global__ void quant_check(const uint8_t* scales, uint64_t blocks, const uint8_t* codes,
                            uint64_t code_bytes, int pad_bits, DecodeCheck* check,
                            const uint8_t* header, HeaderBytes expected) {
  if (header != nullptr && blockIdx.x == 0 && threadIdx.x < kFrameHeaderBytes &&
      header[threadIdx.x] != expected.bytes[threadIdx.x])
    atomicMin(&check->bad_header, static_cast<unsigned>(threadIdx.x));
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t b = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += stride) {
    const uint32_t s = dev::load_u32(scales + 4 * b);
    if (!(s < kFloatInfBits || (s & 0x7FFFFFFFu) > kFloatInfBits))
      atomicMin(&check->bad_scale_block, static_cast<unsigned long long>(b));
  }
  if (blockIdx.x == 0 && threadIdx.x == 0 && pad_bits != 0 && code_bytes > 0 &&
      (codes[code_bytes - 1] >> (8 - pad_bits)) != 0)
    check->bad_padding = 0;
}

__global__ void write_header_kernel(HeaderBytes h, uint8_t* out) {
  if (threadIdx.x < kFrameHeaderBytes) out[threadIdx.x] = h.bytes[threadIdx.x];
}

// Calls f(std::integral_constant<int, B>) with B = bits for the widths that get their own kernels,
// 0 (bits read at run time) for the others.
template <typename F>
Status with_bits(int bits, F&& f) {
  switch (bits) {
    case 8:
      return f(std::integral_constant<int, 8>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    default:
      return f(std::integral_constant<int, 0>{});
  }
}

Status grid_of(uint64_t tiles, unsigned* grid) {
  if (tiles > 0x7FFFFFFFu) return Unsupported("too many elements for one launch");
  *grid = static_cast<unsigned>(tiles);
  return OkStatus();
}

template <typename T, Feedback F>
Status launch_encode_typed(const QuantSectionEncode& a, const EncodeParams& p,
                           cudaStream_t stream) {
  const T* x = static_cast<const T*>(a.values);
  unsigned grid = 0;
  GP_RETURN_IF_ERROR(grid_of(p.shape.tiles, &grid));
  if (grid == 0) {  // nothing to encode; the header still goes out
    if (p.header_out != nullptr) return launch_write_header(p.header, p.header_out, stream);
    return OkStatus();
  }
  return with_bits(a.bits, [&](auto b) -> Status {
    constexpr int kBits = decltype(b)::value;
    if (p.shape.chunks_per_block == 1) {
      quant_encode_tiles<T, F, kBits><<<grid, kTileThreads, 0, stream>>>(x, a.residual, p);
    } else {
      const uint64_t blocks = (a.n + a.block - 1) / a.block;
      GP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(p.absmax, 0, blocks * 4, stream));
      quant_absmax_large<T, F><<<grid, kTileThreads, 0, stream>>>(x, a.residual, p);
      quant_encode_large<T, F, kBits><<<grid, kTileThreads, 0, stream>>>(x, a.residual, p);
    }
    return cuda_error(cudaPeekAtLastError(), "quant encode launch");
  });
}

template <typename T>
Status launch_decode_typed(const QuantSectionDecode& a, const DecodeParams& p, unsigned grid,
                           cudaStream_t stream) {
  T* out = static_cast<T*>(a.out);
  return with_bits(a.bits, [&](auto b) -> Status {
    constexpr int kBits = decltype(b)::value;
    if (a.scatter_pos1 != nullptr) {
      quant_decode_tiles<T, true, kBits><<<grid, kTileThreads, 0, stream>>>(out, p);
    } else {
      quant_decode_tiles<T, false, kBits><<<grid, kTileThreads, 0, stream>>>(out, p);
    }
    return cuda_error(cudaPeekAtLastError(), "quant decode launch");
  });
}

}  // namespace

size_t quant_encode_scratch_bytes(uint64_t n, uint32_t block) {
  if (block <= kTileElems) return 0;
  return (n + block - 1) / block * 4;
}

Status launch_write_header(const HeaderBytes& h, uint8_t* out, cudaStream_t stream) {
  write_header_kernel<<<1, 64, 0, stream>>>(h, out);
  return cuda_error(cudaPeekAtLastError(), "header launch");
}

Status launch_quant_encode(const QuantSectionEncode& a, cudaStream_t stream) {
  EncodeParams p{};
  p.shape = tile_shape(a.n, a.block);
  p.n = a.n;
  p.bits = a.bits;
  p.stochastic = a.stochastic;
  p.key = a.key;
  const uint64_t blocks = (a.n + a.block - 1) / a.block;
  p.scales = a.section;
  p.codes = a.section + blocks * 4;
  p.absmax = a.absmax_scratch;
  p.scatter = a.scatter;
  if (a.header != nullptr) p.header = *a.header;
  p.header_out = a.header != nullptr ? a.header_out : nullptr;
  if (p.shape.chunks_per_block > 1 && p.absmax == nullptr)
    return Internal("large-block quant encode without absmax scratch");
  if (a.scatter != nullptr) {
    if (a.dtype != GP_FLOAT32) return Internal("scattered feedback needs fp32 values");
    return launch_encode_typed<float, Feedback::kScatter>(a, p, stream);
  }
  const bool fb = a.residual != nullptr;
  switch (a.dtype) {
    case GP_FLOAT32:
      return fb ? launch_encode_typed<float, Feedback::kDense>(a, p, stream)
                : launch_encode_typed<float, Feedback::kNone>(a, p, stream);
    case GP_FLOAT16:
      return fb ? launch_encode_typed<Half, Feedback::kDense>(a, p, stream)
                : launch_encode_typed<Half, Feedback::kNone>(a, p, stream);
    case GP_BFLOAT16:
      return fb ? launch_encode_typed<BFloat, Feedback::kDense>(a, p, stream)
                : launch_encode_typed<BFloat, Feedback::kNone>(a, p, stream);
    default:
      return Internal("quant encode of a non-float dtype");
  }
}

Status launch_quant_check(const uint8_t* section, uint64_t n, int bits, uint32_t block,
                          DecodeCheck* check, cudaStream_t stream, const uint8_t* header,
                          const HeaderBytes* expected) {
  const uint64_t blocks = (n + block - 1) / block;
  if (blocks == 0 && header == nullptr) return OkStatus();
  HeaderBytes want_header{};
  if (header != nullptr) {
    if (expected == nullptr) return Internal("header check without the expected header");
    want_header = *expected;
  }
  const uint64_t code_bytes = (n * static_cast<uint64_t>(bits) + 7) / 8;
  const int pad_bits = static_cast<int>((8 - (n * static_cast<uint64_t>(bits)) % 8) % 8);
  const uint64_t want = blocks == 0 ? 1 : (blocks + 255) / 256;
  const unsigned grid = static_cast<unsigned>(want < 1024 ? want : 1024);
  quant_check<<<grid, 256, 0, stream>>>(section, blocks, section + blocks * 4, code_bytes, pad_bits,
                                        check, header, want_header);
  return cuda_error(cudaPeekAtLastError(), "quant check launch");
}

Status launch_quant_decode(const QuantSectionDecode& a, cudaStream_t stream) {
  DecodeParams p{};
  p.shape = tile_shape(a.n, a.block);
  p.n = a.n;
  p.bits = a.bits;
  p.accumulate = a.accumulate;
  p.scale = a.accumulate ? 1.0f : a.scale;
  const uint64_t blocks = (a.n + a.block - 1) / a.block;
  p.scales = a.section;
  p.codes = a.section + blocks * 4;
  p.scatter_pos1 = a.scatter_pos1;
  p.check = a.check;
  unsigned grid = 0;
  GP_RETURN_IF_ERROR(grid_of(p.shape.tiles, &grid));
  if (grid == 0) return OkStatus();
  switch (a.dtype) {
    case GP_FLOAT32:
      return launch_decode_typed<float>(a, p, grid, stream);
    case GP_FLOAT16:
      return launch_decode_typed<Half>(a, p, grid, stream);
    case GP_BFLOAT16:
      return launch_decode_typed<BFloat>(a, p, grid, stream);
    default:
      return Internal("quant decode into a non-float dtype");
  }
}

namespace {

Status check_quant_spec(const QuantSpec& q) {
  if (q.bits >= kMinBits && q.bits <= kMaxBits && q.block >= 8 && q.block <= kMaxBlock &&
      q.block % 8 == 0)
    return OkStatus();
  CodecSpec spec;
  spec.kind = CodecKind::kQuant;
  spec.quant = q;
  return InvalidArgument("quantizer " + spec.canonical() + " is out of range");
}

}  // namespace

Status quant_frame_header(const QuantSpec& q, size_t count, gp_dtype_t in_dtype,
                          uint8_t out[kFrameHeaderBytes]) {
  GP_RETURN_IF_ERROR(check_quant_spec(q));
  if (!is_float(in_dtype))
    return InvalidArgument("q<b> frames are encoded from float32, float16 or bfloat16, not dtype " +
                           std::to_string(static_cast<int>(in_dtype)));
  if (count > kMaxFrameCount)
    return InvalidArgument("count " + std::to_string(count) + " exceeds the largest frame");
  const FrameHeader h = gradpack::quant_frame_header(q, count, in_dtype);
  write_frame_header(h, out);
  return OkStatus();
}

Status quant_encode(const void* in, gp_dtype_t dtype, size_t count, float* residual,
                    const QuantSpec& q, uint64_t call_index, Workspace& ws, void* frame,
                    size_t capacity, size_t* frame_bytes, cudaStream_t stream) {
  CodecSpec spec;
  spec.kind = CodecKind::kQuant;
  spec.quant = q;
  GP_RETURN_IF_ERROR(check_quant_spec(q));
  GP_RETURN_IF_ERROR(
      check_encode_args(spec, in, dtype, count, residual, frame, capacity, frame_bytes));
  HeaderBytes hb;
  GP_RETURN_IF_ERROR(quant_frame_header(q, count, dtype, hb.bytes));

  QuantSectionEncode a;
  a.values = in;
  a.dtype = dtype;
  a.n = count;
  a.residual = residual;
  a.bits = q.bits;
  a.block = q.block;
  a.stochastic = q.rounding == Rounding::kStochastic;
  a.key = quant::stream_key(q.seed, call_index);
  a.section = static_cast<uint8_t*>(frame) + kFrameHeaderBytes;
  a.header = &hb;
  a.header_out = static_cast<uint8_t*>(frame);
  if (const size_t scratch = quant_encode_scratch_bytes(count, q.block); scratch > 0) {
    void* d = nullptr;
    GP_RETURN_IF_ERROR(ws.device(scratch, stream, &d));
    a.absmax_scratch = static_cast<uint32_t*>(d);
  }
  GP_RETURN_IF_ERROR(launch_quant_encode(a, stream));
  *frame_bytes = kFrameHeaderBytes + quant_section_bytes(count, q.bits, q.block);
  return OkStatus();
}

namespace {

// The expected header is the gate: it must parse, describe a q<b> frame of exactly frame_bytes,
// and match the caller's count and dtype. The received header is compared with it on the device.
Status check_quant_decode_args(const QuantDecodeArgs& a, FrameHeader* h, FrameLayout* l) {
  if (a.frame == nullptr) return InvalidArgument("frame is NULL");
  if (a.expected_header == nullptr) return InvalidArgument("expected_header is NULL");
  if (a.check == nullptr) return InvalidArgument("check is NULL");
  if (reinterpret_cast<uintptr_t>(a.check) % alignof(DecodeCheck) != 0)
    return InvalidArgument("check is not " + std::to_string(alignof(DecodeCheck)) +
                           "-byte aligned");
  if (a.accumulate && a.scale != 1.0f)
    return InvalidArgument("scale " + std::to_string(a.scale) +
                           " with accumulate: a scale applies only to a plain decode");
  const Status parsed = read_frame_header(a.expected_header, a.frame_bytes, h, l);
  if (!parsed.ok())
    return InvalidArgument("expected header for a " + std::to_string(a.frame_bytes) +
                           "-byte frame: " + parsed.message());
  if (h->codec != CodecKind::kQuant)
    return InvalidArgument(std::string("expected header is of a ") + codec_kind_name(h->codec) +
                           " frame; quant_decode takes q<b> frames");
  return check_decode_target(*h, a.count, a.dtype, a.out);
}

}  // namespace

Status quant_decode(const QuantDecodeArgs& a, cudaStream_t stream) {
  FrameHeader h;
  FrameLayout l;
  GP_RETURN_IF_ERROR(check_quant_decode_args(a, &h, &l));
  HeaderBytes expected;
  std::memcpy(expected.bytes, a.expected_header, kFrameHeaderBytes);
  auto* check = static_cast<DecodeCheck*>(a.check);
  const auto* frame = static_cast<const uint8_t*>(a.frame);
  const uint8_t* section = frame + kFrameHeaderBytes + l.scales_offset;
  // Stream order puts the check before the decode, which reads it and stands down if anything
  // (this frame, or any earlier one since the caller's reset) lowered it.
  GP_RETURN_IF_ERROR(
      launch_quant_check(section, h.count, h.bits, h.block, check, stream, frame, &expected));
  QuantSectionDecode d;
  d.section = section;
  d.n = h.count;
  d.bits = h.bits;
  d.block = h.block;
  d.out = a.out;
  d.dtype = a.dtype;
  d.accumulate = a.accumulate;
  d.scale = a.scale;
  d.check = check;
  return launch_quant_decode(d, stream);
}

}  // namespace gradpack::cuda
