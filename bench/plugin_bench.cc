// SPDX-License-Identifier: Apache-2.0
// gradpack-plugin-bench: NCCL's ring pattern through the net plugin between two processes, as
// NCCL's proxy runs it (src/transport/net.cc, sendProxyProgress and recvProxyProgress): one
// connection each way, 8 outstanding 1 MiB isends and 8 outstanding 1 MiB irecvs per connection,
// both directions at once, only the oldest request tested. Prints each direction's rate in GB/s
// (bytes received / time) and, with --vs-iperf3, runs iperf3 between the same two endpoints in the
// same run (one TCP stream each way at once, as bench/compare.sh's iperf3 mode) and prints plugin /
// iperf3.
//
//   gradpack-plugin-bench [options]
//     --plugin PATH      the .so (default: $GRADPACK_PLUGIN)
//     --netns NS0,NS1    run rank r inside network namespace NSr (`ip netns exec`, as
//                        gradpack-run --vcluster places ranks); addresses from
//                        /run/gradpack-vcluster/hosts; default: both on this host, loopback
//     --ifname IF        GRADPACK_IFNAME for the plugin (default lo, or eth0 with --netns)
//     --size BYTES       message size (default 1048576)
//     --depth N          outstanding requests per direction (default 8)
//     --messages N       timed messages per direction (default 4096)
//     --check            verify every payload (slower)
//     --idle-sleep-us N  a progress pass that completed nothing sleeps N µs (default 0: yield and
//                        spin, as NCCL's proxy does; on a machine with few cores the spinning
//                        competes with the plugin's own progress thread)
//     --vs-iperf3        also run iperf3 (-t --iperf3-seconds, default 5) and print the ratio
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/net_plugin/harness.h"

namespace pt = gradpack::plugin_test;
using pt::Clock;

namespace {

struct Options {
  std::string plugin = pt::plugin_path();
  std::vector<std::string> netns;
  std::string ifname;
  size_t size = 1 << 20;
  int depth = 8;
  uint64_t messages = 4096;
  bool check = false;
  int idle_sleep_us = 0;
  bool vs_iperf3 = false;
  int iperf3_seconds = 5;
  int iperf3_port = 5291;
  // Internal: a worker started by the launcher.
  int worker_rank = -1;
  int sock_fd = -1;
  int result_fd = -1;
};

[[noreturn]] void usage(int code) {
  fprintf(code == 0 ? stdout : stderr,
          "usage: gradpack-plugin-bench [--plugin PATH] [--netns NS0,NS1] [--ifname IF]\n"
          "       [--size BYTES] [--depth N] [--messages N] [--check] [--idle-sleep-us N]\n"
          "       [--vs-iperf3] [--iperf3-seconds S] [--iperf3-port P]\n"
          "NCCL's ring pattern (8 outstanding 1 MiB sends and receives per connection, both\n"
          "directions) through libnccl-net-gradpack.so between two processes.\n");
  exit(code);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "gradpack-plugin-bench: %s needs a value\n", a.c_str());
        usage(2);
      }
      return argv[++i];
    };
    if (a == "--plugin")
      o.plugin = value();
    else if (a == "--netns") {
      std::stringstream ss(value());
      for (std::string ns; std::getline(ss, ns, ',');) o.netns.push_back(ns);
      if (o.netns.size() != 2) {
        fprintf(stderr, "gradpack-plugin-bench: --netns takes two namespaces, NS0,NS1\n");
        usage(2);
      }
    } else if (a == "--ifname")
      o.ifname = value();
    else if (a == "--size")
      o.size = std::stoull(value());
    else if (a == "--depth")
      o.depth = std::stoi(value());
    else if (a == "--messages")
      o.messages = std::stoull(value());
    else if (a == "--check")
      o.check = true;
    else if (a == "--idle-sleep-us")
      o.idle_sleep_us = std::stoi(value());
    else if (a == "--vs-iperf3")
      o.vs_iperf3 = true;
    else if (a == "--iperf3-seconds")
      o.iperf3_seconds = std::stoi(value());
    else if (a == "--iperf3-port")
      o.iperf3_port = std::stoi(value());
    else if (a == "--worker")
      o.worker_rank = std::stoi(value());
    else if (a == "--sock-fd")
      o.sock_fd = std::stoi(value());
    else if (a == "--result-fd")
      o.result_fd = std::stoi(value());
    else if (a == "-h" || a == "--help")
      usage(0);
    else {
      fprintf(stderr, "gradpack-plugin-bench: unknown option '%s'\n", a.c_str());
      usage(2);
    }
  }
  if (o.depth < 1 || o.depth > 8) {
    fprintf(stderr, "gradpack-plugin-bench: --depth must be 1..8 (NCCL_STEPS)\n");
    usage(2);
  }
  if (o.ifname.empty()) o.ifname = o.netns.empty() ? "lo" : "eth0";
  return o;
}

