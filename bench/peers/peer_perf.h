// SPDX-License-Identifier: Apache-2.0
// What gloo_perf and mpi_perf share: nccl-tests style flags, the size sweep, the check pattern and
// the table gradpack-perf prints, so that bench/compare.sh parses all three the same way.
//
// Only float32 sum all-reduce is measured: it is the case the three libraries all implement, and
// the one the comparison is about.
#ifndef GRADPACK_BENCH_PEERS_PEER_PERF_H_
#define GRADPACK_BENCH_PEERS_PEER_PERF_H_

#include <getopt.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/perf_table.h"
#include "tools/size_suffix.h"

namespace gradpack::peers {

struct PeerOptions {
  uint64_t min_bytes = uint64_t{32} << 20;
  uint64_t max_bytes = uint64_t{32} << 20;
  uint64_t step_factor = 0;  // 0: add step_bytes; >= 2: multiply
  uint64_t step_bytes = uint64_t{1} << 20;
  int iters = 20;
  int warmup = 1;
  int check = 1;
  int rank = -1;        // -1: GRADPACK_RANK, then the launcher's variables
  int world_size = -1;  // -1: GRADPACK_WORLD_SIZE, then the launcher's variables
  int timeout_s = 300;
  bool osu = false;  // mpi_perf: OSU-style latency table instead of the nccl-tests one
  bool help = false;
  // gloo_perf only.
  std::string store_dir;  // FileStore directory (shared by all ranks)
  std::string prefix = "gloo_perf";
  std::string address;             // this rank's address for the Gloo tcp device
  std::string ifname;              // or the interface that has it
  std::string algorithm = "ring";  // ring | bcube
};

// "32M" -> 33554432: a decimal count with an optional K, M or G suffix (binary multiples).
inline std::optional<uint64_t> parse_peer_size(std::string_view text) {
  return gradpack::tools::parse_size_suffix(text);
}

inline std::optional<int> parse_peer_int(const char* text, int min) {
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < min || value > (1L << 30)) return std::nullopt;
  return static_cast<int>(value);
}

inline int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  auto parsed = parse_peer_int(value, 0);
  return parsed ? *parsed : fallback;
}

// Parses argv. Returns an error message for a usage error, std::nullopt on success.
inline std::optional<std::string> parse_peer_args(int argc, char** argv, PeerOptions* opts) {
  enum { kStore = 1000, kPrefix, kAddr, kIfname, kRank, kSize, kAlgo, kTimeout, kOsu };
  static const option kLong[] = {
      {"minbytes", required_argument, nullptr, 'b'},
      {"maxbytes", required_argument, nullptr, 'e'},
      {"stepfactor", required_argument, nullptr, 'f'},
      {"stepbytes", required_argument, nullptr, 'i'},
      {"iters", required_argument, nullptr, 'n'},
      {"warmup_iters", required_argument, nullptr, 'w'},
      {"check", required_argument, nullptr, 'c'},
      {"op", required_argument, nullptr, 'o'},
      {"datatype", required_argument, nullptr, 'd'},
      {"store", required_argument, nullptr, kStore},
      {"prefix", required_argument, nullptr, kPrefix},
      {"addr", required_argument, nullptr, kAddr},
      {"ifname", required_argument, nullptr, kIfname},
      {"rank", required_argument, nullptr, kRank},
      {"world-size", required_argument, nullptr, kSize},
      {"algorithm", required_argument, nullptr, kAlgo},
      {"timeout", required_argument, nullptr, kTimeout},
      {"osu", no_argument, nullptr, kOsu},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":b:e:f:i:n:w:c:o:d:a:T:h", kLong, nullptr)) != -1) {
    std::optional<uint64_t> size;
    std::optional<int> number;
    switch (c) {
      case 'b':
      case 'e':
      case 'i':
        size = parse_peer_size(optarg);
        if (!size) return std::string("bad size '") + optarg + "'";
        (c == 'b' ? opts->min_bytes : c == 'e' ? opts->max_bytes : opts->step_bytes) = *size;
        break;
      case 'f':
        number = parse_peer_int(optarg, 2);
        if (!number) return std::string("-f needs an integer >= 2, got '") + optarg + "'";
        opts->step_factor = static_cast<uint64_t>(*number);
        break;
      case 'n':
      case 'w':
      case 'c':
      case 'T':
      case kTimeout:
        number = parse_peer_int(optarg, c == 'n' || c == 'T' || c == kTimeout ? 1 : 0);
        if (!number) return std::string("bad count '") + optarg + "'";
        (c == 'n'   ? opts->iters
         : c == 'w' ? opts->warmup
         : c == 'c' ? opts->check
                    : opts->timeout_s) = *number;
        break;
      case 'o':
        if (std::strcmp(optarg, "sum") != 0) return "only -o sum is measured by the peers";
        break;
      case 'd':
        if (std::strcmp(optarg, "float") != 0) return "only -d float is measured by the peers";
        break;
      case kStore:
        opts->store_dir = optarg;
        break;
      case kPrefix:
        opts->prefix = optarg;
        break;
      case kAddr:
        opts->address = optarg;
        break;
      case kIfname:
        opts->ifname = optarg;
        break;
      case kRank:
      case kSize:
        number = parse_peer_int(optarg, c == kRank ? 0 : 1);
        if (!number) return std::string("bad rank or size '") + optarg + "'";
        (c == kRank ? opts->rank : opts->world_size) = *number;
        break;
      case 'a':
      case kAlgo:
        if (std::strcmp(optarg, "ring") != 0 && std::strcmp(optarg, "bcube") != 0) {
          return std::string("unknown algorithm '") + optarg + "' (ring or bcube)";
        }
        opts->algorithm = optarg;
        break;
      case kOsu:
        opts->osu = true;
        break;
      case 'h':
        opts->help = true;
        break;
      case ':':
        return std::string("option ") + argv[optind - 1] + " needs a value";
      default:
        return std::string("unknown option ") + argv[optind - 1];
    }
  }
  if (optind != argc) return std::string("unexpected argument '") + argv[optind] + "'";
  if (opts->min_bytes > opts->max_bytes) return "-b is larger than -e";
  if (opts->step_factor == 0 && opts->step_bytes == 0) return "-i must be > 0";
  return std::nullopt;
}

