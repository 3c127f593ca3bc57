// SPDX-License-Identifier: Apache-2.0
// gp_group_start / gp_group_end through the C ABI: ranks are threads of this process (each thread
// has its own group, as the API says), joined over loopback through a file:// rendezvous. Every
// grouped result is compared bit for bit with the same calls made one by one.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gradpack/gradpack.h"

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gp-group-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  std::string url() const { return "file://" + path_; }

 private:
  std::string path_;
};

// Runs body(rank, comms) on nranks threads; comms holds `ncomms` communicators per rank, each
// joined through its own rendezvous. gtest's assertions work on any thread.
void run_ranks(int nranks, int ncomms,
               const std::function<void(int, const std::vector<gp_comm_t*>&)>& body) {
  std::vector<TempDir> dirs(static_cast<size_t>(ncomms));
  std::vector<std::thread> threads;
  for (int r = 0; r < nranks; ++r) {
    threads.emplace_back([&, r] {
      std::vector<gp_comm_t*> comms;
      for (const TempDir& dir : dirs) {
        gp_comm_t* comm = nullptr;
        ASSERT_EQ(gp_comm_init(r, nranks, dir.url().c_str(), &comm), GP_OK) << gp_last_error();
        comms.push_back(comm);
      }
      body(r, comms);
      for (gp_comm_t* comm : comms) EXPECT_EQ(gp_comm_destroy(comm), GP_OK);
    });
  }
  for (auto& t : threads) t.join();
}

// One all-reduce of the test: its own send and recv buffers (recv == send in place).
struct Call {
  Call(gp_dtype_t d, gp_redop_t o, size_t n, bool ip, const char* c = "off")
      : dtype(d), op(o), count(n), in_place(ip), codec(c) {}

  gp_dtype_t dtype;
  gp_redop_t op;
  size_t count;
  bool in_place;
  const char* codec;
  std::vector<uint8_t> send, recv;

  void prepare(int rank, int salt) {
    const size_t bytes = count * gp_dtype_size(dtype);
    send.assign(bytes, 0);
    recv.assign(bytes, 0xEE);  // every byte must be overwritten
    for (size_t i = 0; i < count; ++i) store(i, small_value(rank, i, salt));
  }
  // Values whose sums, products, minima and maxima over 4 ranks are exact in every dtype.
  double small_value(int rank, size_t i, int salt) const {
    if (op == GP_PROD) return 1.0 + static_cast<double>((rank + i + static_cast<size_t>(salt)) % 2);
    return static_cast<double>((rank * 7 + static_cast<int>(i % 13) + salt) % 11);
  }
  void store(size_t i, double v) {
    uint8_t* p = send.data() + i * gp_dtype_size(dtype);
    switch (dtype) {
      case GP_FLOAT32: {
        float f = static_cast<float>(v);
        std::memcpy(p, &f, 4);
        break;
      }
      case GP_FLOAT64:
        std::memcpy(p, &v, 8);
        break;
      case GP_INT32: {
        int32_t x = static_cast<int32_t>(v);
        std::memcpy(p, &x, 4);
        break;
      }
      case GP_INT64: {
        int64_t x = static_cast<int64_t>(v);
        std::memcpy(p, &x, 8);
        break;
      }
      case GP_INT8: {
        int8_t x = static_cast<int8_t>(v);
        std::memcpy(p, &x, 1);
        break;
      }
      case GP_UINT8: {
        uint8_t x = static_cast<uint8_t>(v);
        std::memcpy(p, &x, 1);
        break;
      }
      case GP_FLOAT16:  // small integers: exact halves (sign 0, bias 15)
      case GP_BFLOAT16: {
        float f = static_cast<float>(v);
        uint32_t bits = 0;
        std::memcpy(&bits, &f, 4);
        uint16_t h = dtype == GP_BFLOAT16 ? static_cast<uint16_t>(bits >> 16) : half_of(v);
        std::memcpy(p, &h, 2);
        break;
      }
    }
  }
  static uint16_t half_of(double v) {
    if (v == 0) return 0;
    int e = 0;
    while ((1 << (e + 1)) <= v) ++e;
    const double mantissa = v / (1 << e) - 1.0;
    return static_cast<uint16_t>(((e + 15) << 10) | static_cast<int>(mantissa * 1024));
  }
  const void* src() const { return in_place ? static_cast<const void*>(recv.data()) : send.data(); }
  void* dst() { return recv.data(); }
  // In place: recv starts as the input.
  void arm() {
    if (in_place) recv = send;
  }
};

