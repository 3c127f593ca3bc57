// SPDX-License-Identifier: Apache-2.0
// The GPU check's NCCL program (tests/gpu/check.sh): one rank of an NCCL communicator whose ranks
// are separate processes, possibly on one GPU (each with its own NCCL_HOSTID, so NCCL connects
// them through the network plugin). It all-reduces fp32 buffers of 1 MiB to 64 MiB, checks the
// first call of each size, then times `iters` calls and prints the algorithm bandwidth.
//
//   nccl_allreduce_check --rank R --nranks N --id-file PATH [--expect exact|q8]
//                        [--min-mib 1] [--max-mib 64] [--iters 5] [--device 0]
//
// --expect exact: integer-valued inputs whose sums fp32 holds exactly; every element must match.
// --expect q8: gradient-like inputs in [-1, 1); each element within the q8 direct all-reduce's
// bound (one worker rounding per rank and one server rounding: 2 * N / 254), and at least one
// size not exact (so the interposer did compress). After the sweep, four cases the CPU fake of
// tests/net_plugin/interposer/fake proves, here on the GPU:
//   - bf16, in place, average, an odd count (1000003): within q8's bound of the average;
//   - a call inside the caller's ncclGroupStart/End: exact (the interposer leaves it to NCCL);
//   - a call captured into a CUDA graph (after one uncaptured call of that size), the graph
//     launched twice: within the bound;
//   - after each, a hash of the result bytes, all-reduced with min and max: equal on every rank.
// Rank 0 writes the NCCL unique id to PATH (then
// renames it into place); the others wait up to 60 s for it. Exit 0 on success, 1 on a failed
// check or error, 77 when there is no GPU.
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <algorithm>
#include <vector>

