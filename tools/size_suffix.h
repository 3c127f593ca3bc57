// SPDX-License-Identifier: Apache-2.0
// "32M" -> 33554432: the size syntax of the command-line tools (gradpack-perf, gradpack-codec,
// the peers in bench/peers): a decimal count with an optional K, M or G suffix (binary multiples,
// as nccl-tests reads them). Header-only, so programs that do not link gradpack can use it.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace gradpack::tools {

inline std::optional<uint64_t> parse_size_suffix(std::string_view text) {
  unsigned shift = 0;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      default:
        break;
    }
    if (shift != 0) text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    if (value > (std::numeric_limits<uint64_t>::max() - 9) / 10) return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return value << shift;
}

}  // namespace gradpack::tools
