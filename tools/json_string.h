// SPDX-License-Identifier: Apache-2.0
// A JSON string literal of s ("..." with quotes, backslashes and control characters escaped),
// shared by the tools that print JSON lines.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace gradpack::tools {

inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace gradpack::tools
