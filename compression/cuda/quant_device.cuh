// SPDX-License-Identifier: Apache-2.0
// Device side of the block quantizer: how a thread block walks a quantized section, and how one
// thread quantizes, packs and unpacks a group of 8 values.
//
// A group of 8 consecutive values is the unit: since blocks are multiples of 8, a group lies in one
// block, and its 8 codes are exactly `bits` bytes of the code stream, starting at byte
// (first / 8) * bits. Each thread owns one group, so no two threads share a code byte.
#pragma once

#include <cstdint>

#include "common/float16.h"
#include "compression/cuda/float_device.cuh"
#include "compression/cuda/launch.h"
#include "compression/quantize/quant_ref.h"

namespace gradpack::cuda::dev {

// Where thread t of tile `tile` works. Small blocks (<= kTileElems): a tile is tile_blocks whole
// blocks. Large blocks: a tile is one chunk of kTileElems elements of one block.
struct GroupPos {
  uint64_t first;       // element index of the group's first value
  uint64_t block;       // quant block of the group
  uint32_t tile_block;  // block index within the tile (small blocks), else 0
  int count;            // values in the group (8, fewer at the very end), 0 when idle
  bool block_start;     // the group starts its block: its thread writes the scale
};

__device__ __forceinline__ GroupPos locate(const TileShape& s, uint64_t n, uint32_t tile,
                                           uint32_t thread) {
  GroupPos g;
  uint32_t offset;  // of the group within its block (large) or tile (small)
  bool inside;
  if (s.chunks_per_block == 1) {
    offset = thread * kGroupElems;
    g.tile_block = offset / s.block;
    g.block = static_cast<uint64_t>(tile) * s.tile_blocks + g.tile_block;
    g.first = static_cast<uint64_t>(tile) * s.tile_elems + offset;
    g.block_start = offset % s.block == 0;
    inside = offset < s.tile_elems;
  } else {
    const uint32_t chunk = tile % s.chunks_per_block;
    g.tile_block = 0;
    g.block = tile / s.chunks_per_block;
    offset = chunk * kTileElems + thread * kGroupElems;
    g.first = g.block * s.block + offset;
    g.block_start = offset == 0;
    inside = offset < s.block;
  }
  g.count = inside && g.first < n ? static_cast<int>(n - g.first < 8 ? n - g.first : 8) : 0;
  return g;
}

// The bytes of one group: 8 codes of up to 16 bits, LSB first, in 128 bits.
struct Codes {
  uint64_t lo = 0, hi = 0;
};

__device__ __forceinline__ Codes pack8(const uint32_t (&c)[8], int bits) {
  Codes out;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int pos = i * bits;
    const uint64_t v = c[i];
    if (pos < 64) {
      out.lo |= v << pos;
      if (pos + bits > 64) out.hi |= v >> (64 - pos);
    } else {
      out.hi |= v << (pos - 64);
    }
  }
  return out;
}

__device__ __forceinline__ uint32_t code_at(const Codes& c, int i, int bits) {
  const int pos = i * bits;
  uint64_t w;
  if (pos < 64) {
    w = c.lo >> pos;
    if (pos + bits > 64) w |= c.hi << (64 - pos);
  } else {
    w = c.hi >> (pos - 64);
  }
  return static_cast<uint32_t>(w) & ((1u << bits) - 1u);
}

// The 8 bytes of a group starting at byte o (o < 16).
__device__ __forceinline__ uint64_t bytes_from(const Codes& c, int o) {
  if (o == 0) return c.lo;
  if (o < 8) return (c.lo >> (8 * o)) | (c.hi << (64 - 8 * o));
  return c.hi >> (8 * (o - 8));
}