gp_status_t issue(gp_comm_t* comm, Call& c) {
  gp_allreduce_opts_t opts;
  gp_allreduce_opts_init(&opts);
  opts.codec = c.codec;
  opts.error_feedback = 0;
  return gp_allreduce(comm, c.src(), c.dst(), c.count, c.dtype, c.op, &opts);
}

uint64_t collectives_done(gp_comm_t* comm) {
  gp_comm_stats_t stats;
  std::memset(&stats, 0, sizeof(stats));
  stats.struct_size = sizeof(stats);
  EXPECT_EQ(gp_comm_stats(comm, &stats), GP_OK);
  return stats.collectives;
}

// A mixed list: every dtype with every op three times, sizes from 0 to 5 MiB (above
// GRADPACK_GROUP_FUSE_BYTES' default 4 MiB, so it runs alone), in place and not, and one compressed
// call among them.
std::vector<Call> mixed_calls() {
  const gp_dtype_t dtypes[] = {GP_FLOAT32,  GP_INT32, GP_FLOAT64, GP_FLOAT16,
                               GP_BFLOAT16, GP_INT64, GP_INT8,    GP_UINT8};
  const gp_redop_t ops[] = {GP_SUM, GP_MAX, GP_MIN, GP_PROD, GP_AVG};
  const size_t counts[] = {0, 1, 7, 256, 1000, 4099};
  std::vector<Call> calls;
  size_t k = 0;
  for (int round = 0; round < 3; ++round) {
    for (gp_dtype_t d : dtypes) {
      for (gp_redop_t op : ops) {
        calls.emplace_back(d, op, counts[k % 6], k % 4 == 0);
        ++k;
      }
    }
  }
  calls.emplace_back(GP_FLOAT32, GP_SUM, (size_t{5} << 20) / 4, false);
  calls.emplace_back(GP_FLOAT32, GP_SUM, 3000, true, "q8:seed=3");
  return calls;
}

TEST(Group, MixedAllReducesEqualSeparateCalls) {
  run_ranks(4, 1, [](int rank, const std::vector<gp_comm_t*>& comms) {
    gp_comm_t* comm = comms[0];
    std::vector<Call> one = mixed_calls(), grouped = mixed_calls();
    for (size_t i = 0; i < one.size(); ++i) {
      one[i].prepare(rank, static_cast<int>(i));
      grouped[i].prepare(rank, static_cast<int>(i));
      one[i].arm();
      grouped[i].arm();
      ASSERT_EQ(issue(comm, one[i]), GP_OK) << i << ": " << gp_last_error();
    }
    const uint64_t before = collectives_done(comm);
    ASSERT_EQ(gp_group_start(), GP_OK);
    for (Call& c : grouped) ASSERT_EQ(issue(comm, c), GP_OK) << gp_last_error();
    // Queued, not run: nothing written yet.
    EXPECT_EQ(grouped[1].recv[0], 0xEE);
    ASSERT_EQ(gp_group_end(), GP_OK) << gp_last_error();
    for (size_t i = 0; i < one.size(); ++i) {
      EXPECT_EQ(one[i].recv, grouped[i].recv) << "call " << i << " dtype " << one[i].dtype << " op "
                                              << one[i].op << " count " << one[i].count;
    }
    // At most one packed all-reduce per (dtype, op) pair, plus the 5 MiB call and the compressed
    // one on their own: far fewer than the calls.
    const uint64_t ran = collectives_done(comm) - before;
    EXPECT_LT(ran, one.size() / 2);
    EXPECT_GE(ran, 2u);
  });
}

TEST(Group, ManySmallAllReducesAreOneCollective) {
  run_ranks(3, 1, [](int rank, const std::vector<gp_comm_t*>& comms) {
    gp_comm_t* comm = comms[0];
    std::vector<Call> one(100, Call(GP_FLOAT32, GP_SUM, 256, false));
    std::vector<Call> grouped = one;
    for (size_t i = 0; i < one.size(); ++i) {
      one[i].prepare(rank, static_cast<int>(i));
      grouped[i].prepare(rank, static_cast<int>(i));
      ASSERT_EQ(issue(comm, one[i]), GP_OK) << gp_last_error();
    }
    const uint64_t before = collectives_done(comm);
    ASSERT_EQ(gp_group_start(), GP_OK);
    for (Call& c : grouped) ASSERT_EQ(issue(comm, c), GP_OK);
    ASSERT_EQ(gp_group_end(), GP_OK) << gp_last_error();
    EXPECT_EQ(collectives_done(comm) - before, 1u);
    for (size_t i = 0; i < one.size(); ++i) EXPECT_EQ(one[i].recv, grouped[i].recv) << i;
  });
}

