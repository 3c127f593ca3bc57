// SPDX-License-Identifier: Apache-2.0
// The column header of the nccl-tests-style table that gradpack-perf and the peers in
// bench/peers print, so the three tables line up. Header-only: the peers do not link gradpack.
#pragma once

#include <cstdio>
#include <string>

namespace gradpack::tools {

// Three lines starting with '#': the layout titles, centered over their four columns, the column
// names and their units.
inline std::string table_header() {
  char buf[512];
  std::string out;
  // Each layout's title centered over its four 34-character-wide columns.
  auto centered = [](const std::string& title) {
    const size_t width = 34;
    const size_t left = (width - title.size()) / 2;
    return std::string(left, ' ') + title + std::string(width - left - title.size(), ' ');
  };
  std::snprintf(buf, sizeof(buf), "# %10s  %12s  %8s  %6s  %6s  %s  %s\n", "", "", "", "", "",
                centered("out-of-place").c_str(), centered("in-place").c_str());
  out += buf;
  std::snprintf(buf, sizeof(buf),
                "# %10s  %12s  %8s  %6s  %6s  %8s  %7s  %7s  %6s  %8s  %7s  %7s  %6s\n", "size",
                "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time",
                "algbw", "busbw", "#wrong");
  out += buf;
  std::snprintf(buf, sizeof(buf),
                "# %10s  %12s  %8s  %6s  %6s  %8s  %7s  %7s  %6s  %8s  %7s  %7s  %6s\n", "(B)",
                "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)",
                "(GB/s)", "");
  out += buf;
  return out;
}

// gradpack-perf -z: one layout (out-of-place) and no root column, so that the compression columns
// fit in 120: wire bytes per rank per call, the worst relative error of the check, the codec the
// library used. time, algbw and busbw are those of the uncompressed size (the effective rates).
inline std::string compressed_table_header() {
  char buf[512];
  std::string out;
  const std::string title = "compressed, out-of-place";
  const size_t width = 70;  // the measurement columns below
  const size_t left = (width - title.size()) / 2;
  std::snprintf(
      buf, sizeof(buf), "# %10s  %12s  %8s  %6s  %s\n", "", "", "", "",
      (std::string(left, ' ') + title + std::string(width - left - title.size(), ' ')).c_str());
  out += buf;
  std::snprintf(buf, sizeof(buf), "# %10s  %12s  %8s  %6s  %8s  %7s  %7s  %10s  %6s  %8s  %12s\n",
                "size", "count", "type", "redop", "time", "algbw", "busbw", "wire", "#wrong",
                "maxerr", "codec");
  out += buf;
  std::snprintf(buf, sizeof(buf), "# %10s  %12s  %8s  %6s  %8s  %7s  %7s  %10s  %6s  %8s  %12s\n",
                "(B)", "(elements)", "", "", "(us)", "(GB/s)", "(GB/s)", "(B/rank)", "", "(rel)",
                "(used)");
  out += buf;
  return out;
}

// gradpack-perf --group N: the group of N all-reduces (time per group, algbw and busbw from N x
// size), the same N calls made one by one, and how many times faster the group was.
inline std::string group_table_header() {
  char buf[512];
  std::string out;
  const std::string title = "N calls in one group, out-of-place";
  const size_t width = 34;
  const size_t left = (width - title.size()) / 2;
  std::snprintf(
      buf, sizeof(buf), "# %10s  %12s  %8s  %6s  %6s  %s  %8s  %7s\n", "", "", "", "", "",
      (std::string(left, ' ') + title + std::string(width - left - title.size(), ' ')).c_str(),
      "separate", "");
  out += buf;
  std::snprintf(buf, sizeof(buf), "# %10s  %12s  %8s  %6s  %6s  %8s  %7s  %7s  %6s  %8s  %7s\n",
                "size", "count", "type", "redop", "N", "time", "algbw", "busbw", "#wrong", "time",
                "speedup");
  out += buf;
  std::snprintf(buf, sizeof(buf), "# %10s  %12s  %8s  %6s  %6s  %8s  %7s  %7s  %6s  %8s  %7s\n",
                "(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(x)");
  out += buf;
  return out;
}

}  // namespace gradpack::tools
