// SPDX-License-Identifier: Apache-2.0
// Top-k on the GPU, the same frames as the CPU top-k.
//
// Encode: v = x + r is recomputed by each pass rather than stored.
//   1. Radix select: three histogram passes over the 31-bit keys (11, 10, 10 bits) find the k-th
//      largest key K and how many elements equal to K are kept (the first ones, by index).
//   2. Compaction in index order: each tile of 2048 elements counts its keys > K and == K, a scan
//      over the tiles gives each tile its start, and a block scan gives each element its slot. The
//      same pass writes the kept indices and values, the bitmap, and r' = v for elements not kept.
//   3. Varint lengths and an inclusive scan give the varint section's size; the host reads it (one
//      wait), picks the smaller index encoding, writes the header and launches the section writers.
//   4. Values: copied (fp32) or quantized with the quantizer's kernels over the kept sequence,
//   whose
//      residual updates are scattered back through the indices.
// Decode: the index section is checked and turned into positions on the device (varints via a scan
// of their terminating bytes, bitmaps via a scan of byte popcounts), the values section is checked,
// the host waits for the verdict, then the values are scattered.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cub/cub.cuh>

#include "compression/codec_impl.h"
#include "compression/cuda/codec_cuda.h"
#include "compression/cuda/float_device.cuh"
#include "compression/cuda/launch.h"
#include "compression/cuda/topk_device.cuh"
#include "compression/quantize/quant_ref.h"