namespace {

#define CUDA_OK(expr)                                                                   \
  do {                                                                                  \
    cudaError_t e_ = (expr);                                                            \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "rank %d: %s: %s\n", g_rank, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)
#define NCCL_OK(expr)                                                                   \
  do {                                                                                  \
    ncclResult_t r_ = (expr);                                                           \
    if (r_ != ncclSuccess) {                                                            \
      std::fprintf(stderr, "rank %d: %s: %s\n", g_rank, #expr, ncclGetErrorString(r_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

int g_rank = -1;

struct Args {
  int rank = -1;
  int nranks = 0;
  std::string id_file;
  bool q8 = false;
  size_t min_mib = 1;
  size_t max_mib = 64;
  int iters = 5;
  int device = 0;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "nccl_allreduce_check: %s\nusage: nccl_allreduce_check --rank R --nranks N "
               "--id-file PATH [--expect exact|q8] [--min-mib 1] [--max-mib 64] [--iters 5] "
               "[--device 0]\n",
               why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + k).c_str());
    const std::string v = argv[++i];
    if (k == "--rank") {
      a.rank = std::atoi(v.c_str());
    } else if (k == "--nranks") {
      a.nranks = std::atoi(v.c_str());
    } else if (k == "--id-file") {
      a.id_file = v;
    } else if (k == "--expect") {
      if (v != "exact" && v != "q8") usage("--expect takes exact or q8");
      a.q8 = v == "q8";
    } else if (k == "--min-mib") {
      a.min_mib = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "--max-mib") {
      a.max_mib = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "--iters") {
      a.iters = std::atoi(v.c_str());
    } else if (k == "--device") {
      a.device = std::atoi(v.c_str());
    } else {
      usage(("unknown option " + k).c_str());
    }
  }
  if (a.nranks < 2 || a.rank < 0 || a.rank >= a.nranks)
    usage("need 0 <= --rank < --nranks, N >= 2");
  if (a.id_file.empty()) usage("need --id-file");
  if (a.min_mib < 1 || a.max_mib < a.min_mib || a.iters < 1) usage("bad sizes or iterations");
  return a;
}

void share_id(const Args& a, ncclUniqueId* id) {
  if (a.rank == 0) {
    NCCL_OK(ncclGetUniqueId(id));
    const std::string tmp = a.id_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr || std::fwrite(id, sizeof(*id), 1, f) != 1 || std::fclose(f) != 0) {
      std::fprintf(stderr, "rank 0: cannot write %s\n", tmp.c_str());
      std::exit(1);
    }
    if (std::rename(tmp.c_str(), a.id_file.c_str()) != 0) {
      std::perror("rename");
      std::exit(1);
    }
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    FILE* f = std::fopen(a.id_file.c_str(), "rb");
    if (f != nullptr) {
      const size_t got = std::fread(id, sizeof(*id), 1, f);
      std::fclose(f);
      if (got == 1) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "rank %d: no NCCL id in %s after 60 s\n", a.rank, a.id_file.c_str());
  std::exit(1);
}

// Inputs: exact mode, small integers (every partial sum is exact in fp32, in any order); q8 mode,
// signed values of varied magnitude in [-1, 1).
float input(bool q8, int rank, size_t i) {
  if (!q8) return static_cast<float>((i * 7 + static_cast<size_t>(rank) * 3) % 64);
  uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ (static_cast<uint32_t>(rank) + 1) * 40503u;
  x ^= x >> 13;
  x *= 0x5bd1e995u;
  x ^= x >> 15;
  const float u = static_cast<float>(x >> 8) / 8388608.0f - 1.0f;  // [-1, 1)
  return (i % 3 == 0) ? u * 0.01f : u;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);  // nearest even (inputs here are finite)
  return static_cast<uint16_t>(u >> 16);
}
float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint64_t fnv1a(const void* data, size_t bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// Every rank holds the same result bytes: min and max of the hash agree (uint64 all-reduces are
// never compressed).
bool same_on_every_rank(const void* host, size_t bytes, ncclComm_t comm, cudaStream_t stream) {
  const uint64_t h = fnv1a(host, bytes);
  uint64_t* d = nullptr;
  CUDA_OK(cudaMalloc(&d, 2 * sizeof(uint64_t)));
  CUDA_OK(cudaMemcpy(d, &h, sizeof h, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d + 1, &h, sizeof h, cudaMemcpyHostToDevice));
  NCCL_OK(ncclAllReduce(d, d, 1, ncclUint64, ncclMin, comm, stream));
  NCCL_OK(ncclAllReduce(d + 1, d + 1, 1, ncclUint64, ncclMax, comm, stream));
  uint64_t got[2];
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(got, d, sizeof got, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaFree(d));
  return got[0] == h && got[1] == h;
}

bool report(const Args& a, const char* name, double worst, double bound, bool same) {
  const bool good = worst <= bound && same;
  if (a.rank == 0 || !good) {
    std::printf("rank %d: %-44s max_err %-10.3g bound %-10.3g same bits on every rank: %s  %s\n",
                a.rank, name, worst, bound, same ? "yes" : "NO", good ? "ok" : "FAILED");
    std::fflush(stdout);
  }
  return good;
}

// bf16, in place, ncclAvg, an odd count: 1/n applied once, in fp32, inside the final decode.
bool bf16_avg_in_place(const Args& a, ncclComm_t comm, cudaStream_t stream) {
  const size_t count = 1000003;
  std::vector<uint16_t> host(count);
  std::vector<double> exact(count, 0.0);
  for (int r = 0; r < a.nranks; ++r) {
    for (size_t i = 0; i < count; ++i) exact[i] += from_bf16(to_bf16(input(true, r, i)));
  }
  for (size_t i = 0; i < count; ++i) host[i] = to_bf16(input(true, a.rank, i));
  uint16_t* buf = nullptr;
  CUDA_OK(cudaMalloc(&buf, count * 2));
  CUDA_OK(cudaMemcpy(buf, host.data(), count * 2, cudaMemcpyHostToDevice));
  NCCL_OK(ncclAllReduce(buf, buf, count, ncclBfloat16, ncclAvg, comm, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(host.data(), buf, count * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaFree(buf));
  double worst = 0;
  for (size_t i = 0; i < count; ++i) {
    const double avg = exact[i] / a.nranks;
    // q8's bound on the sum, divided by n, plus bf16's rounding of the average.
    const double err = std::fabs(from_bf16(host[i]) - avg) - std::fabs(avg) / 256.0;
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
  }
  return report(a, "bf16 avg in place, 1000003 elements", worst, 2.0 / 254.0 + 1e-5,
                same_on_every_rank(host.data(), count * 2, comm, stream));
}

// Inside the caller's group the interposer must not split anything: NCCL runs it, exactly.
bool inside_user_group(const Args& a, ncclComm_t comm, cudaStream_t stream) {
  const size_t count = size_t{4} << 20;
  std::vector<float> host(count);
  for (size_t i = 0; i < count; ++i) host[i] = input(false, a.rank, i);
  float* buf = nullptr;
  CUDA_OK(cudaMalloc(&buf, count * 4));
  CUDA_OK(cudaMemcpy(buf, host.data(), count * 4, cudaMemcpyHostToDevice));
  NCCL_OK(ncclGroupStart());
  NCCL_OK(ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, comm, stream));
  NCCL_OK(ncclGroupEnd());
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(host.data(), buf, count * 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaFree(buf));
  double worst = 0;
  for (size_t i = 0; i < count; ++i) {
    double sum = 0;
    for (int r = 0; r < a.nranks; ++r) sum += input(false, r, i);
    worst = std::max(worst, std::fabs(host[i] - sum));
  }
  return report(a, "fp32 sum inside ncclGroupStart/End (exact)", worst, 0.0,
                same_on_every_rank(host.data(), count * 4, comm, stream));
}

// One uncaptured call agrees the shape; the captured one must then run compressed with no host
// wait (a wait would end the capture with an error), and each graph launch reruns it.
bool under_capture(const Args& a, ncclComm_t comm, cudaStream_t stream) {
  const size_t count = size_t{2} << 20;
  std::vector<float> host(count);
  std::vector<double> exact(count, 0.0);
  for (int r = 0; r < a.nranks; ++r) {
    for (size_t i = 0; i < count; ++i) exact[i] += input(true, r, i);
  }
  for (size_t i = 0; i < count; ++i) host[i] = input(true, a.rank, i);
  float *send = nullptr, *recv = nullptr;
  CUDA_OK(cudaMalloc(&send, count * 4));
  CUDA_OK(cudaMalloc(&recv, count * 4));
  CUDA_OK(cudaMemcpy(send, host.data(), count * 4, cudaMemcpyHostToDevice));
  NCCL_OK(ncclAllReduce(send, recv, count, ncclFloat32, ncclSum, comm, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  NCCL_OK(ncclAllReduce(send, recv, count, ncclFloat32, ncclSum, comm, stream));
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  double worst = 0;
  bool same = true;
  for (int launch = 0; launch < 2; ++launch) {
    CUDA_OK(cudaMemset(recv, 0xff, count * 4));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaMemcpy(host.data(), recv, count * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < count; ++i) {
      const double err = std::fabs(host[i] - exact[i]);
      if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
    }
    same = same && same_on_every_rank(host.data(), count * 4, comm, stream);
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaFree(send));
  CUDA_OK(cudaFree(recv));
  return report(a, "fp32 sum captured in a graph, launched twice", worst,
                2.0 * a.nranks / 254.0 + 1e-5, same);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  g_rank = a.rank;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  CUDA_OK(cudaSetDevice(a.device < devices ? a.device : 0));
  ncclUniqueId id;
  share_id(a, &id);
  ncclComm_t comm;
  NCCL_OK(ncclCommInitRank(&comm, a.nranks, id, a.rank));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t t0, t1;
  CUDA_OK(cudaEventCreate(&t0));
  CUDA_OK(cudaEventCreate(&t1));

  if (a.rank == 0) {
    std::printf("%-10s %12s %14s %10s  %s\n", "size", "time_us", "algbw_GB/s", "max_err",
                a.q8 ? "check (q8 bound)" : "check (exact)");
  }
  const double bound = 2.0 * a.nranks / 254.0 + 1e-5;
  bool ok = true, any_inexact = false;
  for (size_t mib = a.min_mib; mib <= a.max_mib; mib *= 2) {
    const size_t bytes = mib << 20;
    const size_t count = bytes / sizeof(float);
    std::vector<float> host(count), expect(count, 0.0f);
    std::vector<double> exact(count, 0.0);
    for (int r = 0; r < a.nranks; ++r) {
      for (size_t i = 0; i < count; ++i) exact[i] += input(a.q8, r, i);
    }
    for (size_t i = 0; i < count; ++i) host[i] = input(a.q8, a.rank, i);
    float *send = nullptr, *recv = nullptr;
    CUDA_OK(cudaMalloc(&send, bytes));
    CUDA_OK(cudaMalloc(&recv, bytes));
    CUDA_OK(cudaMemcpy(send, host.data(), bytes, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(recv, 0xff, bytes));
    // The first call of this buffer is checked (no error-feedback residual yet).
    NCCL_OK(ncclAllReduce(send, recv, count, ncclFloat32, ncclSum, comm, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaMemcpy(host.data(), recv, bytes, cudaMemcpyDeviceToHost));
    double worst = 0;
    for (size_t i = 0; i < count; ++i) {
      const double err = std::fabs(static_cast<double>(host[i]) - exact[i]);
      if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
    }
    const bool good = a.q8 ? worst <= bound : worst == 0.0;
    any_inexact = any_inexact || worst > 0.0;
    ok = ok && good;
    CUDA_OK(cudaEventRecord(t0, stream));
    for (int it = 0; it < a.iters; ++it) {
      NCCL_OK(ncclAllReduce(send, recv, count, ncclFloat32, ncclSum, comm, stream));
    }
    CUDA_OK(cudaEventRecord(t1, stream));
    CUDA_OK(cudaEventSynchronize(t1));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, t0, t1));
    const double us = 1e3 * ms / a.iters;
    if (a.rank == 0) {
      std::printf("%4zu MiB   %12.1f %14.3f %10.3g  %s\n", mib, us,
                  static_cast<double>(bytes) / (us * 1e3), worst, good ? "ok" : "FAILED");
      std::fflush(stdout);
    } else if (!good) {
      std::fprintf(stderr, "rank %d: %zu MiB: max error %g (%s)\n", a.rank, mib, worst,
                   a.q8 ? "over the q8 bound" : "not exact");
    }
    CUDA_OK(cudaFree(send));
    CUDA_OK(cudaFree(recv));
  }
  if (a.q8 && !any_inexact) {
    std::fprintf(stderr,
                 "rank %d: every result was exact: the interposer did not compress (is "
                 "libgradpack-nccl.so preloaded and GRADPACK_COMPRESS=q8 set?)\n",
                 a.rank);
    ok = false;
  }
  if (a.q8) {
    ok = bf16_avg_in_place(a, comm, stream) && ok;
    ok = inside_user_group(a, comm, stream) && ok;
    ok = under_capture(a, comm, stream) && ok;
  }
  NCCL_OK(ncclCommDestroy(comm));
  CUDA_OK(cudaStreamDestroy(stream));
  return ok ? 0 : 1;
}
