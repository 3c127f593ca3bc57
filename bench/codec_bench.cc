// SPDX-License-Identifier: Apache-2.0
// codec_bench: encode (with error feedback) and decode+accumulate speed of every codec, as a
// ratio of memcpy of the same buffer measured in the same run, on one thread.
//
// For each size (1, 16, 256 MiB of gradient-like fp32, tools/synthetic_data.h) the benchmarks
// run in registration order: memcpy/<size> first, then per codec encode/<codec>/<size> and
// decode_acc/<codec>/<size>. Counters:
//   x_memcpy    our bytes/s / memcpy bytes/s (input fp32 bytes; memcpy of that size, this run)
//   wire_ratio  input bytes / frame bytes
// A summary table follows the benchmark output (on stdout with the console format, else stderr).
//
// Quick subsets, with Google Benchmark's own filter (a regular expression on the names):
//   codec_bench --benchmark_filter=/16MiB           every codec at 16 MiB (~15 s)
//   codec_bench --benchmark_filter='q8/1MiB'        one codec at one size
//   codec_bench --benchmark_filter='topk:0.01\+q8'  escape the '+' of top-k specs
// `ninja codec_bench_quick` runs the first. A memcpy that a filter left out is measured inline
// (best of a few runs), so x_memcpy is always there.
//
// The kernels are those the process selects: the widest the CPU has, or GRADPACK_CPU_ISA.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compression/codec.h"
#include "compression/cpu/kernels.h"
#include "tools/synthetic_data.h"

namespace {

using gradpack::Codec;
using gradpack::Status;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kSizesMiB[] = {1, 16, 256};
constexpr const char* kCodecs[] = {"none", "fp16", "bf16",      "q8",
                                   "q4",   "q2",   "topk:0.01", "topk:0.01+q8"};
constexpr uint64_t kDataSeed = 20240601;

using Clock = std::chrono::steady_clock;

// The input of one size, made once and kept while the benchmarks of that size run (they are
// registered size by size, so at most one size is held at a time).
struct Workspace {
  size_t bytes = 0;
  std::vector<float> input;
  std::vector<float> target;  // memcpy destination, then the decode+accumulate buffer
};

Workspace& workspace(size_t bytes) {
  static Workspace ws;
  if (ws.bytes != bytes) {
    ws = Workspace{};  // free the previous size first
    const size_t n = bytes / sizeof(float);
    ws.input.resize(n);
    gradpack::tools::fill_synthetic(ws.input.data(), n, gradpack::tools::Distribution::kGradient,
                                    kDataSeed);
    ws.target.assign(n, 0.0f);  // touched now, so no page faults in the timed loops
    ws.bytes = bytes;
  }
  return ws;
}

// One codec's encoder state at one size: the residual persists across iterations (and across
// the benchmark's repeated runs), like the error-feedback state across training steps.
struct CodecState {
  std::string spec;
  size_t bytes = 0;
  Status status;
  std::unique_ptr<Codec> codec;
  std::vector<float> residual;
  std::vector<uint8_t> frame;
  size_t frame_bytes = 0;  // 0: nothing encoded yet
};

CodecState& codec_state(const std::string& spec, size_t bytes) {
  static CodecState cs;
  if (cs.spec != spec || cs.bytes != bytes) {
    cs = CodecState{};
    cs.spec = spec;
    cs.bytes = bytes;
    const size_t n = bytes / sizeof(float);
    cs.status = Codec::create(spec, &cs.codec);
    if (cs.status.ok()) {
      cs.residual.assign(n, 0.0f);
      cs.frame.assign(cs.codec->max_encoded_bytes(n, GP_FLOAT32), 0);
    }
  }
  return cs;
}

// memcpy bytes/s per size, as measured by memcpy/<size> in this run.
std::map<size_t, double>& memcpy_rates() {
  static std::map<size_t, double> rates;
  return rates;
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void copy_once(Workspace& ws) {
  std::memcpy(ws.target.data(), ws.input.data(), ws.bytes);
  benchmark::DoNotOptimize(ws.target.data());
  benchmark::ClobberMemory();
}

// memcpy's rate for this size, timed right after the codec's loop as the mean of as many copies
// as the codec ran (2 to 64), so both see the same state of the machine: on a shared machine
// memory bandwidth drifts between benchmarks more than any codec difference we care about.
double memcpy_rate_now(Workspace& ws, int64_t iterations) {
  const int64_t copies = std::clamp<int64_t>(iterations, 2, 64);
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < copies; ++i) copy_once(ws);
  return static_cast<double>(ws.bytes) * static_cast<double>(copies) / since(t0);
}

void bm_memcpy(benchmark::State& state, size_t bytes) {
  Workspace& ws = workspace(bytes);
  const auto t0 = Clock::now();
  for ([[maybe_unused]] auto _ : state) copy_once(ws);
  const double seconds = since(t0);
  // The framework calls this function several times while it sizes the run; the last call is
  // the one it reports, and the last one stored here.
  memcpy_rates()[bytes] =
      static_cast<double>(bytes) * static_cast<double>(state.iterations()) / seconds;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
}

// Our rate and memcpy's are timed the same way (a steady clock around the timed loop), so their
// ratio compares like with like; the framework's bytes_per_second is the same figure to within
// the loop's bookkeeping.
void set_counters(benchmark::State& state, Workspace& ws, const CodecState& cs, double seconds) {
  const double iterations = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(ws.bytes));
  state.counters["x_memcpy"] = static_cast<double>(ws.bytes) * iterations / seconds /
                               memcpy_rate_now(ws, state.iterations());
  state.counters["wire_ratio"] =
      static_cast<double>(ws.bytes) / static_cast<double>(cs.frame_bytes);
}

