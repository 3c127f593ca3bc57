// SPDX-License-Identifier: Apache-2.0
// The communicator on threads over loopback TCP: every collective, dtype, op and algorithm
// against a direct computation, in place and out of place; disagreements and misuse as errors.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "coll_test_util.h"
#include "transport/tcp/listener.h"

namespace gradpack::coll {
namespace {

using testing::allreduce_c;
using testing::expected_value;
using testing::input_value;
using testing::load_value;
using testing::run_ranks;
using testing::store_value;
using testing::tolerance;

const gp_dtype_t kDtypes[] = {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16, GP_FLOAT64,
                              GP_INT32,   GP_INT64,   GP_INT8,     GP_UINT8};
const gp_redop_t kOps[] = {GP_SUM, GP_PROD, GP_MIN, GP_MAX, GP_AVG};
const gp_algo_t kAlgos[] = {GP_ALGO_AUTO, GP_ALGO_RING, GP_ALGO_HD, GP_ALGO_TREE, GP_ALGO_HIER};

// Counts of wrong elements of `out` against the allreduce of every rank's input.
size_t count_wrong(const std::vector<uint8_t>& out, size_t count, gp_dtype_t dtype, gp_redop_t op,
                   int nranks, size_t first_index = 0) {
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    double want = expected_value(op, dtype, nranks, first_index + i);
    double got = load_value(dtype, out.data(), i);
    if (std::fabs(got - want) > tolerance(dtype, want)) ++wrong;
  }
  return wrong;
}

void fill(std::vector<uint8_t>* buf, size_t count, gp_dtype_t dtype, gp_redop_t op, int rank,
          size_t first_index = 0) {
  buf->assign(std::max<size_t>(count, 1) * dtype_size(dtype), 0);
  for (size_t i = 0; i < count; ++i)
    store_value(dtype, buf->data(), i, input_value(op, rank, first_index + i));
}

class AllReduceRanks : public ::testing::TestWithParam<int> {};

TEST_P(AllReduceRanks, EveryDtypeOpAlgorithmInAndOutOfPlace) {
  const int nranks = GetParam();
  testing::RankOptions ro;
  for (int r = 0; r < nranks; ++r) ro.host_ids.push_back("host" + std::to_string(r / 2));
  run_ranks(
      nranks,
      [&](Communicator& comm) {
        const int rank = comm.rank();
        for (gp_algo_t algo : kAlgos) {
          for (size_t count : {size_t{0}, size_t{1}, size_t{3}, size_t{1000}, size_t{20011}}) {
            for (gp_dtype_t dtype : kDtypes) {
              for (gp_redop_t op : kOps) {
                for (bool in_place : {false, true}) {
                  gp_allreduce_opts_t opts;
                  std::memset(&opts, 0, sizeof(opts));
                  opts.struct_size = sizeof(opts);
                  opts.algorithm = algo;
                  opts.segment_bytes = 4096;  // several segments per block even at 20011
                  std::vector<uint8_t> send, recv;
                  fill(&send, count, dtype, op, rank);
                  recv.assign(send.size(), 0xEE);
                  if (in_place) recv = send;
                  Status st = allreduce_c(comm, in_place ? recv.data() : send.data(), recv.data(),
                                          count, dtype, op, &opts);
                  ASSERT_TRUE(st.ok()) << st.to_string() << " (algo " << algo << " count " << count
                                       << " dtype " << dtype << " op " << op << ")";
                  ASSERT_EQ(count_wrong(recv, count, dtype, op, nranks), 0u)
                      << "rank " << rank << " algo " << algo << " count " << count << " dtype "
                      << dtype << " op " << op << (in_place ? " in place" : "");
                }
              }
            }
          }
        }
      },
      ro);
}

INSTANTIATE_TEST_SUITE_P(Ranks, AllReduceRanks, ::testing::Values(1, 2, 3, 4, 5));

TEST(Communicator, LargeAllReduceStripedOverSockets) {
  testing::RankOptions ro;
  ro.nsocks = 3;
  const size_t count = (size_t{6} << 20) + 13;  // 24 MiB of float32
  run_ranks(
      3,
      [&](Communicator& comm) {
        for (gp_algo_t algo : {GP_ALGO_RING, GP_ALGO_HD, GP_ALGO_TREE}) {
          std::vector<uint8_t> buf;
          fill(&buf, count, GP_FLOAT32, GP_SUM, comm.rank());
          gp_allreduce_opts_t opts;
          std::memset(&opts, 0, sizeof(opts));
          opts.struct_size = sizeof(opts);
          opts.algorithm = algo;
          Status st = allreduce_c(comm, buf.data(), buf.data(), count, GP_FLOAT32, GP_SUM, &opts);
          ASSERT_TRUE(st.ok()) << st.to_string();
          ASSERT_EQ(count_wrong(buf, count, GP_FLOAT32, GP_SUM, 3), 0u) << "algo " << algo;
        }
      },
      ro);
}

// Re-planning decides from the agreed link rates, never from one rank's own view: ranks 1 and 2
// see their own sends 100 times slower than they are, so only the agreed matrix shows rank 2's
// links slow both ways (rank 0 and 3 see nothing wrong, rank 1 would blame its own link). Every
// rank rebuilds once, at the same call, with rank 2 a leaf of rank 3, and the sums stay exact.
TEST(Communicator, ReplanFollowsTheAgreedRatesNotEachRanksView) {
  constexpr int kRanks = 4;
  const size_t count = size_t{2} << 20;  // 8 MiB of float32: 12 MiB on each ring link per call
  std::vector<gp_comm_stats_t> stats(kRanks);
  std::vector<std::vector<int>> leaves(kRanks);
  std::vector<std::vector<uint64_t>> rebuilt_at(kRanks);
  run_ranks(kRanks, [&](Communicator& comm) {
    comm.replanner().set_interval_bytes_for_testing(2 * count * sizeof(float));  // every 2 calls
    if (comm.rank() == 1 || comm.rank() == 2) comm.replanner().scale_local_rates_for_testing(0.01);
    for (int call = 0; call < 8; ++call) {
      std::vector<uint8_t> buf;
      fill(&buf, count, GP_FLOAT32, GP_SUM, comm.rank());
      ASSERT_TRUE(comm.allreduce(buf.data(), buf.data(), count, GP_FLOAT32, GP_SUM).ok());
      ASSERT_EQ(count_wrong(buf, count, GP_FLOAT32, GP_SUM, kRanks), 0u) << "call " << call;
      if (comm.replanner().rebuilds() > rebuilt_at[comm.rank()].size()) {
        rebuilt_at[comm.rank()].push_back(static_cast<uint64_t>(call));
      }
    }
    auto& s = stats[comm.rank()];
    s.struct_size = sizeof(s);
    comm.stats(&s);
    leaves[comm.rank()] = comm.replanner().leaves();
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(stats[r].plan_rebuilds, 1u) << "rank " << r;
    EXPECT_EQ(stats[r].link_checks, 4u) << "rank " << r;
    EXPECT_EQ(leaves[r], std::vector<int>{2}) << "rank " << r;
    EXPECT_EQ(rebuilt_at[r], rebuilt_at[0]) << "rank " << r << " rebuilt at another call";
    EXPECT_STREQ(stats[r].last_algorithm, "hier") << "rank " << r;
    EXPECT_EQ(stats[r].collectives, 8u) << "the agreements are not the caller's calls";
  }
}

TEST(Communicator, ReduceScatterAllGatherBroadcastBarrier) {
  for (int nranks : {1, 2, 3, 5}) {
    run_ranks(nranks, [&](Communicator& comm) {
      const int rank = comm.rank();
      for (gp_dtype_t dtype : kDtypes) {
        for (size_t count : {size_t{0}, size_t{1}, size_t{777}}) {
          for (bool in_place : {false, true}) {
            // Reduce-scatter: block r of the reduction lands on rank r.
            std::vector<uint8_t> send, recv;
            fill(&send, count * nranks, dtype, GP_SUM, rank);
            recv.assign(std::max<size_t>(count, 1) * dtype_size(dtype), 0xEE);
            const uint8_t* src = send.data();
            uint8_t* dst = in_place ? send.data() + rank * count * dtype_size(dtype) : recv.data();
            Status st = comm.reduce_scatter(src, dst, count, dtype, GP_SUM);
            ASSERT_TRUE(st.ok()) << st.to_string();
            std::vector<uint8_t> got(dst, dst + count * dtype_size(dtype));
            ASSERT_EQ(count_wrong(got, count, dtype, GP_SUM, nranks, rank * count), 0u)
                << "reduce_scatter nranks " << nranks << " dtype " << dtype;

            // All-gather: block r of every rank's output is rank r's input.
            std::vector<uint8_t> mine,
                all(std::max<size_t>(count * nranks, 1) * dtype_size(dtype), 0xEE);
            for (size_t i = 0; i < count; ++i) {
              store_value(dtype, all.data(), rank * count + i, static_cast<double>((rank + i) % 7));
            }
            mine.assign(all.begin() + rank * count * dtype_size(dtype),
                        all.begin() + (rank + 1) * count * dtype_size(dtype));
            const void* gsend =
                in_place ? all.data() + rank * count * dtype_size(dtype) : mine.data();
            st = comm.allgather(gsend, all.data(), count, dtype);
            ASSERT_TRUE(st.ok()) << st.to_string();
            for (int r = 0; r < nranks; ++r) {
              for (size_t i = 0; i < count; ++i) {
                ASSERT_EQ(load_value(dtype, all.data(), r * count + i),
                          static_cast<double>((r + i) % 7));
              }
            }

            // Broadcast from every root.
            for (int root = 0; root < nranks; ++root) {
              std::vector<uint8_t> b(std::max<size_t>(count, 1) * dtype_size(dtype), 0xEE);
              std::vector<uint8_t> s = b;
              if (rank == root) {
                for (size_t i = 0; i < count; ++i)
                  store_value(dtype, s.data(), i, static_cast<double>((root + 2 * i) % 9));
                if (in_place) b = s;
              }
              st = comm.broadcast(in_place ? b.data() : s.data(), b.data(), count, dtype, root);
              ASSERT_TRUE(st.ok()) << st.to_string();
              for (size_t i = 0; i < count; ++i) {
                ASSERT_EQ(load_value(dtype, b.data(), i), static_cast<double>((root + 2 * i) % 9));
              }
            }
          }
        }
      }
      ASSERT_TRUE(comm.barrier().ok());
    });
  }
}

TEST(Communicator, SendRecvRingMovesEveryRanksBlockToTheNext) {
  for (int nranks : {1, 2, 3, 4}) {
    run_ranks(nranks, [&](Communicator& comm) {
      const int rank = comm.rank();
      const int next = (rank + 1) % nranks, prev = (rank + nranks - 1) % nranks;
      for (size_t count : {size_t{0}, size_t{1}, size_t{1000}, (size_t{3} << 20) + 5}) {
        std::vector<int32_t> send(std::max<size_t>(count, 1)), recv(send.size(), -1);
        for (size_t i = 0; i < count; ++i) send[i] = static_cast<int32_t>(rank * 1000003 + i);
        Status st = comm.sendrecv(send.data(), next, recv.data(), prev, count, GP_INT32);
        ASSERT_TRUE(st.ok()) << st.to_string();
        for (size_t i = 0; i < count; ++i) {
          ASSERT_EQ(recv[i], static_cast<int32_t>(prev * 1000003 + i)) << "count " << count;
        }
      }
      std::vector<float> buf(8);
      EXPECT_EQ(comm.sendrecv(buf.data(), next, buf.data() + 2, prev, 4, GP_FLOAT32).code(),
                Code::kInvalidArgument);  // overlapping buffers
      EXPECT_EQ(comm.sendrecv(buf.data(), nranks, buf.data(), prev, 0, GP_FLOAT32).code(),
                Code::kInvalidArgument);  // no such peer
    });
  }
}

TEST(Communicator, StrayConnectionsDuringRendezvousAreRejectedAndInitCompletes) {
  // Rank 2 joins late; meanwhile strays reach rank 0's listener: one sends garbage, one a
  // plausible hello with a wrong key, one nothing at all. Init and an all-reduce must succeed.
  auto store = make_memory_store();
  std::atomic<bool> strays_done{false};
  std::thread stray([&] {
    std::vector<uint8_t> entry;
    ASSERT_TRUE(store->get("gp/rank/0", std::chrono::milliseconds(10000), &entry).ok());
    transport::Handle handle;
    std::copy(entry.begin(), entry.begin() + transport::kHandleBytes, handle.bytes.begin());
    transport::tcp::HandleData target;
    ASSERT_TRUE(transport::tcp::decode_handle(handle, &target).ok());
    std::vector<int> fds;
    for (int kind = 0; kind < 3; ++kind) {
      int fd = socket(target.address.ss_family, SOCK_STREAM, 0);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(
          connect(fd, reinterpret_cast<const sockaddr*>(&target.address),
                  target.address.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)),
          0);
      std::vector<uint8_t> bytes(kind == 0 ? 300 : kind == 1 ? 64 : 0, 0x5A);
      if (kind == 1) std::memcpy(bytes.data(), "GPTC", 4);  // a magic-looking start, wrong key
      if (!bytes.empty()) {
        ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
      }
      fds.push_back(fd);
    }
    strays_done = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (int fd : fds) close(fd);
  });
  std::vector<std::thread> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.emplace_back([&, r] {
      if (r == 2) {
        while (!strays_done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      CommOptions options;
      options.transport = testing::loopback_transport();
      options.timeout = std::chrono::milliseconds(10000);
      options.host_id = "host" + std::to_string(r);
      std::unique_ptr<Communicator> comm;
      Status st = Communicator::create(r, 3, store, std::move(options), &comm);
      ASSERT_TRUE(st.ok()) << "rank " << r << ": " << st.to_string();
      std::vector<float> buf(1000, 1.0f);
      st = allreduce_c(*comm, buf.data(), buf.data(), buf.size(), GP_FLOAT32, GP_SUM, nullptr);
      ASSERT_TRUE(st.ok()) << st.to_string();
      EXPECT_EQ(buf[999], 3.0f);
    });
  }
  for (auto& t : ranks) t.join();
  stray.join();
}

TEST(Communicator, RanksThatDisagreeGetAnErrorNamingTheDifference) {
  run_ranks(2, [&](Communicator& comm) {
    std::vector<float> buf(100, 1.0f);
    size_t count = comm.rank() == 0 ? 100 : 99;
    Status st = allreduce_c(comm, buf.data(), buf.data(), count, GP_FLOAT32, GP_SUM, nullptr);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.to_string();
    EXPECT_NE(st.message().find("count"), std::string::npos) << st.message();
    // The communicator is broken from now on, with the first error in the message.
    Status again = comm.barrier();
    EXPECT_FALSE(again.ok());
    EXPECT_NE(again.message().find("failed earlier"), std::string::npos) << again.message();
  });
  run_ranks(3, [&](Communicator& comm) {
    std::vector<double> buf(10, 1.0);
    gp_redop_t op = comm.rank() == 2 ? GP_MAX : GP_SUM;
    Status st = allreduce_c(comm, buf.data(), buf.data(), 10, GP_FLOAT64, op, nullptr);
    ASSERT_FALSE(st.ok());
    // Rank 2 and its partners name the op; a rank that only saw a partner give up says so.
    EXPECT_TRUE(st.code() == Code::kInvalidArgument || st.code() == Code::kRemote)
        << st.to_string();
  });
}

TEST(Communicator, SecondThreadIsRefusedNotQueued) {
  std::atomic<bool> refused_checked{false};
  run_ranks(2, [&](Communicator& comm) {
    std::vector<float> buf(1 << 16, 1.0f);
    if (comm.rank() == 0) {
      // Rank 0 enters an all-reduce that cannot finish until rank 1 joins; a second thread of
      // rank 0 tries the same communicator meanwhile.
      std::thread intruder([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        std::vector<float> other(4, 1.0f);
        Status st = allreduce_c(comm, other.data(), other.data(), 4, GP_FLOAT32, GP_SUM, nullptr);
        EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.to_string();
        EXPECT_NE(st.message().find("another thread"), std::string::npos) << st.message();
        refused_checked = true;
      });
      Status st =
          allreduce_c(comm, buf.data(), buf.data(), buf.size(), GP_FLOAT32, GP_SUM, nullptr);
      EXPECT_TRUE(st.ok()) << st.to_string();
      intruder.join();
    } else {
      while (!refused_checked) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      Status st =
          allreduce_c(comm, buf.data(), buf.data(), buf.size(), GP_FLOAT32, GP_SUM, nullptr);
      EXPECT_TRUE(st.ok()) << st.to_string();
    }
  });
}

TEST(Communicator, BadArgumentsAreRefusedBeforeAnythingIsSent) {
  run_ranks(2, [&](Communicator& comm) {
    std::vector<float> buf(8, 1.0f);
    EXPECT_EQ(allreduce_c(comm, nullptr, buf.data(), 8, GP_FLOAT32, GP_SUM, nullptr).code(),
              Code::kInvalidArgument);
    EXPECT_EQ(
        allreduce_c(comm, buf.data(), buf.data(), 8, static_cast<gp_dtype_t>(42), GP_SUM, nullptr)
            .code(),
        Code::kInvalidArgument);
    EXPECT_EQ(allreduce_c(comm, buf.data(), buf.data(), 8, GP_FLOAT32, static_cast<gp_redop_t>(9),
                          nullptr)
                  .code(),
              Code::kInvalidArgument);
    gp_allreduce_opts_t opts;
    std::memset(&opts, 0, sizeof(opts));  // struct_size 0: not initialised
    EXPECT_EQ(allreduce_c(comm, buf.data(), buf.data(), 8, GP_FLOAT32, GP_SUM, &opts).code(),
              Code::kInvalidArgument);
    EXPECT_EQ(comm.broadcast(buf.data(), buf.data(), 8, GP_FLOAT32, 2).code(),
              Code::kInvalidArgument);
    // None of those reached the wire: the communicator still works.
    Status st = allreduce_c(comm, buf.data(), buf.data(), 8, GP_FLOAT32, GP_SUM, nullptr);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(buf[0], 2.0f);
  });
}

}  // namespace
}  // namespace gradpack::coll
