// SPDX-License-Identifier: Apache-2.0
// gradpack-collnet-bench: one all-reduce of a large float32 buffer through the CollNet face of
// libnccl-net-gradpack.so, cut the way NCCL's CollNetChain cuts it (NCCL's
// src/transport/coll_net.cc): consecutive chunks of at most 8 channels x 256 KiB = 2 MiB, one
// iallreduce each, at most 8 in flight, only the oldest tested, in the same order on every node.
// One process per node, under gradpack-run (its environment gives libgradpack's communicator, which
// carries the 128-byte handles and the timings; the CollNet traffic itself goes only through the
// plugin):
//
//   gradpack-run -n 4 [--vcluster] -- gradpack-collnet-bench [options]
//     --plugin PATH   the .so (default: $GRADPACK_PLUGIN, else the one built with this program)
//     --size BYTES    the all-reduce (default 64M; K, M, G suffixes are powers of 1024)
//     --chunk BYTES   bytes per iallreduce (default 2M)
//     --window N      iallreduce calls in flight (default 8)
//     --iters N       timed all-reduces (default 5), after --warmup N (default 1)
//
// GRADPACK_TOPOLOGY (a cluster file) places the plugin's CollNet nodes on its hosts, each by its
// GRADPACK_HOSTNAME (gradpack-run --vcluster sets it); libgradpack's side channel stays flat.
// Prints one line from rank 0: GRADPACK_COLLNET_COMPRESS as the plugin reads it, the median
// (time_ms), mean, fastest and slowest time of one all-reduce (each the slowest rank's), the
// effective rate size / median time, and the check of the last result: exact without compression,
// within the stochastic quantizer's bound with q<b> (docs/codecs.md: absmax / (2^(b-1) - 1) per
// rounding, one rounding of every input and one of the reduced sum), and from which all-reduce
// size the .so's tuner steers NCCL to CollNetChain, before CollNet connected (configured figures)
// and after (the figures connect measured). Exit status 1 when the check fails or a call does.
#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "gradpack/gradpack.h"
#include "tests/net_plugin/harness.h"
#include "tools/size_suffix.h"

#ifndef GRADPACK_PLUGIN_DEFAULT
#define GRADPACK_PLUGIN_DEFAULT ""
#endif

namespace pt = gradpack::plugin_test;
using pt::Clock;

namespace {

constexpr size_t kHandleBytes = NCCL_NET_HANDLE_MAXSIZE;

struct Options {
  std::string plugin;
  size_t size = size_t{64} << 20;
  size_t chunk = size_t{2} << 20;
  int window = 8;
  int iters = 5;
  int warmup = 1;
};

[[noreturn]] void usage(int code) {
  fprintf(code == 0 ? stdout : stderr,
          "usage: gradpack-run -n N [--vcluster] -- gradpack-collnet-bench [--plugin PATH]\n"
          "       [--size BYTES] [--chunk BYTES] [--window N] [--iters N] [--warmup N]\n"
          "A float32 sum of --size bytes through the plugin's CollNet face, as NCCL's\n"
          "CollNetChain issues it: --chunk bytes per iallreduce, --window in flight.\n"
          "GRADPACK_COLLNET_COMPRESS=q8 (or any codec spec) compresses it.\n");
  exit(code);
}

// "64M" -> 67108864 (tools/size_suffix.h); false when it is not a size.
bool parse_size(const std::string& text, size_t* out) {
  const std::optional<uint64_t> v = gradpack::tools::parse_size_suffix(text);
  if (!v) return false;
  *out = static_cast<size_t>(*v);
  return true;
}

Options parse(int argc, char** argv) {
  Options o;
  const char* env = getenv("GRADPACK_PLUGIN");
  o.plugin = env != nullptr && *env != '\0' ? env : GRADPACK_PLUGIN_DEFAULT;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") usage(0);
    if (i + 1 >= argc) {
      fprintf(stderr, "gradpack-collnet-bench: unknown option or missing value: %s\n", a.c_str());
      usage(2);
    }
    const std::string v = argv[++i];
    bool ok = true;
    if (a == "--plugin") {
      o.plugin = v;
    } else if (a == "--size") {
      ok = parse_size(v, &o.size);
    } else if (a == "--chunk") {
      ok = parse_size(v, &o.chunk);
    } else if (a == "--window") {
      o.window = atoi(v.c_str());
      ok = o.window >= 1;
    } else if (a == "--iters") {
      o.iters = atoi(v.c_str());
      ok = o.iters >= 1;
    } else if (a == "--warmup") {
      o.warmup = atoi(v.c_str());
      ok = o.warmup >= 0;
    } else {
      fprintf(stderr, "gradpack-collnet-bench: unknown option %s\n", a.c_str());
      usage(2);
    }
    if (!ok) {
      fprintf(stderr, "gradpack-collnet-bench: bad value '%s' for %s\n", v.c_str(), a.c_str());
      usage(2);
    }
  }
  if (o.size < 4 || o.chunk < 4 || o.size % 4 != 0 || o.chunk % 4 != 0) {
    fprintf(stderr, "gradpack-collnet-bench: --size and --chunk must be multiples of 4 bytes\n");
    usage(2);
  }
  return o;
}