namespace gradpack::cuda {
namespace {

using dev::BFloat;
using dev::Half;

constexpr int kSelectThreads = 1024;

struct SelectState {
  uint32_t prefix;               // key bits decided so far
  uint32_t mask;                 // which bits those are
  unsigned long long remaining;  // elements still to take among those matching the prefix
  unsigned long long equal;      // after the last pass: elements whose key is the threshold
};

struct TileCount {
  unsigned long long greater, equal;
};
struct TileCountSum {
  __host__ __device__ TileCount operator()(const TileCount& a, const TileCount& b) const {
    return {a.greater + b.greater, a.equal + b.equal};
  }
};

// Read back after compaction.
struct EncodeReadback {
  unsigned long long varint_bytes;
  SelectState select;
};

// v for a group of 8 elements from `first`, and the old residual (zero without feedback).
template <typename T, bool kFeedback>
__device__ __forceinline__ void load_group(const T* x, const float* r, uint64_t first, int count,
                                           float (&v)[8], float (&old)[8]) {
  dev::load8(x + first, count, v);
  if constexpr (kFeedback) {
    dev::load8(r + first, count, old);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = dev::add(v[i], old[i]);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) old[i] = 0.0f;
  }
}

__device__ __forceinline__ int group_count(uint64_t first, uint64_t n) {
  return first < n ? static_cast<int>(n - first < 8 ? n - first : 8) : 0;
}

__global__ void select_init(SelectState* st, unsigned long long* hist, uint64_t k) {
  for (int i = threadIdx.x; i < dev::kMaxDigitBins; i += blockDim.x) hist[i] = 0;
  if (threadIdx.x == 0) *st = SelectState{0u, 0u, k, 0ull};
}

template <typename T, bool kFeedback>
__global__ void __launch_bounds__(kTileThreads)
    select_histogram(const T* __restrict__ x, const float* __restrict__ r, uint64_t n,
                     const SelectState* st, int pass, unsigned long long* hist) {
  __shared__ uint32_t bins_smem[dev::kMaxDigitBins];
  const int bins = dev::digit_bins(pass);
  const int shift = dev::digit_shift(pass);
  for (int i = threadIdx.x; i < bins; i += blockDim.x) bins_smem[i] = 0;
  __syncthreads();
  const uint32_t prefix = st->prefix;
  const uint32_t mask = st->mask;
  const unsigned lane = threadIdx.x & 31u;
  const uint64_t groups = (n + kGroupElems - 1) / kGroupElems;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  // Warp-uniform loop: every lane reaches the __match_any_sync below.
  for (uint64_t base = static_cast<uint64_t>(blockIdx.x) * blockDim.x + (threadIdx.x & ~31u);
       base < groups; base += stride) {
    const uint64_t g = base + lane;
    const int count = g < groups ? group_count(g * kGroupElems, n) : 0;
    float v[8], old[8];
    if (count > 0) {
      load_group<T, kFeedback>(x, r, g * kGroupElems, count, v, old);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t key = i < count ? dev::topk_key(v[i]) : 0u;
      const bool match = i < count && (key & mask) == prefix;
      if (!__any_sync(0xFFFFFFFFu, match)) continue;
      const uint32_t bin = match ? (key >> shift) & static_cast<uint32_t>(bins - 1) : 0xFFFFFFFFu;
      const unsigned peers = __match_any_sync(0xFFFFFFFFu, bin);
      if (match && lane == static_cast<unsigned>(__ffs(peers) - 1))
        atomicAdd(&bins_smem[bin], static_cast<uint32_t>(__popc(peers)));
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < bins; i += blockDim.x)
    if (bins_smem[i] != 0) atomicAdd(&hist[i], static_cast<unsigned long long>(bins_smem[i]));
}

// Picks the digit of this pass: the bin, counted from the top, where the remaining count falls.
// Clears the histogram for the next pass.
__global__ void __launch_bounds__(kSelectThreads)
    select_digit(SelectState* st, unsigned long long* hist, int pass) {
  using Scan = cub::BlockScan<unsigned long long, kSelectThreads>;
  __shared__ typename Scan::TempStorage scan;
  const int bins = dev::digit_bins(pass);
  const int shift = dev::digit_shift(pass);
  const int hi = bins - 1 - 2 * static_cast<int>(threadIdx.x);
  const int lo = hi - 1;
  const unsigned long long c_hi = hi >= 0 ? hist[hi] : 0ull;
  const unsigned long long c_lo = lo >= 0 ? hist[lo] : 0ull;
  unsigned long long above = 0;
  Scan(scan).ExclusiveSum(c_hi + c_lo, above);
  const unsigned long long remaining = st->remaining;
  __syncthreads();
  if (hi >= 0) hist[hi] = 0;
  if (lo >= 0) hist[lo] = 0;
  int digit = -1;
  unsigned long long before = 0, in_bin = 0;
  if (hi >= 0 && above < remaining && remaining <= above + c_hi) {
    digit = hi, before = above, in_bin = c_hi;
  } else if (lo >= 0 && above + c_hi < remaining && remaining <= above + c_hi + c_lo) {
    digit = lo, before = above + c_hi, in_bin = c_lo;
  }
  if (digit >= 0) {
    st->prefix |= static_cast<uint32_t>(digit) << shift;
    st->mask |= static_cast<uint32_t>(bins - 1) << shift;
    st->remaining = remaining - before;
    st->equal = in_bin;
  }
}

// Per tile: keys above the threshold and equal to it (packed: each is at most 2048).
template <typename T, bool kFeedback>
__global__ void __launch_bounds__(kTileThreads)
    compact_count(const T* __restrict__ x, const float* __restrict__ r, uint64_t n,
                  const SelectState* st, TileCount* counts) {
  using Reduce = cub::BlockReduce<uint32_t, kTileThreads>;
  __shared__ typename Reduce::TempStorage reduce;
  const uint64_t first = (static_cast<uint64_t>(blockIdx.x) * kTileThreads + threadIdx.x) * 8;
  const int count = group_count(first, n);
  const uint32_t threshold = st->prefix;
  uint32_t packed = 0;
  if (count > 0) {
    float v[8], old[8];
    load_group<T, kFeedback>(x, r, first, count, v, old);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t key = dev::topk_key(v[i]);
      if (i < count) packed += (key > threshold ? 1u << 16 : 0u) + (key == threshold ? 1u : 0u);
    }
  }
  packed = Reduce(reduce).Sum(packed);
  if (threadIdx.x == 0) counts[blockIdx.x] = TileCount{packed >> 16, packed & 0xFFFFu};
}

template <typename T, bool kFeedback>
__global__ void __launch_bounds__(kTileThreads)
    compact_emit(const T* __restrict__ x, float* r, uint64_t n, const SelectState* st,
                 const TileCount* tile_start, uint64_t* indices, float* values, uint8_t* bitmap) {
  using Scan = cub::BlockScan<uint32_t, kTileThreads>;
  __shared__ typename Scan::TempStorage scan;
  const uint64_t g = static_cast<uint64_t>(blockIdx.x) * kTileThreads + threadIdx.x;
  const uint64_t first = g * 8;
  const int count = group_count(first, n);
  const uint32_t threshold = st->prefix;
  const unsigned long long take_equal = st->remaining;
  float v[8], old[8];
  uint32_t keys[8];
  uint32_t packed = 0;
  if (count > 0) load_group<T, kFeedback>(x, r, first, count, v, old);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    keys[i] = i < count ? dev::topk_key(v[i]) : 0u;
    if (i < count)
      packed += (keys[i] > threshold ? 1u << 16 : 0u) + (keys[i] == threshold ? 1u : 0u);
  }
  uint32_t before = 0;
  Scan(scan).ExclusiveSum(packed, before);
  if (count == 0) return;
  const TileCount start = tile_start[blockIdx.x];
  unsigned long long greater = start.greater + (before >> 16);
  unsigned long long equal = start.equal + (before & 0xFFFFu);
  uint32_t kept_bits = 0;
  float next[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    // A NaN or Inf never enters the residual, kept or not.
    next[i] = dev::is_finite(v[i]) ? v[i] : old[i];
    if (i >= count) continue;
    const bool gt = keys[i] > threshold;
    const bool eq = keys[i] == threshold;
    if (gt || (eq && equal < take_equal)) {
      const unsigned long long slot = greater + (equal < take_equal ? equal : take_equal);
      indices[slot] = first + i;
      values[slot] = v[i];
      kept_bits |= 1u << i;
      next[i] = old[i];  // rewritten once the value's decoded form is known
    }
    greater += gt;
    equal += eq;
  }
  bitmap[g] = static_cast<uint8_t>(kept_bits);
  if constexpr (kFeedback) dev::store8(r + first, count, next);
}

