// SPDX-License-Identifier: Apache-2.0
// mpi_perf: MPI_Allreduce measured and printed the way gradpack-perf does, as the MPI baseline of
// bench/compare.sh; with --osu, an OSU-style latency table (osu_allreduce's columns) instead.
//
//   mpirun -np 4 mpi_perf -b 8 -e 128M -f 2
//   mpirun -np 4 mpi_perf --osu -b 8 -e 64K -f 2 -n 1000 -w 100
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/peers/peer_perf.h"

namespace gradpack::peers {
namespace {

const char kHelp[] =
    R"(usage: mpirun -np N mpi_perf [-b MIN] [-e MAX] [-f F | -i STEP] [-n ITERS] [-w WARMUP]
                             [-c CHECK] [--osu]

MPI_Allreduce (float, MPI_SUM), printed as gradpack-perf / nccl-tests print it: time per
iteration (us, the maximum over ranks), algbw = size/time, busbw = algbw*2(n-1)/n (GB/s = 1e9),
#wrong elements summed over ranks. Sizes take K, M, G suffixes (2^10, 2^20, 2^30).
  --osu   print osu_allreduce's table instead: Size, Avg/Min/Max Latency(us) over ranks,
          Iterations (out-of-place only)
)";

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Per-iteration time of `iters` calls of MPI_Allreduce on this rank, in microseconds.
double time_allreduce(const void* send, float* recv, uint64_t count, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) {
    MPI_Allreduce(send, recv, static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  double start = seconds();
  for (int i = 0; i < iters; ++i) {
    MPI_Allreduce(send, recv, static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
  return (seconds() - start) * 1e6 / iters;
}

int run_nccl_tests_table(const PeerOptions& opts, int rank, int size) {
  if (rank == 0) {
    char name[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(name, &len);
    std::string version(name, static_cast<size_t>(len));
    version = version.substr(0, version.find_first_of(",\n"));
    std::printf("# mpi_perf: %s, %d ranks\n", version.c_str(), size);
    std::printf("%s", peer_table_header("MPI MPI_Allreduce", size).c_str());
    std::fflush(stdout);
  }
  int64_t total_wrong = 0;
  double busbw_sum = 0;
  int rows = 0;
  for (uint64_t requested : peer_sweep(opts)) {
    const uint64_t count = requested / sizeof(float);
    if (count == 0) continue;
    if (count > static_cast<uint64_t>(INT32_MAX)) break;  // MPI counts are int
    const uint64_t bytes = count * sizeof(float);
    std::vector<float> input(count), output(count);
    PeerMeasurement result[2];
    for (int in_place = 0; in_place < 2; ++in_place) {
      fill_check(input.data(), count, rank, 0);
      fill_check(output.data(), count, rank, 0);
      const void* send = in_place ? MPI_IN_PLACE : input.data();
      double local = time_allreduce(send, output.data(), count, opts.warmup, opts.iters);
      MPI_Allreduce(&local, &result[in_place].time_us, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (opts.check > 0) {
        fill_check(in_place ? output.data() : input.data(), count, rank, 1 + in_place);
        MPI_Allreduce(send, output.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                      MPI_COMM_WORLD);
        long long wrong = count_wrong(output.data(), count, size, 1 + in_place);
        long long sum = 0;
        MPI_Allreduce(&wrong, &sum, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
        result[in_place].wrong = sum;
        total_wrong += sum;
      }
    }
    if (rank == 0) {
      std::printf("%s", format_peer_row(bytes, size, result[0], result[1]).c_str());
      std::fflush(stdout);
    }
    busbw_sum += bus_bandwidth(bytes, result[0].time_us, size);
    ++rows;
  }
  if (rank == 0) std::printf("%s", peer_table_footer(total_wrong, busbw_sum, rows).c_str());
  return total_wrong == 0 ? 0 : 1;
}

int run_osu_table(const PeerOptions& opts, int rank, int size) {
  if (rank == 0) {
    std::printf("# OSU MPI Allreduce Latency Test (gradpack bench/peers/mpi_perf --osu)\n");
    std::printf("# Datatype: MPI_FLOAT, %d ranks\n", size);
    std::printf("%-10s%18s%18s%18s%12s\n", "# Size", "Avg Latency(us)", "Min Latency(us)",
                "Max Latency(us)", "Iterations");
  }
  for (uint64_t requested : peer_sweep(opts)) {
    const uint64_t count = requested / sizeof(float);
    if (count == 0) continue;
    if (count > static_cast<uint64_t>(INT32_MAX)) break;
    std::vector<float> input(count, 1.0f), output(count);
    double local = time_allreduce(input.data(), output.data(), count, opts.warmup, opts.iters);
    double min = 0, max = 0, sum = 0;
    MPI_Reduce(&local, &min, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
    MPI_Reduce(&local, &max, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&local, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      std::printf("%-10llu%18.2f%18.2f%18.2f%12d\n", static_cast<unsigned long long>(count) * 4,
                  sum / size, min, max, opts.iters);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace gradpack::peers

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  gradpack::peers::PeerOptions opts;
  int rc = 0;
  if (auto error = gradpack::peers::parse_peer_args(argc, argv, &opts)) {
    if (rank == 0) std::fprintf(stderr, "mpi_perf: %s\n%s", error->c_str(), gradpack::peers::kHelp);
    rc = 2;
  } else if (opts.help) {
    if (rank == 0) std::printf("%s", gradpack::peers::kHelp);
  } else if (opts.osu) {
    rc = gradpack::peers::run_osu_table(opts, rank, size);
  } else {
    rc = gradpack::peers::run_nccl_tests_table(opts, rank, size);
  }
  MPI_Finalize();
  return rc;
}