TEST(Group, NestedGroupsRunAtTheOutermostEnd) {
  run_ranks(2, 1, [](int rank, const std::vector<gp_comm_t*>& comms) {
    gp_comm_t* comm = comms[0];
    Call a(GP_INT32, GP_SUM, 10, false), b(GP_INT32, GP_SUM, 20, true);
    a.prepare(rank, 1);
    b.prepare(rank, 2);
    b.arm();
    ASSERT_EQ(gp_group_start(), GP_OK);
    ASSERT_EQ(issue(comm, a), GP_OK);
    ASSERT_EQ(gp_group_start(), GP_OK);
    ASSERT_EQ(issue(comm, b), GP_OK);
    ASSERT_EQ(gp_group_end(), GP_OK);
    EXPECT_EQ(a.recv[0], 0xEE) << "the inner end ran the calls";
    ASSERT_EQ(gp_group_end(), GP_OK) << gp_last_error();
    for (size_t i = 0; i < a.count; ++i) {
      int32_t got = 0;
      std::memcpy(&got, a.recv.data() + 4 * i, 4);
      int32_t expected = 0;
      for (int r = 0; r < 2; ++r) expected += static_cast<int32_t>(a.small_value(r, i, 1));
      EXPECT_EQ(got, expected) << i;
    }
    int32_t b0 = 0;
    std::memcpy(&b0, b.recv.data(), 4);
    EXPECT_EQ(b0, static_cast<int32_t>(b.small_value(0, 0, 2) + b.small_value(1, 0, 2)));
  });
}

TEST(Group, EndWithoutStartIsAnError) {
  EXPECT_EQ(gp_group_end(), GP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(gp_last_error(), "gp_group_start"), nullptr) << gp_last_error();
}