// Element i of rank r: a multiple of 1/256 in [-3.9, 3.9], so that a sum of a few ranks is exact
// in float32 in any order (the uncompressed check is equality).
float input(int rank, size_t i) {
  const uint64_t h = (static_cast<uint64_t>(i) * 2654435761u +
                      static_cast<uint64_t>(rank) * 40503u + (i >> 7) * 97u) %
                     2001u;
  return static_cast<float>(static_cast<int>(h) - 1000) / 256.0f;
}

// The quantizer's relative error per rounding with stochastic rounding (docs/codecs.md), 0 for
// uncompressed; -1 for a spec this program has no bound for (it then only reports the error).
double quant_eps(const std::string& spec) {
  if (spec.empty() || spec == "off" || spec == "none") return 0;
  if (spec.size() < 2 || spec[0] != 'q') return -1;
  const int bits = atoi(spec.c_str() + 1);
  if (bits < 2 || bits > 16) return -1;
  return 1 / (std::ldexp(1.0, bits - 1) - 1);
}

class Bench {
 public:
  Bench(const Options& o, gp_comm_t* comm) : o_(o), comm_(comm) {
    rank_ = gp_comm_rank(comm);
    nranks_ = gp_comm_size(comm);
  }

  // Everything from dlopen to finalize; false (with a message on stderr) when something failed.
  bool run() {
    std::string error;
    auto lib = pt::Library::open(o_.plugin, &error);
    if (lib == nullptr) return fail("dlopen " + o_.plugin + ": " + error);
    auto* net = static_cast<const ncclCollNet_v11_t*>(lib->symbol("ncclCollNetPlugin_v11"));
    if (net == nullptr) return fail(o_.plugin + " exports no ncclCollNetPlugin_v11");
    // The tuner, as NCCL orders it: init before CollNet connects, getCollInfo once it has.
    tuner_ = static_cast<const ncclTuner_v5_t*>(lib->symbol("ncclTunerPlugin_v5"));
    if (tuner_ == nullptr) return fail(o_.plugin + " exports no ncclTunerPlugin_v5");
    if (!ok(tuner_->init(&tuner_ctx_, 0, static_cast<size_t>(nranks_), static_cast<size_t>(nranks_),
                         pt::harness_logger, nullptr, nullptr),
            "tuner init")) {
      return false;
    }
    tuner_before_ = tuner_steers_from();
    void* ctx = nullptr;
    bool passed = ok(net->init(&ctx, 0, pt::harness_logger), "init");
    if (passed) {
      passed = connect_and_run(*net, ctx);
      ok(net->finalize(ctx), "finalize");
    }
    ok(tuner_->finalize(tuner_ctx_), "tuner finalize");
    return passed && failed_ == 0;
  }

