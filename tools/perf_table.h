// The column header of the nccl-tests-style table that gradpack-perf and the peers in
// bench/peers print, so the three tables line up. Header-only: the peers do not link gradpack.
#pragma once

#include <cstdio>
#include <string>

namespace gradpack::tools {

// Three lines starting with '#': the layout titles, centered over their four columns, the column
// names and their units.
inline std::string TableHeader() {
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

}  // namespace gradpack::tools