// SkipWithError keeps a pointer in some library versions: keep the text alive.
void skip(benchmark::State& state, const Status& status) {
  static std::string message;
  message = status.to_string();
  state.SkipWithError(message.c_str());
}

Status encode(CodecState& cs, Workspace& ws) {
  return cs.codec->encode(ws.input.data(), ws.input.size(), GP_FLOAT32, cs.residual.data(),
                          cs.frame.data(), cs.frame.size(), &cs.frame_bytes);
}

void bm_encode(benchmark::State& state, const std::string& spec, size_t bytes) {
  Workspace& ws = workspace(bytes);
  CodecState& cs = codec_state(spec, bytes);
  if (!cs.status.ok()) return skip(state, cs.status);
  const auto t0 = Clock::now();
  for ([[maybe_unused]] auto _ : state) {
    if (Status st = encode(cs, ws); !st.ok()) return skip(state, st);
  }
  set_counters(state, ws, cs, since(t0));
}

void bm_decode_acc(benchmark::State& state, const std::string& spec, size_t bytes) {
  Workspace& ws = workspace(bytes);
  CodecState& cs = codec_state(spec, bytes);
  if (!cs.status.ok()) return skip(state, cs.status);
  if (cs.frame_bytes == 0) {  // the encode benchmark was filtered out
    if (Status st = encode(cs, ws); !st.ok()) return skip(state, st);
  }
  const auto t0 = Clock::now();
  for ([[maybe_unused]] auto _ : state) {
    Status st = gradpack::decode_frame(cs.frame.data(), cs.frame_bytes, ws.target.data(),
                                       ws.input.size(), GP_FLOAT32, /*accumulate=*/true);
    if (!st.ok()) return skip(state, st);
  }
  set_counters(state, ws, cs, since(t0));
}

// What the summary shows of one benchmark run.
struct Measured {
  bool error = false;
  std::string message;
  double x_memcpy = 0, wire_ratio = 0;
};