 private:
  // The smallest all-reduce (a power of two from 1 KiB) for which the tuner makes CollNetChain
  // the cheapest entry of a table where every algorithm is enabled; 0: none up to 4 GiB.
  size_t tuner_steers_from() {
    using Table = float[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS];
    for (size_t bytes = 1024; bytes <= (size_t{1} << 32); bytes *= 2) {
      Table table;
      for (auto& row : table) std::fill(std::begin(row), std::end(row), 1.0f);
      int channels = 0;
      if (!ok(tuner_->getCollInfo(tuner_ctx_, ncclFuncAllReduce, bytes, 1,
                                  reinterpret_cast<float**>(&table[0][0]), NCCL_NUM_ALGORITHMS,
                                  NCCL_NUM_PROTOCOLS, 0, &channels),
              "tuner getCollInfo")) {
        return 0;
      }
      if (table[NCCL_ALGO_COLLNET_CHAIN][NCCL_PROTO_SIMPLE] < 1.0f) return bytes;
    }
    return 0;
  }
  static std::string size_text(size_t bytes) {
    return bytes == 0 ? std::string("never") : std::to_string(bytes);
  }

  bool fail(const std::string& what) {
    fprintf(stderr, "gradpack-collnet-bench: rank %d: %s\n", rank_, what.c_str());
    ++failed_;
    return false;
  }
  bool ok(ncclResult_t rc, const char* call) {
    if (rc == ncclSuccess) return true;
    return fail(std::string(call) + " returned " + pt::result_name(rc));
  }
  bool gp_ok(gp_status_t st, const char* call) {
    if (st == GP_OK) return true;
    return fail(std::string(call) + ": " + gp_status_string(st) + ": " + gp_last_error());
  }

  bool connect_and_run(const ncclCollNet_v11_t& net, void* ctx) {
    int ndev = 0;
    if (!ok(net.devices(&ndev), "devices")) return false;
    if (ndev < 1) return fail("the plugin has no device (check GRADPACK_IFNAME)");
    uint8_t handle[kHandleBytes] = {};
    void* lcomm = nullptr;
    if (!ok(net.listen(ctx, 0, handle, &lcomm), "listen")) return false;
    // NCCL's bootstrap all-gather of the handles, here libgradpack's.
    std::vector<uint8_t> all(kHandleBytes * static_cast<size_t>(nranks_));
    if (!gp_ok(gp_allgather(comm_, handle, all.data(), kHandleBytes, GP_UINT8), "gp_allgather")) {
      net.closeListen(lcomm);
      return false;
    }
    std::vector<void*> handles(static_cast<size_t>(nranks_));
    for (int r = 0; r < nranks_; ++r) handles[static_cast<size_t>(r)] = &all[kHandleBytes * r];
    void* coll = nullptr;
    const bool connected = ok(net.connect(handles.data(), nranks_, rank_, lcomm, &coll), "connect");
    ok(net.closeListen(lcomm), "closeListen");
    if (!connected) return false;
    tuner_after_ = tuner_steers_from();  // from the figures connect measured, if it did
    const bool passed = allreduces(net, coll);
    ok(net.closeColl(coll), "closeColl");
    return passed;
  }