__global__ void varint_lengths(const uint64_t* indices, uint64_t k, unsigned long long* ends) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; j < k;
       j += stride) {
    const uint64_t gap = indices[j] - (j > 0 ? indices[j - 1] + 1 : 0);
    ends[j] = static_cast<unsigned long long>(dev::varint_length(gap));
  }
}

__global__ void varint_write(const uint64_t* indices, uint64_t k, const unsigned long long* ends,
                             uint8_t* section) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; j < k;
       j += stride) {
    const uint64_t gap = indices[j] - (j > 0 ? indices[j - 1] + 1 : 0);
    dev::write_varint(section + (ends[j] - dev::varint_length(gap)), gap);
  }
}

// fp32 values are sent exactly: a kept finite value's residual is v - v = +0.
__global__ void kept_feedback_f32(const uint64_t* indices, const float* values, uint64_t k,
                                  float* r) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; j < k;
       j += stride)
    if (dev::is_finite(values[j])) r[indices[j]] = 0.0f;
}

__device__ __forceinline__ void index_problem(DecodeCheck* check, IndexError e, uint64_t at) {
  const uint64_t limit = (uint64_t{1} << kIndexErrorShift) - 1;
  atomicMin(&check->bad_index,
            (static_cast<unsigned long long>(e) << kIndexErrorShift) | (at < limit ? at : limit));
}

