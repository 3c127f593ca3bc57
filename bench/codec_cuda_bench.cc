// SPDX-License-Identifier: Apache-2.0
// codec_cuda_bench: throughput of the GPU codecs, each against a device-to-device copy of the same
// fp32 buffer (cudaMemcpyAsync), at 16 and 256 MiB.
//
// Two figures per operation:
//   input GB/s  fp32 input bytes / time (what a caller feels); "x copy" divides it by the copy's
//               bytes / time;
//   traffic     bytes the kernels must move (reads + writes) / time, and its ratio to the copy's
//               traffic (2 x bytes): how close the operation runs to the memory system's limit.
//               An encode with a residual moves 12 + bits/8 bytes per value against the copy's 8,
//               so its input ratio cannot pass 8 / 13 while its traffic ratio can reach 1.
// Times include each call's host work and waits (decode waits for its frame check).
//
// Usage: codec_cuda_bench [--iters N]. Without a CUDA device it prints why and exits 0.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "compression/cuda/codec_cuda.h"
#include "compression/spec.h"

namespace {

using gradpack::CodecSpec;
using gradpack::Status;

#define BENCH_CHECK(expr)                                                     \
  do {                                                                        \
    const cudaError_t e_ = (expr);                                            \
    if (e_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s failed: %s\n", #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                           \
    }                                                                         \
  } while (0)

void check(const Status& st, const char* what) {
  if (!st.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, st.to_string().c_str());
    std::exit(1);
  }
}

CodecSpec spec_of(const char* text) {
  CodecSpec spec;
  check(gradpack::parse_codec_spec(text, &spec), text);
  return spec;
}

// Gradient-like values: a cheap generator (sums of uniforms), heavy tails, mixed scales.
std::vector<float> gradient_like(size_t n) {
  std::vector<float> v(n);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  auto next = [&s] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
  };
  for (size_t i = 0; i < n; ++i) {
    const float u = next() + next() + next() - 1.5f;
    const float tail = next() < 0.02f ? 20.0f : 1.0f;
    v[i] = u * 1e-3f * tail * (1.0f + static_cast<float>((i >> 10) % 3));
  }
  return v;
}

template <typename T>
T* device_alloc(size_t bytes) {
  void* p = nullptr;
  BENCH_CHECK(cudaMalloc(&p, bytes));
  return static_cast<T*>(p);
}

// Milliseconds per call of f, over iters calls after a warm-up.
double time_ms(cudaStream_t stream, int iters, const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  BENCH_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  BENCH_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < iters; ++i) f();
  BENCH_CHECK(cudaEventRecord(stop, stream));
  BENCH_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
  BENCH_CHECK(cudaEventDestroy(start));
  BENCH_CHECK(cudaEventDestroy(stop));
  return ms / iters;
}

struct Row {
  std::string name;
  double ms;
  double traffic_per_value;  // bytes moved per value; 0: not stated
};

}  // namespace

