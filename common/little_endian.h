// SPDX-License-Identifier: Apache-2.0
// Little-endian integers in byte buffers: the byte order of every gradpack wire format, written
// byte by byte so it holds on any host and at any alignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gradpack {

template <typename T>
void store_le(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <typename T>
T load_le(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
  return v;
}

template <typename T>
void append_le(std::vector<uint8_t>* out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace gradpack