__global__ void varint_mark(const uint8_t* section, uint64_t bytes, unsigned long long* ord) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t p = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; p < bytes;
       p += stride)
    ord[p] = section[p] < 0x80u ? 1ull : 0ull;
}

// Each varint's last byte (high bit clear) decodes it; ord[p] (terminators before p) is its
// ordinal. pos1[j] = gap_j + 1, summed into index + 1 afterwards.
__global__ void varint_parse(const uint8_t* section, uint64_t bytes, const unsigned long long* ord,
                             uint64_t kept, uint64_t count, unsigned long long* pos1,
                             DecodeCheck* check) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t p = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; p < bytes;
       p += stride) {
    if (section[p] >= 0x80u) {
      if (p == bytes - 1) index_problem(check, kIndexLastByteContinues, p);
      continue;
    }
    const uint64_t j = ord[p];
    if (p == bytes - 1 && j + 1 != kept) index_problem(check, kIndexCountMismatch, j);
    if (j >= kept) continue;
    uint64_t start = p;
    while (start > 0 && section[start - 1] >= 0x80u && p - start < 10) --start;
    if (p - start >= 10) {
      index_problem(check, kIndexVarintTooLong, j);
      continue;
    }
    uint64_t gap = 0;
    bool overflow = false;
    for (uint64_t q = start; q <= p; ++q) {
      const uint64_t bits7 = section[q] & 0x7Fu;
      const int at = static_cast<int>(q - start);
      if (at == 9 && bits7 > 1) overflow = true;
      gap |= bits7 << (7 * at);
    }
    if (overflow || gap >= count) {
      index_problem(check, kIndexOutOfRange, j);
      continue;
    }
    pos1[j] = gap + 1;
  }
}

__global__ void positions_check(const unsigned long long* pos1, uint64_t kept, uint64_t count,
                                DecodeCheck* check) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; j < kept;
       j += stride) {
    if (pos1[j] == 0 || pos1[j] > count) index_problem(check, kIndexOutOfRange, j);
    if (j > 0 && pos1[j] <= pos1[j - 1]) index_problem(check, kIndexNotIncreasing, j);
  }
}

__global__ void bitmap_popcount(const uint8_t* section, uint64_t bytes, unsigned long long* ord) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t b = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; b < bytes;
       b += stride)
    ord[b] = static_cast<unsigned long long>(__popc(section[b]));
}

__global__ void bitmap_parse(const uint8_t* section, uint64_t bytes, const unsigned long long* ord,
                             uint64_t kept, uint64_t count, unsigned long long* pos1,
                             DecodeCheck* check) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t b = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; b < bytes;
       b += stride) {
    const uint32_t bits = section[b];
    uint64_t j = ord[b];
    if (b == bytes - 1) {
      const uint64_t valid = count - 8 * b;  // 1..8
      if (valid < 8 && (bits >> valid) != 0) index_problem(check, kIndexBitmapPadding, b);
      if (j + __popc(bits) != kept) index_problem(check, kIndexCountMismatch, b);
    }
    for (int i = 0; i < 8; ++i) {
      if ((bits >> i) & 1u) {
        if (j < kept) pos1[j] = 8 * b + i + 1;
        ++j;
      }
    }
  }
}

template <typename T>
__global__ void scatter_f32(const uint8_t* values, uint64_t kept, const unsigned long long* pos1,
                            T* out, bool accumulate) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; j < kept;
       j += stride) {
    const float d = bits_float(dev::load_u32(values + 4 * j));
    T* o = out + (pos1[j] - 1);
    *o = dev::from_f32<T>(accumulate ? dev::add(dev::to_f32(*o), d) : d);
  }
}

// A grid for grid-stride loops over `items`.
unsigned grid_for(uint64_t items, int threads = 256) {
  const uint64_t want = (items + threads - 1) / threads;
  const uint64_t most = static_cast<uint64_t>(multiprocessor_count()) * 16;
  return static_cast<unsigned>(std::max<uint64_t>(1, std::min(want, most)));
}

