// SPDX-License-Identifier: Apache-2.0
// Constant tables shared by the AVX2 and AVX-512 kernel files.
//
// Only data lives here: the two files are compiled with different -m flags, and an inline function
// instantiated in both could be emitted once with AVX-512 instructions and then picked by the
// linker for the AVX2 table. Tables are built at compile time by consteval code that is never
// emitted.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace gradpack::cpu::simd {

// Codes are `bits` wide, packed LSB-first: code i starts at bit i * bits of its group, that is at
// byte (i * bits) / 8, bit (i * bits) % 8. A code never spans more than 3 bytes (7 + 16 < 24), so
// a 32-bit window that starts at that byte, shifted right by that bit, holds it in its low bits.
//
// CodeGather holds, for 16 consecutive codes (two groups of 8, 2 * bits bytes), the byte indices
// that build each code's 32-bit window (4 per code, for a byte shuffle) and the right shifts.
struct CodeGather {
  alignas(64) uint8_t index[64];
  alignas(64) uint32_t shift[16];
};

// `lane_bytes`: how many source bytes one shuffle can index. Indices at or past it become 0x80
// (a zero byte for pshufb); they are only ever above a code's top bit.
consteval CodeGather make_code_gather(int bits, int lane_bytes) {
  CodeGather g{};
  for (int i = 0; i < 16; ++i) {
    const int bit = i * bits;
    for (int j = 0; j < 4; ++j) {
      const int byte = bit / 8 + j;
      g.index[4 * i + j] = static_cast<uint8_t>(byte < lane_bytes ? byte : 0x80);
    }
    g.shift[i] = static_cast<uint32_t>(bit % 8);
  }
  return g;
}

template <int kLaneBytes>
consteval std::array<CodeGather, 17> make_code_gathers() {
  std::array<CodeGather, 17> t{};
  for (int bits = 2; bits <= 16; ++bits) t[bits] = make_code_gather(bits, kLaneBytes);
  return t;
}

// AVX-512 (vpermb over up to 64 bytes, of which the first 2 * bits are the codes' bytes).
inline constexpr std::array<CodeGather, 17> kGather64 = make_code_gathers<64>();
// AVX2 (pshufb within a 16-byte lane holding one group of 8 codes, copied to both lanes). Only the
// first 8 codes of each table are used.
inline constexpr std::array<CodeGather, 17> kGather16 = make_code_gathers<16>();

}  // namespace gradpack::cpu::simd