  // One all-reduce of the whole buffer as CollNetChain's proxy issues it.
  bool one_allreduce(const ncclCollNet_v11_t& net, void* coll, float* send, float* recv, void* mr) {
    const size_t count = o_.size / 4, per_call = o_.chunk / 4;
    std::deque<void*> window;
    auto complete_oldest = [&]() -> bool {
      const Clock::time_point deadline = Clock::now() + std::chrono::seconds(120);
      for (;;) {
        int done = 0, bytes = 0;
        if (!ok(net.test(window.front(), &done, &bytes), "test")) return false;
        if (done) break;
        if (Clock::now() > deadline) return fail("an iallreduce not done after 120 s");
        sched_yield();  // NCCL's proxy spins; yielding leaves the plugin's worker a core
      }
      window.pop_front();
      return true;
    };
    for (size_t at = 0; at < count; at += per_call) {
      if (window.size() == static_cast<size_t>(o_.window) && !complete_oldest()) return false;
      const size_t n = std::min(per_call, count - at);
      void* request = nullptr;
      for (;;) {  // a NULL request means "full, retry"
        if (!ok(net.iallreduce(coll, send + at, recv + at, n, ncclFloat32, ncclSum, mr, mr,
                               &request),
                "iallreduce")) {
          return false;
        }
        if (request != nullptr) break;
        if (window.empty()) return fail("iallreduce gave no request with nothing in flight");
        if (!complete_oldest()) return false;
      }
      window.push_back(request);
    }
    while (!window.empty()) {
      if (!complete_oldest()) return false;
    }
    return true;
  }

  bool allreduces(const ncclCollNet_v11_t& net, void* coll) {
    const size_t count = o_.size / 4;
    // One registered region, send half then receive half, as NCCL registers its staging buffer.
    pt::HostBuffer region(2 * o_.size);
    auto* send = reinterpret_cast<float*>(region.data());
    auto* recv = send + count;
    for (size_t i = 0; i < count; ++i) send[i] = input(rank_, i);
    void* mr = nullptr;
    if (!ok(net.regMr(coll, region.data(), region.size(), NCCL_PTR_HOST, &mr), "regMr")) {
      return false;
    }
    std::vector<double> times;  // seconds, the slowest rank's, per timed all-reduce
    bool passed = true;
    for (int it = 0; passed && it < o_.warmup + o_.iters; ++it) {
      std::fill(recv, recv + count, std::nanf(""));
      if (!gp_ok(gp_barrier(comm_), "gp_barrier")) {
        passed = false;
        break;
      }
      const Clock::time_point t0 = Clock::now();
      passed = one_allreduce(net, coll, send, recv, mr);
      // {seconds, failed}: every rank takes part even after a local failure, so that all stop
      // together instead of waiting for the one that left.
      double t[2] = {std::chrono::duration<double>(Clock::now() - t0).count(), passed ? 0.0 : 1.0};
      if (!gp_ok(gp_allreduce(comm_, t, t, 2, GP_FLOAT64, GP_MAX, nullptr), "gp_allreduce") ||
          t[1] > 0) {
        passed = false;
      }
      if (passed && it >= o_.warmup) times.push_back(t[0]);
    }
    if (passed) passed = check_and_print(recv, times);
    ok(net.deregMr(coll, mr), "deregMr");
    return passed;
  }