// Offsets of sub-buffers in one workspace allocation.
class Carve {
 public:
  size_t take(size_t bytes) {
    offset_ = (offset_ + 255) / 256 * 256;
    const size_t at = offset_;
    offset_ += bytes;
    return at;
  }
  size_t size() const { return offset_; }

 private:
  size_t offset_ = 0;
};

template <typename P>
P* at(void* base, size_t offset) {
  return reinterpret_cast<P*>(static_cast<uint8_t*>(base) + offset);
}

uint64_t kept_count(double fraction, uint64_t count) {
  if (count == 0) return 0;
  const long long r = std::llround(fraction * static_cast<double>(count));
  const uint64_t k = r < 1 ? 1 : static_cast<uint64_t>(r);
  return std::min(count, k);
}

struct SelectBuffers {
  SelectState* st;
  unsigned long long* hist;
  TileCount* counts;
  TileCount* starts;
  uint64_t* indices;
  float* values;
  uint8_t* bitmap;
  void* temp;
  size_t temp_bytes;
};

// Steps 1 and 2: selection and compaction.
template <typename T, bool kFeedback>
Status select_and_compact(const void* in, float* r, uint64_t n, uint64_t k, const SelectBuffers& b,
                          cudaStream_t stream) {
  const T* x = static_cast<const T*>(in);
  select_init<<<1, kSelectThreads, 0, stream>>>(b.st, b.hist, k);
  const uint64_t groups = (n + kGroupElems - 1) / kGroupElems;
  const unsigned hist_grid = static_cast<unsigned>(
      std::max<uint64_t>(1, std::min<uint64_t>((groups + kTileThreads - 1) / kTileThreads,
                                               static_cast<uint64_t>(multiprocessor_count()) * 8)));
  for (int pass = 0; pass < dev::kSelectPasses; ++pass) {
    select_histogram<T, kFeedback>
        <<<hist_grid, kTileThreads, 0, stream>>>(x, r, n, b.st, pass, b.hist);
    select_digit<<<1, kSelectThreads, 0, stream>>>(b.st, b.hist, pass);
  }
  const uint64_t tiles = (n + kTileElems - 1) / kTileElems;
  if (tiles > 0x7FFFFFFFu) return Unsupported("too many elements for one launch");
  const unsigned grid = static_cast<unsigned>(tiles);
  compact_count<T, kFeedback><<<grid, kTileThreads, 0, stream>>>(x, r, n, b.st, b.counts);
  size_t temp_bytes = b.temp_bytes;
  GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveScan(
      b.temp, temp_bytes, b.counts, b.starts, TileCountSum{}, TileCount{0, 0}, tiles, stream));
  compact_emit<T, kFeedback>
      <<<grid, kTileThreads, 0, stream>>>(x, r, n, b.st, b.starts, b.indices, b.values, b.bitmap);
  return cuda_error(cudaPeekAtLastError(), "top-k selection launch");
}

template <typename T>
Status select_typed(const void* in, float* r, uint64_t n, uint64_t k, const SelectBuffers& b,
                    cudaStream_t stream) {
  return r != nullptr ? select_and_compact<T, true>(in, r, n, k, b, stream)
                      : select_and_compact<T, false>(in, r, n, k, b, stream);
}

}  // namespace