// The sweep, min to max inclusive (stops on overflow).
inline std::vector<uint64_t> peer_sweep(const PeerOptions& opts) {
  std::vector<uint64_t> sizes;
  for (uint64_t size = opts.min_bytes; size <= opts.max_bytes;) {
    sizes.push_back(size);
    uint64_t next = opts.step_factor >= 2 ? size * opts.step_factor : size + opts.step_bytes;
    if (next <= size || (opts.step_factor >= 2 && next / opts.step_factor != size)) break;
    size = next;
  }
  return sizes;
}

// Input of `rank` at element i for check runs `seed`: small integers, so the float sum over any
// realistic number of ranks is exact and the expected value is known without the other ranks.
inline float check_input(int rank, uint64_t i, int seed) {
  return static_cast<float>(static_cast<int>((i * 7 + static_cast<uint64_t>(seed)) % 13) +
                            rank % 5);
}

inline float check_expected(int nranks, uint64_t i, int seed) {
  float sum = 0;
  for (int r = 0; r < nranks; ++r) sum += check_input(r, i, seed);
  return sum;
}

inline void fill_check(float* data, uint64_t count, int rank, int seed) {
  for (uint64_t i = 0; i < count; ++i) data[i] = check_input(rank, i, seed);
}

inline int64_t count_wrong(const float* data, uint64_t count, int nranks, int seed) {
  // The expected value depends on i only through (i * 7 + seed) % 13: tabulate it.
  float expected[13];
  for (uint64_t k = 0; k < 13; ++k) expected[k] = check_expected(nranks, k, seed);
  int64_t wrong = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (data[i] != expected[i % 13]) ++wrong;
  }
  return wrong;
}

struct PeerMeasurement {
  double time_us = 0;
  int64_t wrong = -1;  // -1: not checked
};

inline std::string peer_table_header(const char* what, int nranks) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "# %s, %d ranks, float sum all_reduce\n#\n", what, nranks);
  return buf + gradpack::tools::table_header();
}

inline std::string format_peer_measurement(const PeerMeasurement& m, uint64_t bytes, int nranks) {
  // algbw = bytes / time (GB = 1e9); busbw = algbw * 2(n-1)/n, as nccl-tests for all_reduce.
  double algbw = m.time_us > 0 ? static_cast<double>(bytes) / (m.time_us * 1e3) : 0.0;
  double busbw = algbw * 2.0 * (nranks - 1) / nranks;
  char time[32];
  if (m.time_us < 1e5) {
    std::snprintf(time, sizeof(time), "%8.2f", m.time_us);
  } else if (m.time_us < 1e7) {
    std::snprintf(time, sizeof(time), "%8.0f", m.time_us);
  } else {
    std::snprintf(time, sizeof(time), "%8.2g", m.time_us);
  }
  char wrong[32];
  if (m.wrong < 0) {
    std::snprintf(wrong, sizeof(wrong), "%6s", "N/A");
  } else {
    std::snprintf(wrong, sizeof(wrong), "%6" PRId64, m.wrong);
  }
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%s  %7.2f  %7.2f  %s", time, algbw, busbw, wrong);
  return buf;
}

inline std::string format_peer_row(uint64_t bytes, int nranks, const PeerMeasurement& out_of_place,
                                   const PeerMeasurement& in_place) {
  char head[128];
  std::snprintf(head, sizeof(head), "  %10" PRIu64 "  %12" PRIu64 "  %8s  %6s  %6d", bytes,
                bytes / sizeof(float), "float", "sum", -1);
  return std::string(head) + "  " + format_peer_measurement(out_of_place, bytes, nranks) + "  " +
         format_peer_measurement(in_place, bytes, nranks) + "\n";
}

inline std::string peer_table_footer(int64_t total_wrong, double busbw_sum, int rows) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "# Out of bounds values : %" PRId64 " %s\n", total_wrong,
                total_wrong == 0 ? "OK" : "FAILED");
  std::string out = buf;
  std::snprintf(buf, sizeof(buf), "# Avg bus bandwidth    : %.6g\n#\n",
                rows > 0 ? busbw_sum / rows : 0.0);
  return out + buf;
}

inline double bus_bandwidth(uint64_t bytes, double time_us, int nranks) {
  if (time_us <= 0) return 0;
  return static_cast<double>(bytes) / (time_us * 1e3) * 2.0 * (nranks - 1) / nranks;
}

}  // namespace gradpack::peers

#endif  // GRADPACK_BENCH_PEERS_PEER_PERF_H_