int main(int argc, char** argv) {
  int iters = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
      iters = std::atoi(argv[++i]);
    } else {
      std::printf("usage: %s [--iters N]\n", argv[0]);
      return std::strcmp(argv[i], "--help") == 0 ? 0 : 2;
    }
  }
  std::string why;
  if (!gradpack::cuda::device_available(&why)) {
    std::printf("no CUDA device: %s; GPU figures not measured\n", why.c_str());
    return 0;
  }
  int device = 0;
  BENCH_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, device));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount);

  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreate(&stream));
  gradpack::cuda::Workspace ws;
  const CodecSpec q8 = spec_of("q8");
  const CodecSpec q4 = spec_of("q4");
  const CodecSpec topk = spec_of("topk:0.01+q8");

  for (size_t mib : {size_t{16}, size_t{256}}) {
    const size_t bytes = mib << 20;
    const size_t n = bytes / sizeof(float);
    const int reps = iters > 0 ? iters : (mib <= 16 ? 200 : 30);
    std::vector<float> host = gradient_like(n);
    float* x = device_alloc<float>(bytes);
    float* r = device_alloc<float>(bytes);
    float* copy = device_alloc<float>(bytes);
    float* out = device_alloc<float>(bytes);
    BENCH_CHECK(cudaMemcpy(x, host.data(), bytes, cudaMemcpyHostToDevice));
    BENCH_CHECK(cudaMemset(r, 0, bytes));
    BENCH_CHECK(cudaMemset(out, 0, bytes));
    size_t cap = 0;
    for (const CodecSpec* s : {&q8, &q4, &topk})
      cap = std::max(cap, gradpack::cuda::max_encoded_bytes(*s, n, GP_FLOAT32));
    uint8_t* frame = device_alloc<uint8_t>(cap);
    uint64_t call = 0;

    std::vector<Row> rows;
    rows.push_back(
        {"d2d copy",
         time_ms(stream, reps,
                 [&] {
                   BENCH_CHECK(cudaMemcpyAsync(copy, x, bytes, cudaMemcpyDeviceToDevice, stream));
                 }),
         8.0});
    for (const auto& [name, spec, bits] : {std::tuple{"q8", &q8, 8}, std::tuple{"q4", &q4, 4}}) {
      size_t frame_bytes = 0;
      auto enc = [&, spec = spec](float* residual) {
        check(gradpack::cuda::encode(*spec, x, GP_FLOAT32, n, residual, call++, ws, frame, cap,
                                     &frame_bytes, stream),
              "encode");
      };
      const double codes = bits / 8.0;
      rows.push_back(
          {std::string(name) + " encode", time_ms(stream, reps, [&] { enc(r); }), 12.0 + codes});
      rows.push_back({std::string(name) + " encode, no residual",
                      time_ms(stream, reps, [&] { enc(nullptr); }), 4.0 + codes});
      enc(r);
      BENCH_CHECK(cudaStreamSynchronize(stream));
      rows.push_back({std::string(name) + " decode",
                      time_ms(stream, reps,
                              [&] {
                                check(gradpack::cuda::decode(frame, frame_bytes, out, n, GP_FLOAT32,
                                                             false, ws, stream),
                                      "decode");
                              }),
                      4.0 + codes});
      rows.push_back({std::string(name) + " decode+accumulate",
                      time_ms(stream, reps,
                              [&] {
                                check(gradpack::cuda::decode(frame, frame_bytes, out, n, GP_FLOAT32,
                                                             true, ws, stream),
                                      "decode");
                              }),
                      8.0 + codes});
    }
    {
      size_t frame_bytes = 0;
      BENCH_CHECK(cudaMemset(r, 0, bytes));
      const int topk_reps = std::max(3, reps / 4);
      rows.push_back({"topk:0.01+q8 encode",
                      time_ms(stream, topk_reps,
                              [&] {
                                check(gradpack::cuda::encode(topk, x, GP_FLOAT32, n, r, call++, ws,
                                                             frame, cap, &frame_bytes, stream),
                                      "top-k encode");
                              }),
                      0.0});
      rows.push_back({"topk:0.01+q8 decode+accumulate",
                      time_ms(stream, reps,
                              [&] {
                                check(gradpack::cuda::decode(frame, frame_bytes, out, n, GP_FLOAT32,
                                                             true, ws, stream),
                                      "top-k decode");
                              }),
                      0.0});
    }

    const double copy_ms = rows[0].ms;
    const double copy_gbs = static_cast<double>(bytes) / (copy_ms * 1e6);
    const double copy_traffic = 2.0 * static_cast<double>(bytes) / (copy_ms * 1e6);
    std::printf("\n%zu MiB fp32 (%zu values): d2d copy %.1f GB/s of input, %.1f GB/s traffic\n",
                mib, n, copy_gbs, copy_traffic);
    std::printf("  %-34s %9s %11s %7s %12s %7s\n", "operation", "ms", "input GB/s", "x copy",
                "traffic GB/s", "x copy");
    for (const Row& row : rows) {
      const double gbs = static_cast<double>(bytes) / (row.ms * 1e6);
      if (row.traffic_per_value > 0) {
        const double traffic = row.traffic_per_value * static_cast<double>(n) / (row.ms * 1e6);
        std::printf("  %-34s %9.3f %11.1f %7.2f %12.1f %7.2f\n", row.name.c_str(), row.ms, gbs,
                    gbs / copy_gbs, traffic, traffic / copy_traffic);
      } else {
        std::printf("  %-34s %9.3f %11.1f %7.2f %12s %7s\n", row.name.c_str(), row.ms, gbs,
                    gbs / copy_gbs, "-", "-");
      }
    }
    BENCH_CHECK(cudaFree(frame));
    BENCH_CHECK(cudaFree(x));
    BENCH_CHECK(cudaFree(r));
    BENCH_CHECK(cudaFree(copy));
    BENCH_CHECK(cudaFree(out));
  }
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}