  bool check_and_print(const float* recv, const std::vector<double>& times) {
    const size_t count = o_.size / 4;
    const char* env = getenv("GRADPACK_COLLNET_COMPRESS");
    const std::string spec = env != nullptr ? env : "";
    const double eps = quant_eps(spec);
    // The exact sum in double; the error against it relative to nothing (absolute), and the
    // bound: eps * (sum of the ranks' absmax + the reduced absmax), as gradpack-perf's -c.
    double maxerr = 0, sum_absmax = 0, result_absmax = 0;
    std::vector<double> rank_absmax(static_cast<size_t>(nranks_), 0);
    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      double exact = 0;
      for (int r = 0; r < nranks_; ++r) {
        const double x = input(r, i);
        exact += x;
        rank_absmax[static_cast<size_t>(r)] =
            std::max(rank_absmax[static_cast<size_t>(r)], std::fabs(x));
      }
      result_absmax = std::max(result_absmax, std::fabs(exact));
      const double err = std::fabs(static_cast<double>(recv[i]) - exact);
      if (!(err <= maxerr)) maxerr = std::isnan(err) ? INFINITY : err;
      if (eps == 0 && !(err == 0)) ++wrong;
    }
    for (double a : rank_absmax) sum_absmax += a;
    double bound = 0;
    if (eps > 0) {
      bound = eps * (sum_absmax + result_absmax + eps * sum_absmax) + 1e-6 * sum_absmax;
      if (!(maxerr <= bound)) wrong = 1;
    }
    double mean = 0;
    for (double t : times) mean += t;
    mean /= static_cast<double>(times.size());
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    const double fastest = sorted.front(), slowest = sorted.back();
    // The median is what bench/collnet.sh compares: on a shared machine one call slowed by
    // someone else's work moves the mean, not the median.
    const size_t m = sorted.size();
    const double median = m % 2 == 1 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2;
    // Every rank checks its own result; rank 0 prints whether all passed.
    double bad = wrong > 0 ? 1 : 0;
    if (!gp_ok(gp_allreduce(comm_, &bad, &bad, 1, GP_FLOAT64, GP_MAX, nullptr), "gp_allreduce")) {
      return false;
    }
    if (rank_ == 0) {
      char bound_text[32] = "exact";
      if (eps > 0) snprintf(bound_text, sizeof(bound_text), "%.3e", bound);
      if (eps < 0) snprintf(bound_text, sizeof(bound_text), "unchecked");
      printf(
          "collnet: GRADPACK_COLLNET_COMPRESS=%s nodes=%d size=%zu chunk=%zu window=%d iters=%d "
          "time_ms=%.2f mean_ms=%.2f min_ms=%.2f max_ms=%.2f GB/s=%.3f maxerr=%.3e bound=%s "
          "check=%s tuner_collnet_from_bytes=%s(before connect),%s(after)\n",
          spec.empty() ? "(unset)" : spec.c_str(), nranks_, o_.size, o_.chunk, o_.window,
          static_cast<int>(times.size()), median * 1e3, mean * 1e3, fastest * 1e3, slowest * 1e3,
          static_cast<double>(o_.size) / median / 1e9, maxerr, bound_text,
          bad > 0 ? "FAILED" : "ok", size_text(tuner_before_).c_str(),
          size_text(tuner_after_).c_str());
      fflush(stdout);
    }
    if (eps < 0) return true;
    return bad == 0;
  }

  const Options& o_;
  gp_comm_t* comm_;
  int rank_ = 0;
  int nranks_ = 1;
  int failed_ = 0;
  const ncclTuner_v5_t* tuner_ = nullptr;
  void* tuner_ctx_ = nullptr;
  size_t tuner_before_ = 0, tuner_after_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.plugin.empty()) {
    fprintf(stderr, "gradpack-collnet-bench: no plugin: pass --plugin or set GRADPACK_PLUGIN\n");
    return 2;
  }
  gp_comm_t* comm = nullptr;
  // libgradpack's communicator is only the side channel (handles, timings): it joins flat, and
  // GRADPACK_TOPOLOGY, restored before the plugin reads it at connect, places CollNet's nodes (so
  // a cluster file that lacks a host fails CollNet's connect, where it is under test).
  const char* topology = getenv("GRADPACK_TOPOLOGY");
  const std::string saved = topology != nullptr ? topology : "";
  setenv("GRADPACK_TOPOLOGY", "off", 1);
  const gp_status_t joined = gp_comm_init_from_env(&comm);
  if (topology != nullptr) {
    setenv("GRADPACK_TOPOLOGY", saved.c_str(), 1);
  } else {
    unsetenv("GRADPACK_TOPOLOGY");
  }
  if (joined != GP_OK) {
    fprintf(stderr,
            "gradpack-collnet-bench: gp_comm_init_from_env: %s (run it under gradpack-run)\n",
            gp_last_error());
    return 2;
  }
  Bench bench(o, comm);
  const bool passed = bench.run();
  gp_comm_destroy(comm);
  return passed ? 0 : 1;
}
