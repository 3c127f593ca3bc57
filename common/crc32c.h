// SPDX-License-Identifier: Apache-2.0
// CRC-32C (Castagnoli), used for the frame header checksum.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradpack {
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
}  // namespace gradpack