Status topk_encode(const void* in, gp_dtype_t dtype, size_t count, float* residual,
                   const CodecSpec& spec, uint64_t call_index, Workspace& ws, void* frame,
                   size_t capacity, size_t* frame_bytes, cudaStream_t stream) {
  if (spec.kind != CodecKind::kTopk)
    return InvalidArgument("topk_encode needs a top-k spec, not " + spec.canonical());
  GP_RETURN_IF_ERROR(
      check_encode_args(spec, in, dtype, count, residual, frame, capacity, frame_bytes));
  const QuantSpec& q = spec.quant;
  const bool quantized = q.bits != 0;
  const uint64_t n = count;
  const uint64_t k = kept_count(spec.fraction, n);
  auto* out = static_cast<uint8_t*>(frame);

  FrameHeader h;
  h.codec = CodecKind::kTopk;
  h.dtype = dtype;
  h.count = n;
  h.kept = k;
  h.bits = quantized ? static_cast<uint8_t>(q.bits) : 0;
  h.block = quantized ? q.block : 0;
  h.flags = quantized && q.rounding == Rounding::kStochastic ? kFlagStochastic : 0;
  h.index_encoding = IndexEncoding::kDeltaVarint;
  const uint64_t values_bytes =
      quantized ? quant_section_bytes(k, q.bits, q.block) : k * sizeof(float);
  HeaderBytes hb;
  if (k == 0) {
    h.payload_bytes = values_bytes;
    write_frame_header(h, hb.bytes);
    GP_RETURN_IF_ERROR(launch_write_header(hb, out, stream));
    *frame_bytes = kFrameHeaderBytes + h.payload_bytes;
    return OkStatus();
  }

  const uint64_t tiles = (n + kTileElems - 1) / kTileElems;
  const uint64_t bitmap_bytes = (n + 7) / 8;
  size_t scan_tiles_bytes = 0, sum_bytes = 0;
  GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveScan(
      nullptr, scan_tiles_bytes, static_cast<TileCount*>(nullptr), static_cast<TileCount*>(nullptr),
      TileCountSum{}, TileCount{0, 0}, tiles, stream));
  GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::InclusiveSum(
      nullptr, sum_bytes, static_cast<unsigned long long*>(nullptr), k, stream));
  Carve c;
  const size_t o_st = c.take(sizeof(SelectState));
  const size_t o_hist = c.take(dev::kMaxDigitBins * sizeof(unsigned long long));
  const size_t o_counts = c.take(tiles * sizeof(TileCount));
  const size_t o_starts = c.take(tiles * sizeof(TileCount));
  const size_t o_indices = c.take(k * sizeof(uint64_t));
  const size_t o_values = c.take(k * sizeof(float));
  const size_t o_ends = c.take(k * sizeof(unsigned long long));
  const size_t o_bitmap = c.take(bitmap_bytes);
  const size_t o_absmax = c.take(quantized ? quant_encode_scratch_bytes(k, q.block) : 0);
  const size_t temp_bytes = std::max(scan_tiles_bytes, sum_bytes);
  const size_t o_temp = c.take(temp_bytes);
  void* base = nullptr;
  void* host = nullptr;
  GP_RETURN_IF_ERROR(ws.device(c.size(), stream, &base));
  GP_RETURN_IF_ERROR(ws.host(sizeof(EncodeReadback), &host));
  SelectBuffers b{at<SelectState>(base, o_st),
                  at<unsigned long long>(base, o_hist),
                  at<TileCount>(base, o_counts),
                  at<TileCount>(base, o_starts),
                  at<uint64_t>(base, o_indices),
                  at<float>(base, o_values),
                  at<uint8_t>(base, o_bitmap),
                  at<void>(base, o_temp),
                  temp_bytes};
  auto* ends = at<unsigned long long>(base, o_ends);

  switch (dtype) {
    case GP_FLOAT32:
      GP_RETURN_IF_ERROR(select_typed<float>(in, residual, n, k, b, stream));
      break;
    case GP_FLOAT16:
      GP_RETURN_IF_ERROR(select_typed<Half>(in, residual, n, k, b, stream));
      break;
    case GP_BFLOAT16:
      GP_RETURN_IF_ERROR(select_typed<BFloat>(in, residual, n, k, b, stream));
      break;
    default:
      return Internal("top-k of a non-float dtype");
  }
  varint_lengths<<<grid_for(k), 256, 0, stream>>>(b.indices, k, ends);
  GP_CUDA_RETURN_IF_ERROR(cudaPeekAtLastError());
  size_t sum_temp = temp_bytes;
  GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::InclusiveSum(b.temp, sum_temp, ends, k, stream));
  auto* rb = static_cast<EncodeReadback*>(host);
  GP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
      &rb->varint_bytes, ends + (k - 1), sizeof(rb->varint_bytes), cudaMemcpyDeviceToHost, stream));
  GP_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(&rb->select, b.st, sizeof(SelectState), cudaMemcpyDeviceToHost, stream));
  GP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  if (rb->select.mask != 0x7FFFFFFFu || rb->select.remaining == 0 ||
      rb->select.remaining > rb->select.equal)
    return Internal("top-k selection ended in an impossible state");

  const uint64_t varint_bytes = rb->varint_bytes;
  const bool bitmap = bitmap_bytes < varint_bytes;
  h.index_encoding = bitmap ? IndexEncoding::kBitmap : IndexEncoding::kDeltaVarint;
  h.index_bytes = bitmap ? bitmap_bytes : varint_bytes;
  h.payload_bytes = h.index_bytes + values_bytes;
  if (kFrameHeaderBytes + h.payload_bytes > capacity)
    return Internal("top-k frame of " + std::to_string(kFrameHeaderBytes + h.payload_bytes) +
                    " bytes exceeds max_encoded_bytes()");
  write_frame_header(h, hb.bytes);
  uint8_t* index_out = out + kFrameHeaderBytes;
  uint8_t* values_out = index_out + h.index_bytes;
  if (bitmap) {
    GP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(index_out, b.bitmap, bitmap_bytes, cudaMemcpyDeviceToDevice, stream));
  } else {
    varint_write<<<grid_for(k), 256, 0, stream>>>(b.indices, k, ends, index_out);
    GP_CUDA_RETURN_IF_ERROR(cudaPeekAtLastError());
  }
  if (quantized) {
    QuantSectionEncode a;
    a.values = b.values;
    a.dtype = GP_FLOAT32;
    a.n = k;
    a.residual = residual;
    a.scatter = residual != nullptr ? b.indices : nullptr;
    a.bits = q.bits;
    a.block = q.block;
    a.stochastic = q.rounding == Rounding::kStochastic;
    a.key = quant::stream_key(q.seed, call_index);
    a.section = values_out;
    a.absmax_scratch = at<uint32_t>(base, o_absmax);
    a.header = &hb;
    a.header_out = out;
    GP_RETURN_IF_ERROR(launch_quant_encode(a, stream));
  } else {
    GP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(values_out, b.values, k * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    if (residual != nullptr) {
      kept_feedback_f32<<<grid_for(k), 256, 0, stream>>>(b.indices, b.values, k, residual);
      GP_CUDA_RETURN_IF_ERROR(cudaPeekAtLastError());
    }
    GP_RETURN_IF_ERROR(launch_write_header(hb, out, stream));
  }
  *frame_bytes = kFrameHeaderBytes + h.payload_bytes;
  return OkStatus();
}