TEST(Group, AnInvalidCallIsRefusedAndSpoilsTheGroup) {
  run_ranks(2, 1, [](int rank, const std::vector<gp_comm_t*>& comms) {
    gp_comm_t* comm = comms[0];
    Call ok(GP_FLOAT32, GP_SUM, 64, false);
    ok.prepare(rank, 0);
    ASSERT_EQ(gp_group_start(), GP_OK);
    ASSERT_EQ(issue(comm, ok), GP_OK);
    EXPECT_EQ(gp_allreduce(comm, nullptr, nullptr, 8, GP_FLOAT32, GP_SUM, nullptr),
              GP_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(gp_allreduce(comm, ok.send.data(), ok.recv.data(), 8, GP_FLOAT32,
                           static_cast<gp_redop_t>(9), nullptr),
              GP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(gp_last_error(), "op 9"), nullptr) << gp_last_error();
    EXPECT_EQ(gp_broadcast(comm, ok.send.data(), ok.recv.data(), 8, GP_FLOAT32, 5),
              GP_ERR_INVALID_ARGUMENT);
    // The group end returns the first refusal and runs nothing.
    EXPECT_EQ(gp_group_end(), GP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(gp_last_error(), "NULL"), nullptr) << gp_last_error();
    EXPECT_EQ(ok.recv[0], 0xEE);
    // The communicator and the next group are fine.
    ASSERT_EQ(gp_group_start(), GP_OK);
    ASSERT_EQ(issue(comm, ok), GP_OK);
    ASSERT_EQ(gp_group_end(), GP_OK) << gp_last_error();
    float got = 0;
    std::memcpy(&got, ok.recv.data(), 4);
    EXPECT_EQ(got, static_cast<float>(ok.small_value(0, 0, 0) + ok.small_value(1, 0, 0)));
  });
}

TEST(Group, OtherCollectivesRunInOrderBesideFusedAllReduces) {
  const int n = 3;
  run_ranks(n, 1, [n](int rank, const std::vector<gp_comm_t*>& comms) {
    gp_comm_t* comm = comms[0];
    const size_t k = 5;
    std::vector<int32_t> rs_send(k * n), rs_recv(k, -1), ag_send(k), ag_recv(k * n, -1);
    std::vector<int32_t> bc(k, -1), sr_send(k), sr_recv(k, -1);
    for (size_t i = 0; i < rs_send.size(); ++i) rs_send[i] = rank * 100 + static_cast<int>(i);
    for (size_t i = 0; i < k; ++i) {
      ag_send[i] = rank * 10 + static_cast<int>(i);
      sr_send[i] = rank * 1000 + static_cast<int>(i);
      if (rank == 1) bc[i] = 42 + static_cast<int>(i);
    }
    Call a(GP_FLOAT32, GP_SUM, 100, false), b(GP_FLOAT32, GP_SUM, 33, true);
    a.prepare(rank, 4);
    b.prepare(rank, 5);
    b.arm();
    ASSERT_EQ(gp_group_start(), GP_OK);
    ASSERT_EQ(issue(comm, a), GP_OK);
    ASSERT_EQ(gp_reduce_scatter(comm, rs_send.data(), rs_recv.data(), k, GP_INT32, GP_SUM), GP_OK);
    ASSERT_EQ(gp_allgather(comm, ag_send.data(), ag_recv.data(), k, GP_INT32), GP_OK);
    ASSERT_EQ(gp_broadcast(comm, bc.data(), bc.data(), k, GP_INT32, 1), GP_OK);
    ASSERT_EQ(gp_sendrecv(comm, sr_send.data(), (rank + 1) % n, sr_recv.data(), (rank + n - 1) % n,
                          k, GP_INT32),
              GP_OK);
    ASSERT_EQ(gp_barrier(comm), GP_OK);
    ASSERT_EQ(issue(comm, b), GP_OK);
    EXPECT_EQ(rs_recv[0], -1);
    ASSERT_EQ(gp_group_end(), GP_OK) << gp_last_error();
    for (size_t i = 0; i < k; ++i) {
      const int idx = rank * static_cast<int>(k) + static_cast<int>(i);
      EXPECT_EQ(rs_recv[i], (0 + 100 + 200) + n * idx);
      EXPECT_EQ(bc[i], 42 + static_cast<int>(i));
      EXPECT_EQ(sr_recv[i], ((rank + n - 1) % n) * 1000 + static_cast<int>(i));
      for (int r = 0; r < n; ++r) EXPECT_EQ(ag_recv[r * k + i], r * 10 + static_cast<int>(i));
    }
    for (size_t i = 0; i < a.count; ++i) {
      float got = 0;
      std::memcpy(&got, a.recv.data() + 4 * i, 4);
      double expected = 0;
      for (int r = 0; r < n; ++r) expected += a.small_value(r, i, 4);
      EXPECT_EQ(got, static_cast<float>(expected)) << i;
    }
  });
}

TEST(Group, SpansCommunicators) {
  run_ranks(2, 2, [](int rank, const std::vector<gp_comm_t*>& comms) {
    std::vector<Call> calls(6, Call(GP_INT64, GP_MAX, 50, false));
    for (size_t i = 0; i < calls.size(); ++i) calls[i].prepare(rank, static_cast<int>(i));
    ASSERT_EQ(gp_group_start(), GP_OK);
    for (size_t i = 0; i < calls.size(); ++i) ASSERT_EQ(issue(comms[i % 2], calls[i]), GP_OK);
    ASSERT_EQ(gp_group_end(), GP_OK) << gp_last_error();
    for (size_t i = 0; i < calls.size(); ++i) {
      for (size_t e = 0; e < calls[i].count; ++e) {
        int64_t got = 0;
        std::memcpy(&got, calls[i].recv.data() + 8 * e, 8);
        const double expected = std::max(calls[i].small_value(0, e, static_cast<int>(i)),
                                         calls[i].small_value(1, e, static_cast<int>(i)));
        EXPECT_EQ(got, static_cast<int64_t>(expected)) << i << " " << e;
      }
    }
  });
}

TEST(Group, DestroyDropsTheCommunicatorsCalls) {
  TempDir dir;
  gp_comm_t* comm = nullptr;
  ASSERT_EQ(gp_comm_init(0, 1, dir.url().c_str(), &comm), GP_OK) << gp_last_error();
  float x = 1;
  ASSERT_EQ(gp_group_start(), GP_OK);
  ASSERT_EQ(gp_allreduce(comm, &x, &x, 1, GP_FLOAT32, GP_SUM, nullptr), GP_OK);
  ASSERT_EQ(gp_comm_destroy(comm), GP_OK);
  EXPECT_EQ(gp_group_end(), GP_OK) << gp_last_error();
}

}  // namespace