// Forwards everything to the reporter --benchmark_format chose and keeps what the summary needs.
class SummaryReporter : public benchmark::BenchmarkReporter {
 public:
  explicit SummaryReporter(benchmark::BenchmarkReporter* inner) : inner_(inner) {}

  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }
  void Finalize() override { inner_->Finalize(); }

  void ReportRuns(const std::vector<Run>& runs) override {
    inner_->ReportRuns(runs);
    for (const Run& run : runs) {
      // With --benchmark_repetitions the mean stands for the runs; other aggregates are skipped.
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "mean") continue;
      Measured m;
      m.error = run.error_occurred;
      m.message = run.error_message;
      auto counter = [&](const char* name) {
        auto c = run.counters.find(name);
        return c == run.counters.end() ? 0.0 : c->second.value;
      };
      m.x_memcpy = counter("x_memcpy");
      m.wire_ratio = counter("wire_ratio");
      results_[run.run_name.function_name] = m;
    }
  }

  // One line per codec and size: the table to read when the counters scroll by.
  void print_summary(std::ostream& out, const char* kernels) const {
    auto find = [&](const std::string& name) -> const Measured* {
      auto it = results_.find(name);
      return it == results_.end() ? nullptr : &it->second;
    };
    char line[256];
    out << "\nSummary (CPU kernels: " << kernels
        << "; x_memcpy = our bytes/s / memcpy bytes/s of the same size in this run)\n";
    std::snprintf(line, sizeof line, "%-14s %7s %16s %20s %11s %12s\n", "codec", "size",
                  "encode x_memcpy", "decode-acc x_memcpy", "wire ratio", "memcpy GB/s");
    out << line;
    for (size_t mib : kSizesMiB) {
      const std::string size = std::to_string(mib) + "MiB";
      // The rate x_memcpy divided by (from memcpy/<size>, or measured inline).
      const auto rate = memcpy_rates().find(mib * kMiB);
      const double memcpy_gbps = rate == memcpy_rates().end() ? 0.0 : rate->second / 1e9;
      for (const char* codec : kCodecs) {
        const Measured* enc = find(std::string("encode/") + codec + "/" + size);
        const Measured* dec = find(std::string("decode_acc/") + codec + "/" + size);
        if (enc == nullptr && dec == nullptr) continue;  // filtered out
        auto cell = [](const Measured* m, double v, const char* fmt) -> std::string {
          if (m == nullptr) return "-";
          if (m->error) return "error";
          char buf[32];
          std::snprintf(buf, sizeof buf, fmt, v);
          return buf;
        };
        const Measured* wire = enc && !enc->error ? enc : dec;
        std::snprintf(line, sizeof line, "%-14s %7s %16s %20s %11s %12.2f\n", codec, size.c_str(),
                      cell(enc, enc ? enc->x_memcpy : 0, "%.3f").c_str(),
                      cell(dec, dec ? dec->x_memcpy : 0, "%.3f").c_str(),
                      cell(wire, wire ? wire->wire_ratio : 0, "%.2f").c_str(), memcpy_gbps);
        out << line;
      }
    }
    for (const auto& [name, m] : results_)
      if (m.error) out << "error: " << name << ": " << m.message << "\n";
  }

 private:
  benchmark::BenchmarkReporter* inner_;  // owned by the library
  std::map<std::string, Measured> results_;
};

void register_benchmarks() {
  for (size_t mib : kSizesMiB) {
    const size_t bytes = mib * kMiB;
    const std::string size = std::to_string(mib) + "MiB";
    // A warm-up run first (page faults, caches, clocks). At 256 MiB one iteration can take
    // 0.3 s, and a run of one iteration is at the mercy of anything else on the machine: give it
    // a few. The whole default run stays around a minute or two.
    const double min_time = mib >= 256 ? 1.0 : 0.2;
    auto configure = [min_time](benchmark::internal::Benchmark* b) {
      b->UseRealTime()->MinWarmUpTime(0.1)->MinTime(min_time)->Unit(benchmark::kMillisecond);
    };
    const std::string copy_name = "memcpy/" + size;
    configure(benchmark::RegisterBenchmark(copy_name.c_str(), bm_memcpy, bytes));
    for (const char* codec : kCodecs) {
      const std::string enc = std::string("encode/") + codec + "/" + size;
      const std::string dec = std::string("decode_acc/") + codec + "/" + size;
      configure(benchmark::RegisterBenchmark(enc.c_str(), bm_encode, std::string(codec), bytes));
      configure(
          benchmark::RegisterBenchmark(dec.c_str(), bm_decode_acc, std::string(codec), bytes));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0) {
      std::printf(
          "codec_bench: codec encode (error feedback) and decode+accumulate speed vs memcpy.\n"
          "Sizes 1, 16, 256 MiB; codecs none q8 q4 q2 fp16 bf16 topk:0.01 topk:0.01+q8.\n"
          "Quick subset: --benchmark_filter=/16MiB (a regex on encode/<codec>/<size>,\n"
          "decode_acc/<codec>/<size>, memcpy/<size>; write '\\+' for the '+' of top-k specs).\n"
          "GRADPACK_CPU_ISA=scalar|avx2|avx512 picks the kernels (default: the widest).\n\n");
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  const gradpack::cpu::CpuKernels* kernels = nullptr;
  if (Status st = gradpack::cpu::select_kernels(&kernels); !st.ok()) {
    std::fprintf(stderr, "codec_bench: %s\n", st.to_string().c_str());
    return 1;
  }
  benchmark::AddCustomContext("gradpack_cpu_kernels", kernels->name);
  register_benchmarks();

  benchmark::BenchmarkReporter* inner = benchmark::CreateDefaultDisplayReporter();
  SummaryReporter reporter(inner);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  // Keep machine-readable stdout (--benchmark_format=json|csv) parseable.
  const bool console = dynamic_cast<benchmark::ConsoleReporter*>(inner) != nullptr;
  reporter.print_summary(console ? std::cout : std::cerr, kernels->name);
  benchmark::Shutdown();
  return 0;
}
