// SPDX-License-Identifier: Apache-2.0
// gloo_perf: Gloo's all-reduce (the functional gloo::allreduce, tcp transport) measured and printed
// the way gradpack-perf does, as the Gloo baseline of bench/compare.sh.
//
//   gradpack-run -n 4 -- gloo_perf --store /tmp/dir -b 8 -e 128M -f 2
//
// Rank and size come from --rank/--world-size, else GRADPACK_RANK/GRADPACK_WORLD_SIZE (what
// gradpack-run sets), else OMPI_COMM_WORLD_RANK/SIZE. Ranks meet through a gloo FileStore in
// --store (a directory all ranks see; fresh for every run). The tcp device binds --addr, else the
// IPv4 address of --ifname or GRADPACK_IFNAME (first interface named), else 127.0.0.1.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench/peers/peer_perf.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/config.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gloo/transport/tcp/device.h"

namespace gradpack::peers {
namespace {

const char kHelp[] =
    R"(usage: gloo_perf --store DIR [-b MIN] [-e MAX] [-f F | -i STEP] [-n ITERS] [-w WARMUP]
                 [-c CHECK] [--addr A | --ifname IF] [--rank R --world-size N] [-a ring|bcube]
                 [--prefix P] [-T SECONDS]

Gloo float sum all-reduce (gloo::allreduce over tcp), printed as gradpack-perf / nccl-tests print
it: time per iteration (us, the maximum over ranks), algbw = size/time, busbw = algbw*2(n-1)/n
(GB/s = 1e9), #wrong elements summed over ranks. Sizes take K, M, G suffixes (2^10, 2^20, 2^30).
  --store DIR     FileStore directory shared by all ranks (fresh per run)
  --prefix P      PrefixStore prefix (default gloo_perf)
  --addr A        address of this rank's tcp device
  --ifname IF     or the interface whose IPv4 address to use (default GRADPACK_IFNAME, else
                  127.0.0.1)
  -a ALGO         ring (default) or bcube
  -T SECONDS      Gloo timeout of every operation (default 300)
)";

// The first IPv4 address of interface `name`, or "" when it has none.
std::string interface_address(const std::string& name) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_addr == nullptr || ifa->ifa_addr->sa_family != AF_INET) continue;
    if (name != ifa->ifa_name) continue;
    char text[INET_ADDRSTRLEN];
    const auto* sin = reinterpret_cast<const sockaddr_in*>(ifa->ifa_addr);
    if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)) != nullptr) {
      found = text;
      break;
    }
  }
  freeifaddrs(list);
  return found;
}

// The address the tcp device binds: --addr, --ifname, GRADPACK_IFNAME's first plain name.
std::string device_address(const PeerOptions& opts) {
  if (!opts.address.empty()) return opts.address;
  std::string ifname = opts.ifname;
  if (ifname.empty()) {
    const char* env = std::getenv("GRADPACK_IFNAME");
    std::string list = env != nullptr ? env : "";
    // NCCL syntax: "eth0,eth1" prefixes, "=eth0" exact, "^lo" excludes. Use the first name given.
    if (!list.empty() && list[0] != '^') {
      if (list[0] == '=') list.erase(0, 1);
      ifname = list.substr(0, list.find(','));
    }
  }
  if (ifname.empty()) return "127.0.0.1";
  return interface_address(ifname);
}