Status topk_decode_frame(const FrameHeader& h, const FrameLayout& l, const uint8_t* payload,
                         void* out, gp_dtype_t dtype, bool accumulate, Workspace& ws,
                         cudaStream_t stream) {
  const uint64_t n = h.count;
  const uint64_t kept = h.kept;
  const size_t out_bytes = n * dtype_size(dtype);
  const bool bitmap = h.index_encoding == IndexEncoding::kBitmap;
  const uint64_t index_bytes = h.index_bytes;
  if (index_bytes == 0) {  // no element was sent (an empty varint section holds kept == 0)
    if (!accumulate && out_bytes > 0)
      GP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(out, 0, out_bytes, stream));
    return OkStatus();
  }
  size_t ord_temp = 0, pos_temp = 0;
  GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(
      nullptr, ord_temp, static_cast<unsigned long long*>(nullptr), index_bytes, stream));
  if (kept > 0 && !bitmap)
    GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::InclusiveSum(
        nullptr, pos_temp, static_cast<unsigned long long*>(nullptr), kept, stream));
  Carve c;
  const size_t o_check = c.take(sizeof(DecodeCheck));
  const size_t o_ord = c.take(index_bytes * sizeof(unsigned long long));
  const size_t o_pos = c.take(kept * sizeof(unsigned long long));
  const size_t temp_bytes = std::max(ord_temp, pos_temp);
  const size_t o_temp = c.take(temp_bytes);
  void* base = nullptr;
  void* host = nullptr;
  GP_RETURN_IF_ERROR(ws.device(c.size(), stream, &base));
  GP_RETURN_IF_ERROR(ws.host(sizeof(DecodeCheck), &host));
  auto* check = at<DecodeCheck>(base, o_check);
  auto* ord = at<unsigned long long>(base, o_ord);
  auto* pos1 = at<unsigned long long>(base, o_pos);
  void* temp = at<void>(base, o_temp);

  const uint8_t* index = payload + l.index_offset;
  GP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(check, 0xFF, sizeof(DecodeCheck), stream));
  const unsigned byte_grid = grid_for(index_bytes);
  size_t t = temp_bytes;
  if (bitmap) {
    bitmap_popcount<<<byte_grid, 256, 0, stream>>>(index, index_bytes, ord);
    GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(temp, t, ord, index_bytes, stream));
    bitmap_parse<<<byte_grid, 256, 0, stream>>>(index, index_bytes, ord, kept, n, pos1, check);
  } else {
    varint_mark<<<byte_grid, 256, 0, stream>>>(index, index_bytes, ord);
    GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::ExclusiveSum(temp, t, ord, index_bytes, stream));
    varint_parse<<<byte_grid, 256, 0, stream>>>(index, index_bytes, ord, kept, n, pos1, check);
    if (kept > 0) {
      t = temp_bytes;
      GP_CUDA_RETURN_IF_ERROR(cub::DeviceScan::InclusiveSum(temp, t, pos1, kept, stream));
      positions_check<<<grid_for(kept), 256, 0, stream>>>(pos1, kept, n, check);
    }
  }
  GP_CUDA_RETURN_IF_ERROR(cudaPeekAtLastError());
  if (h.bits != 0)
    GP_RETURN_IF_ERROR(
        launch_quant_check(payload + l.scales_offset, kept, h.bits, h.block, check, stream));
  GP_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(host, check, sizeof(DecodeCheck), cudaMemcpyDeviceToHost, stream));
  GP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  GP_RETURN_IF_ERROR(check_result(*static_cast<const DecodeCheck*>(host)));

  if (!accumulate) GP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(out, 0, out_bytes, stream));
  if (kept == 0) return OkStatus();
  if (h.bits != 0) {
    QuantSectionDecode a;
    a.section = payload + l.scales_offset;
    a.n = kept;
    a.bits = h.bits;
    a.block = h.block;
    a.out = out;
    a.dtype = dtype;
    a.accumulate = accumulate;
    a.scatter_pos1 = pos1;
    return launch_quant_decode(a, stream);
  }
  const uint8_t* values = payload + l.values_offset;
  const unsigned grid = grid_for(kept);
  switch (dtype) {
    case GP_FLOAT32:
      scatter_f32<<<grid, 256, 0, stream>>>(values, kept, pos1, static_cast<float*>(out),
                                            accumulate);
      break;
    case GP_FLOAT16:
      scatter_f32<<<grid, 256, 0, stream>>>(values, kept, pos1, static_cast<Half*>(out),
                                            accumulate);
      break;
    case GP_BFLOAT16:
      scatter_f32<<<grid, 256, 0, stream>>>(values, kept, pos1, static_cast<BFloat*>(out),
                                            accumulate);
      break;
    default:
      return Internal("top-k decode into a non-float dtype");
  }
  return cuda_error(cudaPeekAtLastError(), "top-k scatter launch");
}

}  // namespace gradpack::cuda
