// SPDX-License-Identifier: Apache-2.0
// Faults across processes, through the C API: a rank killed mid-all-reduce, an unreachable root,
// a malformed rendezvous URL, world sizes that do not match. Every surviving rank must return a
// clear error within GRADPACK_TIMEOUT_MS (4 s here, set by CMake), never hang.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gradpack/gradpack.h"

namespace {

using Clock = std::chrono::steady_clock;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gp-multiproc-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  std::string url() const { return "file://" + path_; }

 private:
  std::string path_;
};

// Forks one child per function; each child's exit code is the function's result. Returns the
// exit codes (128 + signal for a child killed by a signal).
std::vector<int> run_children(const std::vector<std::function<int()>>& bodies) {
  std::vector<pid_t> pids;
  for (const auto& body : bodies) {
    pid_t pid = fork();
    if (pid == 0) {
      int code = body();
      _exit(code);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  return codes;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(CommFaults, KilledRankMakesEverySurvivorFailWithinTheTimeout) {
  TempDir dir;
  const int nranks = 3;
  auto body = [&](int rank) -> int {
    gp_comm_t* comm = nullptr;
    if (gp_comm_init(rank, nranks, dir.url().c_str(), &comm) != GP_OK) {
      fprintf(stderr, "rank %d init: %s\n", rank, gp_last_error());
      return 10;
    }
    std::vector<float> buf(size_t{4} << 20, 1.0f);  // 16 MiB per call
    if (rank == 2) {
      // Dies by SIGKILL in the middle of its all-reduces: no goodbye on any socket.
      std::thread killer([] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        raise(SIGKILL);
      });
      killer.detach();
    }
    Clock::time_point killed_by = Clock::now() + std::chrono::milliseconds(300);
    for (int i = 0; i < 100000; ++i) {
      gp_status_t st =
          gp_allreduce(comm, buf.data(), buf.data(), buf.size(), GP_FLOAT32, GP_SUM, nullptr);
      if (st != GP_OK) {
        double after = std::chrono::duration<double>(Clock::now() - killed_by).count();
        fprintf(stderr, "rank %d failed %.2f s after the kill: %s: %s\n", rank, after,
                gp_status_string(st), gp_last_error());
        gp_comm_destroy(comm);
        if (st != GP_ERR_REMOTE && st != GP_ERR_TIMEOUT) return 11;
        return after < 4.0 + 2.0 ? 0 : 12;  // within GRADPACK_TIMEOUT_MS, with slack
      }
    }
    return 13;  // never noticed
  };
  auto codes =
      run_children({[&] { return body(0); }, [&] { return body(1); }, [&] { return body(2); }});
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 0);
  EXPECT_EQ(codes[2], 128 + SIGKILL);
}

TEST(CommFaults, UnreachableRootIsATimeoutNamingTheAddress) {
  const int port = free_port();  // nobody listens there
  const std::string url = "tcp://127.0.0.1:" + std::to_string(port);
  gp_comm_t* comm = nullptr;
  auto start = Clock::now();
  gp_status_t st = gp_comm_init(1, 2, url.c_str(), &comm);
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(st, GP_ERR_TIMEOUT) << gp_last_error();
  EXPECT_EQ(comm, nullptr);
  EXPECT_NE(std::string(gp_last_error()).find(std::to_string(port)), std::string::npos)
      << gp_last_error();
  EXPECT_LT(took, 4.0 + 2.0);
}

TEST(CommFaults, MalformedRendezvousUrlIsRejectedWithItsText) {
  for (const char* url :
       {"tcpx://host:1", "tcp://host", "tcp://host:99999", "file://relative", "", "tcp://[::1:5"}) {
    gp_comm_t* comm = nullptr;
    EXPECT_EQ(gp_comm_init(0, 2, url, &comm), GP_ERR_INVALID_ARGUMENT) << url;
    EXPECT_EQ(comm, nullptr);
    EXPECT_NE(std::string(gp_last_error()).find(url), std::string::npos) << gp_last_error();
  }
  gp_comm_t* comm = nullptr;
  EXPECT_EQ(gp_comm_init(2, 2, "file:///tmp", &comm), GP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gp_comm_init(0, 0, "file:///tmp", &comm), GP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gp_comm_init(0, 1, nullptr, &comm), GP_ERR_INVALID_ARGUMENT);
}

TEST(CommFaults, WorldSizeThatDoesNotMatchIsNamed) {
  // Rank 2 believes in 3 ranks, ranks 0 and 1 in 2.
  TempDir dir;
  auto body = [&](int rank, int nranks) -> int {
    gp_comm_t* comm = nullptr;
    gp_status_t st = gp_comm_init(rank, nranks, dir.url().c_str(), &comm);
    if (nranks == 3) {
      bool named = std::string(gp_last_error()).find("world size") != std::string::npos;
      fprintf(stderr, "rank %d: %s: %s\n", rank, gp_status_string(st), gp_last_error());
      return st == GP_ERR_INVALID_ARGUMENT && named ? 0 : 20;
    }
    if (st != GP_OK) return 21;
    gp_comm_destroy(comm);
    return 0;
  };
  auto codes = run_children(
      {[&] { return body(0, 2); }, [&] { return body(1, 2); }, [&] { return body(2, 3); }});
  EXPECT_EQ(codes, (std::vector<int>{0, 0, 0}));
}

TEST(CommFaults, MissingRankIsATimeoutNamingIt) {
  // World size 3, but only ranks 0 and 1 start.
  TempDir dir;
  auto body = [&](int rank) -> int {
    gp_comm_t* comm = nullptr;
    gp_status_t st = gp_comm_init(rank, 3, dir.url().c_str(), &comm);
    std::string msg = gp_last_error();
    fprintf(stderr, "rank %d: %s: %s\n", rank, gp_status_string(st), msg.c_str());
    return st == GP_ERR_TIMEOUT && msg.find("rank 2") != std::string::npos ? 0 : 30;
  };
  auto codes = run_children({[&] { return body(0); }, [&] { return body(1); }});
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST(CommFaults, EnvironmentInitAndAllCollectivesThroughTheCApi) {
  const int port = free_port();
  auto body = [&](int rank) -> int {
    setenv("GRADPACK_ROOT", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
    setenv("RANK", std::to_string(rank).c_str(), 1);  // torchrun's names
    setenv("WORLD_SIZE", "2", 1);
    gp_comm_t* comm = nullptr;
    if (gp_comm_init_from_env(&comm) != GP_OK) {
      fprintf(stderr, "rank %d: %s\n", rank, gp_last_error());
      return 40;
    }
    if (gp_comm_rank(comm) != rank || gp_comm_size(comm) != 2) return 41;
    gp_allreduce_opts_t opts;
    gp_allreduce_opts_init(&opts);
    int64_t v[3] = {rank + 1, 10, -rank};
    if (gp_allreduce(comm, v, v, 3, GP_INT64, GP_SUM, &opts) != GP_OK) return 42;
    if (v[0] != 3 || v[1] != 20 || v[2] != -1) return 43;
    float g[4] = {0, 0, 0, 0};
    float mine = static_cast<float>(rank + 5);
    if (gp_allgather(comm, &mine, g, 1, GP_FLOAT32) != GP_OK) return 44;
    if (g[0] != 5.0f || g[1] != 6.0f) return 45;
    double b = rank == 1 ? 3.5 : 0.0;
    if (gp_broadcast(comm, &b, &b, 1, GP_FLOAT64, 1) != GP_OK || b != 3.5) return 46;
    int32_t rs_in[2] = {rank, 7}, rs_out = 0;
    if (gp_reduce_scatter(comm, rs_in, &rs_out, 1, GP_INT32, GP_MAX) != GP_OK) return 47;
    if (rs_out != (rank == 0 ? 1 : 7)) return 48;
    if (gp_barrier(comm) != GP_OK) return 49;
    return gp_comm_destroy(comm) == GP_OK ? 0 : 50;
  };
  auto codes = run_children({[&] { return body(0); }, [&] { return body(1); }});
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
  EXPECT_EQ(gp_comm_rank(nullptr), -1);
  EXPECT_EQ(gp_comm_destroy(nullptr), GP_OK);
  EXPECT_EQ(gp_allreduce(nullptr, nullptr, nullptr, 0, GP_FLOAT32, GP_SUM, nullptr),
            GP_ERR_INVALID_ARGUMENT);
}

}  // namespace
