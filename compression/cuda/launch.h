// SPDX-License-Identifier: Apache-2.0
// Internal to compression/cuda: what the host side shares with the kernels (plain structs passed as
// kernel arguments) and the launchers one codec family uses from another (top-k encodes and decodes
// its values with the quantizer's kernels).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/status.h"
#include "compression/wire.h"

namespace gradpack::cuda {

class Workspace;

constexpr int kGroupElems = 8;     // values per thread: one group of codes is `bits` bytes
constexpr int kTileThreads = 256;  // threads per tile (thread block)
constexpr uint32_t kTileElems = kTileThreads * kGroupElems;

// How a quantized section of n values with blocks of `block` is cut into tiles (see locate()).
struct TileShape {
  uint32_t block = 0;
  uint32_t tile_blocks = 1;       // small blocks: whole blocks per tile
  uint32_t tile_elems = 0;        // small blocks: elements per tile
  uint32_t chunks_per_block = 1;  // large blocks (> kTileElems): tiles per block
  uint64_t tiles = 0;
};
TileShape tile_shape(uint64_t n, uint32_t block);

// A frame header, built and checksummed on the host, written by a kernel (stream-ordered, and no
// pageable-memory copy).
struct HeaderBytes {
  uint8_t bytes[kFrameHeaderBytes];
};

// What the device-side checks of a received frame found. All-ones means "nothing wrong": the
// struct is reset with one memset and each check lowers a field with atomicMin.
struct DecodeCheck {
  unsigned long long bad_scale_block;  // first block whose scale is negative or infinite
  unsigned long long bad_index;        // (IndexError << 56) | entry or byte, of the first problem
  unsigned int bad_padding;            // 0: the code padding bits are not zero
  unsigned int bad_header;             // first header byte that differs from the expected one
};
enum IndexError : unsigned int {
  kIndexLastByteContinues = 0,
  kIndexVarintTooLong = 1,
  kIndexOutOfRange = 2,
  kIndexNotIncreasing = 3,
  kIndexCountMismatch = 4,
  kIndexBitmapPadding = 5,
};
constexpr int kIndexErrorShift = 56;
Status check_result(const DecodeCheck& c);

Status cuda_error(cudaError_t err, const char* what);
#define GP_CUDA_RETURN_IF_ERROR(expr) \
  GP_RETURN_IF_ERROR(::gradpack::cuda::cuda_error((expr), #expr))

// Encodes n values into one quantized section (scales, then codes) at `section`.
struct QuantSectionEncode {
  const void* values = nullptr;  // n values of dtype
  gp_dtype_t dtype = GP_FLOAT32;
  uint64_t n = 0;
  // Error feedback. Dense (scatter == null): v = values + residual, residual = v - decoded.
  // Scatter: values are fp32 and are v already; residual[scatter[j]] = v_j - decoded_j.
  float* residual = nullptr;
  const uint64_t* scatter = nullptr;
  int bits = 8;
  uint32_t block = 256;
  bool stochastic = false;
  uint32_t key = 0;
  uint8_t* section = nullptr;
  uint32_t* absmax_scratch = nullptr;   // ceil(n / block) words; needed when block > kTileElems
  const HeaderBytes* header = nullptr;  // written to header_out by the same launch when set
  uint8_t* header_out = nullptr;
};
// Bytes of absmax_scratch the encoder needs (0 for small blocks).
size_t quant_encode_scratch_bytes(uint64_t n, uint32_t block);
Status launch_quant_encode(const QuantSectionEncode& a, cudaStream_t stream);

// Checks a received section as quant_check_values() does, lowering fields of *check. With
// `header` set, the same launch compares the frame's header there with *expected.
Status launch_quant_check(const uint8_t* section, uint64_t n, int bits, uint32_t block,
                          DecodeCheck* check, cudaStream_t stream, const uint8_t* header = nullptr,
                          const HeaderBytes* expected = nullptr);

// Decodes a section into out (dtype), or adds to it. With scatter_pos1, value j goes to element
// scatter_pos1[j] - 1. Does nothing when *check reports a problem (check may be null).
struct QuantSectionDecode {
  const uint8_t* section = nullptr;
  uint64_t n = 0;
  int bits = 8;
  uint32_t block = 256;
  void* out = nullptr;
  gp_dtype_t dtype = GP_FLOAT32;
  bool accumulate = false;
  float scale = 1.0f;  // multiplies the decoded value before rounding (not with accumulate)
  const unsigned long long* scatter_pos1 = nullptr;
  const DecodeCheck* check = nullptr;
};
Status launch_quant_decode(const QuantSectionDecode& a, cudaStream_t stream);

// Writes a header with a one-block kernel.
Status launch_write_header(const HeaderBytes& h, uint8_t* out, cudaStream_t stream);

// The top-k decoder behind decode(): the header is already checked, count and dtype accepted.
Status topk_decode_frame(const FrameHeader& h, const FrameLayout& l, const uint8_t* payload,
                         void* out, gp_dtype_t dtype, bool accumulate, Workspace& ws,
                         cudaStream_t stream);

// Common argument checks of the encoders (those of Codec::encode).
Status check_encode_args(const CodecSpec& spec, const void* in, gp_dtype_t dtype, size_t count,
                         float* residual, void* frame, size_t capacity, size_t* frame_bytes);

// Multiprocessors of the current device (for grid-stride kernels).
int multiprocessor_count();

}  // namespace gradpack::cuda