// One rank: connect both ways, warm up, run the timed ring, write "seconds bytes" to result_fd.
int worker(const Options& o) {
  setenv("GRADPACK_IFNAME", o.ifname.c_str(), 1);
  setenv("GRADPACK_TRANSPORT", "tcp", 0);  // the environment may ask for ib
  pt::Channel ch(o.sock_fd);
  std::string error;
  auto lib = pt::Library::open(o.plugin, &error);
  if (lib == nullptr) {
    fprintf(stderr, "rank %d: %s\n", o.worker_rank, error.c_str());
    return 1;
  }
  auto net = pt::make_net(*lib, 11);
  if (net == nullptr) {
    fprintf(stderr, "rank %d: %s exports no ncclNetPlugin_v11\n", o.worker_rank, o.plugin.c_str());
    return 1;
  }
  void *ctx = nullptr, *lcomm = nullptr, *scomm = nullptr, *rcomm = nullptr;
  auto ok = [&](ncclResult_t rc, const char* what) {
    if (rc != ncclSuccess)
      fprintf(stderr, "rank %d: %s: %s\n", o.worker_rank, what, pt::result_name(rc));
    return rc == ncclSuccess;
  };
  if (!ok(net->init(&ctx, 1, -1, pt::harness_logger, nullptr), "init")) return 1;
  char mine[NCCL_NET_HANDLE_MAXSIZE] = {}, theirs[NCCL_NET_HANDLE_MAXSIZE] = {};
  if (!ok(net->listen(ctx, 0, mine, &lcomm), "listen")) return 1;
  if (!ch.send(mine, sizeof(mine)) || !ch.recv(theirs, sizeof(theirs), std::chrono::seconds(30))) {
    fprintf(stderr, "rank %d: handle exchange failed\n", o.worker_rank);
    return 1;
  }
  if (!pt::connect_accept(*net, ctx, 0, theirs, lcomm, &scomm, &rcomm)) return 1;
  net->close_listen(lcomm);
  const pt::Protocol proto{"ring", o.size * 8, o.size, 1, false};
  pt::HostBuffer sbuf(proto.buffer_bytes), rbuf(proto.buffer_bytes);
  void *smh = nullptr, *rmh = nullptr;
  if (!ok(net->reg_mr(scomm, sbuf.data(), sbuf.size(), NCCL_PTR_HOST, &smh), "regMr") ||
      !ok(net->reg_mr(rcomm, rbuf.data(), rbuf.size(), NCCL_PTR_HOST, &rmh), "regMr")) {
    return 1;
  }
  pt::Worker progress("NCCL Progress");
  auto ring = [&](uint64_t messages, double* seconds, uint64_t* bytes) {
    return progress.run([&] {
      pt::RingOptions r;
      r.proto = proto;
      r.depth = o.depth;
      r.messages = messages;
      r.verify = o.check;
      r.idle_sleep_us = o.idle_sleep_us;
      r.send_tag = o.worker_rank;
      r.recv_tag = 1 - o.worker_rank;
      pt::RingResult res;
      const auto t0 = Clock::now();
      bool done = pt::run_ring(*net, r, {scomm, smh, sbuf.data()}, {rcomm, rmh, rbuf.data()}, &res,
                               t0 + std::chrono::seconds(600));
      *seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      *bytes = res.bytes_received;
      if (!done) {
        fprintf(stderr, "rank %d: %s: %s\n", o.worker_rank, res.what.c_str(),
                pt::result_name(res.error));
      }
      return done;
    });
  };
  double seconds = 0;
  uint64_t bytes = 0;
  if (!ring(64, &seconds, &bytes)) return 1;  // warm-up
  char go = 'g';
  if (!ch.send(&go, 1) || !ch.recv(&go, 1, std::chrono::seconds(30))) return 1;
  if (!ring(o.messages, &seconds, &bytes)) return 1;
  char line[128];
  int n =
      snprintf(line, sizeof(line), "%.9f %llu\n", seconds, static_cast<unsigned long long>(bytes));
  if (write(o.result_fd, line, static_cast<size_t>(n)) != n) return 1;
  if (!ch.send(&go, 1) || !ch.recv(&go, 1, std::chrono::seconds(30))) return 1;  // both done
  net->dereg_mr(scomm, smh);
  net->dereg_mr(rcomm, rmh);
  net->close_send(scomm);
  net->close_recv(rcomm);
  net->finalize(ctx);
  return pt::failures() == 0 ? 0 : 1;
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

pid_t spawn(const std::vector<std::string>& args, const char* out_path = nullptr) {
  pid_t pid = fork();
  if (pid == 0) {
    if (out_path != nullptr) {
      int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        close(fd);
      }
    }
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    fprintf(stderr, "gradpack-plugin-bench: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

int wait_code(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<std::string> netns_prefix(const Options& o, int rank) {
  if (o.netns.empty()) return {};
  return {"ip", "netns", "exec", o.netns[static_cast<size_t>(rank)]};
}

// Address of host `ns` in /run/gradpack-vcluster/hosts ("NAME ADDRESS IFNAME"), or loopback.
std::string address_of(const Options& o, int rank) {
  if (o.netns.empty()) return "127.0.0.1";
  std::ifstream hosts("/run/gradpack-vcluster/hosts");
  std::string name, addr, ifname;
  while (hosts >> name >> addr >> ifname) {
    if (name == o.netns[static_cast<size_t>(rank)]) return addr;
  }
  return "";
}

// iperf3 -J's received rate (sum_received.bits_per_second) in GB/s, or -1.
double iperf3_gbs(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string json = ss.str();
  size_t at = json.rfind("\"sum_received\"");
  if (at == std::string::npos) return -1;
  at = json.find("\"bits_per_second\"", at);
  if (at == std::string::npos) return -1;
  at = json.find(':', at);
  return at == std::string::npos ? -1 : strtod(json.c_str() + at + 1, nullptr) / 8e9;
}

// Two iperf3 streams at once, rank 0 -> rank 1 and rank 1 -> rank 0; mean per-direction GB/s.
double run_iperf3(const Options& o, double* fwd, double* rev) {
  const std::string a0 = address_of(o, 0), a1 = address_of(o, 1);
  const std::string p0 = std::to_string(o.iperf3_port), p1 = std::to_string(o.iperf3_port + 1);
  auto with_ns = [&](int rank, std::vector<std::string> cmd) {
    auto v = netns_prefix(o, rank);
    v.insert(v.end(), cmd.begin(), cmd.end());
    return v;
  };
  pid_t s1 = spawn(with_ns(1, {"iperf3", "-s", "-1", "-B", a1, "-p", p0}), "/dev/null");
  pid_t s0 = spawn(with_ns(0, {"iperf3", "-s", "-1", "-B", a0, "-p", p1}), "/dev/null");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // servers listening
  char dir[] = "/tmp/gp-plugin-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) return -1;
  const std::string f = std::string(dir) + "/fwd.json", r = std::string(dir) + "/rev.json";
  const std::string t = std::to_string(o.iperf3_seconds);
  pid_t c0 = spawn(with_ns(0, {"iperf3", "-c", a1, "-p", p0, "-t", t, "-J"}), f.c_str());
  pid_t c1 = spawn(with_ns(1, {"iperf3", "-c", a0, "-p", p1, "-t", t, "-J"}), r.c_str());
  int rc0 = wait_code(c0), rc1 = wait_code(c1);
  kill(s0, SIGTERM);
  kill(s1, SIGTERM);
  wait_code(s0);
  wait_code(s1);
  *fwd = rc0 == 0 ? iperf3_gbs(f) : -1;
  *rev = rc1 == 0 ? iperf3_gbs(r) : -1;
  unlink(f.c_str());
  unlink(r.c_str());
  rmdir(dir);
  if (*fwd <= 0 || *rev <= 0) return -1;
  return (*fwd + *rev) / 2;
}

int launcher(const Options& o) {
  if (o.plugin.empty() || access(o.plugin.c_str(), R_OK) != 0) {
    fprintf(stderr,
            "gradpack-plugin-bench: no plugin at '%s' (--plugin PATH or $GRADPACK_PLUGIN)\n",
            o.plugin.c_str());
    return 2;
  }
  int sv[2], results[2][2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || pipe(results[0]) != 0 ||
      pipe(results[1]) != 0) {
    perror("gradpack-plugin-bench");
    return 1;
  }
  const std::string exe = self_exe();
  pid_t pids[2];
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> args = netns_prefix(o, r);
    for (const std::string& a :
         {exe, std::string("--worker"), std::to_string(r), std::string("--sock-fd"),
          std::to_string(sv[r]), std::string("--result-fd"), std::to_string(results[r][1]),
          std::string("--plugin"), o.plugin, std::string("--ifname"), o.ifname,
          std::string("--size"), std::to_string(o.size), std::string("--depth"),
          std::to_string(o.depth), std::string("--messages"), std::to_string(o.messages)}) {
      args.push_back(a);
    }
    if (o.check) args.push_back("--check");
    args.push_back("--idle-sleep-us");
    args.push_back(std::to_string(o.idle_sleep_us));
    pids[r] = spawn(args);
  }
  close(sv[0]);
  close(sv[1]);
  close(results[0][1]);
  close(results[1][1]);
  double gbs[2] = {-1, -1};
  for (int r = 0; r < 2; ++r) {
    char line[128] = {};
    ssize_t n = read(results[r][0], line, sizeof(line) - 1);
    double seconds = 0;
    unsigned long long bytes = 0;
    if (n > 0 && sscanf(line, "%lf %llu", &seconds, &bytes) == 2 && seconds > 0) {
      gbs[r] = static_cast<double>(bytes) / seconds / 1e9;
    }
    close(results[r][0]);
  }
  const int c0 = wait_code(pids[0]), c1 = wait_code(pids[1]);
  if (c0 != 0 || c1 != 0 || gbs[0] <= 0 || gbs[1] <= 0) {
    fprintf(stderr, "gradpack-plugin-bench: ranks exited %d and %d\n", c0, c1);
    return 1;
  }
  const double mean = (gbs[0] + gbs[1]) / 2;
  printf("# plugin %s, %s, %d x %zu B outstanding each way, %llu messages per direction\n",
         o.plugin.c_str(),
         o.netns.empty() ? "loopback" : (o.netns[0] + " <-> " + o.netns[1]).c_str(), o.depth,
         o.size, static_cast<unsigned long long>(o.messages));
  printf("plugin: %.3f GB/s into rank 0, %.3f GB/s into rank 1 (mean %.3f GB/s per direction)\n",
         gbs[0], gbs[1], mean);
  if (o.vs_iperf3) {
    double fwd = 0, rev = 0;
    const double ip = run_iperf3(o, &fwd, &rev);
    if (ip <= 0) {
      fprintf(stderr, "gradpack-plugin-bench: iperf3 failed (is it installed? ports %d-%d free?)\n",
              o.iperf3_port, o.iperf3_port + 1);
      return 1;
    }
    printf("iperf3: %.3f GB/s rank 0 -> 1, %.3f GB/s rank 1 -> 0 (mean %.3f GB/s per direction)\n",
           fwd, rev, ip);
    printf("ratio plugin/iperf3: %.2f\n", mean / ip);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.worker_rank >= 0) return worker(o);
  return launcher(o);
}
