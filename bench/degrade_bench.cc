// SPDX-License-Identifier: Apache-2.0
// gradpack-degrade-bench: a loop of large float32 all-reduces with the time of every call, for
// watching re-planning (docs/topology.md, "Re-planning when a link degrades"; bench/degrade.sh
// cuts one vcluster host's link while it runs). One process per rank, under gradpack-run:
//
//   gradpack-run -n 8 --vcluster -- gradpack-degrade-bench [options]
//     --size BYTES        each all-reduce (default 64M; K, M, G suffixes are powers of 1024)
//     --calls N           all-reduces (default 30)
//     --pause-after K     after call K, rank 0 prints "# paused after call K" and every rank
//                         waits until --pause-file exists (the script changes a link meanwhile)
//     --pause-file PATH
//
// Rank 0 prints one line per call, as it ends: "call I  SECONDS  ALGORITHM  REBUILDS", the time
// the slowest rank took (its own time, all-reduced MAX in an 8-byte call that re-planning does not
// count), the plan gp_comm_stats reports for the call and the rebuilds so far. Every result is
// checked (the sum of small integers is exact); a wrong element or failed call exits 1.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gradpack/gradpack.h"
#include "tools/size_suffix.h"

namespace {

struct Options {
  size_t size = size_t{64} << 20;
  int calls = 30;
  int pause_after = -1;
  std::string pause_file;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "gradpack-degrade-bench: %s\nusage: gradpack-degrade-bench [--size BYTES] "
               "[--calls N] [--pause-after K --pause-file PATH]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value of " + a).c_str());
    const char* v = argv[++i];
    if (a == "--size") {
      const std::optional<uint64_t> size = gradpack::tools::parse_size_suffix(v);
      if (!size || *size < sizeof(float)) usage("bad --size");
      o.size = static_cast<size_t>(*size);
    } else if (a == "--calls") {
      o.calls = std::atoi(v);
      if (o.calls < 1) usage("--calls must be >= 1");
    } else if (a == "--pause-after") {
      o.pause_after = std::atoi(v);
    } else if (a == "--pause-file") {
      o.pause_file = v;
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (o.pause_after >= 0 && o.pause_file.empty()) usage("--pause-after needs --pause-file");
  return o;
}

void check(gp_status_t st, const char* what) {
  if (st == GP_OK) return;
  std::fprintf(stderr, "gradpack-degrade-bench: %s: %s\n", what, gp_last_error());
  std::exit(1);
}

// Every rank waits for the file (rank 0 announces it), then all leave together.
void pause_for(gp_comm_t* comm, int rank, int after, const std::string& file) {
  if (rank == 0) {
    std::printf("# paused after call %d: waiting for %s\n", after, file.c_str());
    std::fflush(stdout);
  }
  while (access(file.c_str(), F_OK) != 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  check(gp_barrier(comm), "gp_barrier");
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  gp_comm_t* comm = nullptr;
  check(gp_comm_init_from_env(&comm), "gp_comm_init_from_env");
  const int rank = gp_comm_rank(comm);
  const int n = gp_comm_size(comm);
  const size_t count = o.size / sizeof(float);
  std::vector<float> buf(count);
  if (rank == 0) {
    std::printf("# gradpack-degrade-bench: %d ranks, %zu bytes per all-reduce, %d calls\n", n,
                count * sizeof(float), o.calls);
    std::printf("# call  seconds  algorithm  rebuilds\n");
  }
  for (int call = 1; call <= o.calls; ++call) {
    for (size_t i = 0; i < count; ++i)
      buf[i] = static_cast<float>((i + static_cast<size_t>(rank)) % 7);
    const auto t0 = std::chrono::steady_clock::now();
    check(gp_allreduce(comm, buf.data(), buf.data(), count, GP_FLOAT32, GP_SUM, nullptr),
          "gp_allreduce");
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      float want = 0;
      for (int r = 0; r < n; ++r) want += static_cast<float>((i + static_cast<size_t>(r)) % 7);
      wrong += buf[i] != want ? 1 : 0;
    }
    gp_comm_stats_t stats;
    stats.struct_size = sizeof(stats);
    check(gp_comm_stats(comm, &stats), "gp_comm_stats");
    check(gp_allreduce(comm, &took, &took, 1, GP_FLOAT64, GP_MAX, nullptr), "gp_allreduce (time)");
    if (rank == 0) {
      std::printf("call %d  %.3f  %s  %llu\n", call, took, stats.last_algorithm,
                  static_cast<unsigned long long>(stats.plan_rebuilds));
      std::fflush(stdout);
    }
    if (wrong != 0) {
      std::fprintf(stderr, "gradpack-degrade-bench: rank %d: %zu wrong elements at call %d\n", rank,
                   wrong, call);
      return 1;
    }
    if (call == o.pause_after) pause_for(comm, rank, call, o.pause_file);
  }
  check(gp_comm_destroy(comm), "gp_comm_destroy");
  return 0;
}