// Writes the first nbytes (<= 16) bytes of c at p, in the widest stores p's alignment allows:
// frame sections start at any byte.
__device__ __forceinline__ void store_codes(uint8_t* p, const Codes& c, int nbytes) {
  if (nbytes == 8 && aligned(p, 8)) {
    *reinterpret_cast<uint64_t*>(p) = c.lo;
    return;
  }
  if (nbytes == 4 && aligned(p, 4)) {
    *reinterpret_cast<uint32_t*>(p) = static_cast<uint32_t>(c.lo);
    return;
  }
  if (nbytes == 16 && aligned(p, 16)) {
    *reinterpret_cast<ulonglong2*>(p) = make_ulonglong2(c.lo, c.hi);
    return;
  }
  int o = 0;
  while (o < nbytes) {
    uint8_t* q = p + o;
    const int rest = nbytes - o;
    const uint64_t w = bytes_from(c, o);
    if (rest >= 8 && aligned(q, 8)) {
      *reinterpret_cast<uint64_t*>(q) = w;
      o += 8;
    } else if (rest >= 4 && aligned(q, 4)) {
      *reinterpret_cast<uint32_t*>(q) = static_cast<uint32_t>(w);
      o += 4;
    } else if (rest >= 2 && aligned(q, 2)) {
      *reinterpret_cast<uint16_t*>(q) = static_cast<uint16_t>(w);
      o += 2;
    } else {
      *q = static_cast<uint8_t>(w);
      o += 1;
    }
  }
}

// Reads nbytes (<= 16) bytes at p; never reads past them.
__device__ __forceinline__ Codes load_codes(const uint8_t* p, int nbytes) {
  Codes c;
  if (nbytes == 8 && aligned(p, 8)) {
    c.lo = *reinterpret_cast<const uint64_t*>(p);
    return c;
  }
  if (nbytes == 4 && aligned(p, 4)) {
    c.lo = *reinterpret_cast<const uint32_t*>(p);
    return c;
  }
  if (nbytes == 16 && aligned(p, 16)) {
    const ulonglong2 w = *reinterpret_cast<const ulonglong2*>(p);
    c.lo = w.x;
    c.hi = w.y;
    return c;
  }
  int o = 0;
  while (o < nbytes) {
    const uint8_t* q = p + o;
    const int rest = nbytes - o;
    uint64_t w;
    int unit;
    if (rest >= 8 && aligned(q, 8)) {
      w = *reinterpret_cast<const uint64_t*>(q);
      unit = 8;
    } else if (rest >= 4 && aligned(q, 4)) {
      w = *reinterpret_cast<const uint32_t*>(q);
      unit = 4;
    } else if (rest >= 2 && aligned(q, 2)) {
      w = *reinterpret_cast<const uint16_t*>(q);
      unit = 2;
    } else {
      w = *q;
      unit = 1;
    }
    if (o < 8) {
      c.lo |= w << (8 * o);
      if (o + unit > 8) c.hi |= w >> (64 - 8 * o);
    } else {
      c.hi |= w << (8 * (o - 8));
    }
    o += unit;
  }
  return c;
}

// Code bytes of a group of `count` values.
__device__ __forceinline__ int group_bytes(int count, int bits) {
  return count == 8 ? bits : (count * bits + 7) / 8;
}

__device__ __forceinline__ uint32_t group_absmax(const float (&v)[8], int count) {
  uint32_t m = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t a = float_bits(v[i]) & quant::kAbsMask;
    if (i < count && a > m) m = a;
  }
  return m;
}

// Quantizes one group with its block's scale, as kernels_scalar.cc's quant_encode does: codes
// q + L (L for every value of a non-finite block; zero past `count`, the code padding), and
// residual[i] = v - q * scale for a finite block.
__device__ __forceinline__ Codes quantize8(const float (&v)[8], int count,
                                           const quant::BlockScale& s, int bits, bool stochastic,
                                           uint32_t key, uint64_t first, float (&residual)[8]) {
  const int32_t l = quant::levels(bits);
  uint32_t c[8];
  if (!s.finite) {
#pragma unroll
    for (int i = 0; i < 8; ++i) c[i] = i < count ? static_cast<uint32_t>(l) : 0u;
    return pack8(c, bits);
  }
  // first is a multiple of 8, so the group's indices share their upper 32 bits.
  const uint32_t hkey = stochastic ? quant::high_key(key, first) : 0u;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    int32_t q;
    if (stochastic) {
      const uint32_t e = static_cast<uint32_t>(first) + static_cast<uint32_t>(i);
      q = quant::quantize_stochastic(v[i], s.inv, quant::uniform(hkey, e), l);
    } else {
      q = quant::quantize_nearest(v[i], s.inv);
    }
    c[i] = i < count ? static_cast<uint32_t>(q + l) : 0u;
    residual[i] = __fsub_rn(v[i], quant::dequantize(q, s.scale));
  }
  return pack8(c, bits);
}

}  // namespace gradpack::cuda::dev