int run(const PeerOptions& opts) {
  const int rank =
      opts.rank >= 0 ? opts.rank : env_int("GRADPACK_RANK", env_int("OMPI_COMM_WORLD_RANK", -1));
  const int size = opts.world_size > 0
                       ? opts.world_size
                       : env_int("GRADPACK_WORLD_SIZE", env_int("OMPI_COMM_WORLD_SIZE", -1));
  if (rank < 0 || size < 1 || rank >= size) {
    std::fprintf(stderr,
                 "gloo_perf: rank/size unknown or invalid (rank %d, size %d): use "
                 "--rank/--world-size or GRADPACK_RANK/GRADPACK_WORLD_SIZE\n",
                 rank, size);
    return 2;
  }
  if (opts.store_dir.empty()) {
    std::fprintf(stderr, "gloo_perf: --store DIR is required (a directory all ranks share)\n");
    return 2;
  }
  const std::string address = device_address(opts);
  if (address.empty()) {
    std::fprintf(stderr, "gloo_perf: interface '%s' has no IPv4 address\n", opts.ifname.c_str());
    return 2;
  }

  gloo::transport::tcp::attr attr;
  attr.hostname = address;
  auto device = gloo::transport::tcp::CreateDevice(attr);
  gloo::rendezvous::FileStore file_store(opts.store_dir);
  gloo::rendezvous::PrefixStore store(opts.prefix, file_store);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
  context->setTimeout(std::chrono::seconds(opts.timeout_s));
  context->connectFullMesh(store, device);

  auto barrier = [&context] {
    gloo::BarrierOptions barrier_opts(context);
    gloo::barrier(barrier_opts);
  };
  // The slowest rank's time, as gradpack-perf reports it; the sum of wrong elements.
  auto max_over_ranks = [&context](double value) {
    gloo::AllreduceOptions reduce_opts(context);
    reduce_opts.setOutput(&value, 1);
    reduce_opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::max<double>));
    reduce_opts.setTag(1);
    gloo::allreduce(reduce_opts);
    return value;
  };
  auto sum_over_ranks = [&context](int64_t value) {
    gloo::AllreduceOptions reduce_opts(context);
    reduce_opts.setOutput(&value, 1);
    reduce_opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<int64_t>));
    reduce_opts.setTag(2);
    gloo::allreduce(reduce_opts);
    return value;
  };
  const auto algorithm = opts.algorithm == "bcube" ? gloo::AllreduceOptions::Algorithm::BCUBE
                                                   : gloo::AllreduceOptions::Algorithm::RING;

  if (rank == 0) {
    std::printf("# gloo_perf: gloo %d.%d.%d, tcp, algorithm %s, %d ranks, rank 0 at %s\n",
                GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH, opts.algorithm.c_str(),
                size, address.c_str());
    std::printf("%s", peer_table_header("Gloo gloo::allreduce", size).c_str());
    std::fflush(stdout);
  }

  int64_t total_wrong = 0;
  double busbw_sum = 0;
  int rows = 0;
  for (uint64_t requested : peer_sweep(opts)) {
    const uint64_t count = requested / sizeof(float);
    if (count == 0) continue;
    const uint64_t bytes = count * sizeof(float);
    std::vector<float> input(count), output(count);
    PeerMeasurement result[2];
    for (int in_place = 0; in_place < 2; ++in_place) {
      gloo::AllreduceOptions ar(context);
      if (in_place == 0) ar.setInput(input.data(), count);
      ar.setOutput(output.data(), count);
      ar.setAlgorithm(algorithm);
      ar.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      fill_check(input.data(), count, rank, 0);
      fill_check(output.data(), count, rank, 0);
      for (int i = 0; i < opts.warmup; ++i) gloo::allreduce(ar);
      barrier();
      auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < opts.iters; ++i) gloo::allreduce(ar);
      std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
      result[in_place].time_us = max_over_ranks(elapsed.count() / opts.iters);
      if (opts.check > 0) {
        // A separate run on fresh inputs: the timed ones summed sums.
        fill_check(in_place == 0 ? input.data() : output.data(), count, rank, 1 + in_place);
        gloo::allreduce(ar);
        int64_t wrong = count_wrong(output.data(), count, size, 1 + in_place);
        result[in_place].wrong = sum_over_ranks(wrong);
        total_wrong += result[in_place].wrong;
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
  // A rank that leaves before the others are done makes them fail with "Connection closed by
  // peer": meet once more before the context goes away.
  barrier();
  return total_wrong == 0 ? 0 : 1;
}

}  // namespace
}  // namespace gradpack::peers

int main(int argc, char** argv) {
  gradpack::peers::PeerOptions opts;
  if (auto error = gradpack::peers::parse_peer_args(argc, argv, &opts)) {
    std::fprintf(stderr, "gloo_perf: %s\n%s", error->c_str(), gradpack::peers::kHelp);
    return 2;
  }
  if (opts.help) {
    std::printf("%s", gradpack::peers::kHelp);
    return 0;
  }
  // Gloo reports failures (timeouts, closed connections, bad addresses) by throwing.
  try {
    return gradpack::peers::run(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gloo_perf: %s\n", e.what());
    return 1;
  }
}
