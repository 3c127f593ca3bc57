// SPDX-License-Identifier: Apache-2.0
// Compressed all-reduce on threads over loopback TCP: the plans with lossless codecs give exact
// sums; lossy codecs give the same bits on every rank, within the codec's bound; error feedback
// keeps the sum over steps; residuals survive a checkpoint; bad input and bad peers are errors.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <vector>

#include "tests/collectives/coll_test_util.h"

namespace gradpack::coll {
namespace {

using testing::input_value;
using testing::load_value;
using testing::RankOptions;
using testing::allreduce_c;
using testing::run_ranks;
using testing::store_value;

gp_allreduce_opts_t opts_for(const char* codec, gp_algo_t algorithm = GP_ALGO_AUTO,
                             const char* key = nullptr) {
  gp_allreduce_opts_t o;
  std::memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  o.algorithm = algorithm;
  o.codec = codec;
  o.error_feedback = -1;
  o.key = key;
  return o;
}

std::vector<std::string> two_per_host(int p) {
  std::vector<std::string> h;
  for (int r = 0; r < p; ++r) h.push_back("h" + std::to_string(r / 2));
  return h;
}

// Gradient-like values: signed, of varied magnitude, different on every rank.
float gradient(int rank, size_t i, int step = 0) {
  uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ static_cast<uint32_t>(rank + 1) * 40503u ^
               static_cast<uint32_t>(step) * 97u;
  x ^= x >> 13;
  x *= 0x5bd1e995u;
  x ^= x >> 15;
  const float u = static_cast<float>(x & 0xffffff) / 16777216.0f - 0.5f;
  return u * (1.0f + static_cast<float>(i % 7));
}

struct LosslessCase {
  const char* codec;
  gp_algo_t algorithm;
  bool hosts;
};

// Lossless frames ("none", and top-k keeping everything) through every compressed plan: the
// result must be the exact sum, as uncompressed, for every rank count, count and float dtype.
TEST(CompressedAllReduce, LosslessCodecsGiveExactSums) {
  const LosslessCase cases[] = {{"none", GP_ALGO_DIRECT, false},
                                {"none", GP_ALGO_RING, false},
                                {"none", GP_ALGO_HIER, true},
                                {"topk:1", GP_ALGO_SPARSE, false}};
  for (int p : {1, 2, 3, 5, 8}) {
    for (const LosslessCase& c : cases) {
      RankOptions ro;
      if (c.hosts) ro.host_ids = two_per_host(p);
      run_ranks(
          p,
          [&](Communicator& comm) {
            for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) {
              for (size_t count : {size_t{0}, size_t{1}, static_cast<size_t>(p - 1), size_t{1000},
                                   size_t{70001}}) {
                for (gp_redop_t op : {GP_SUM, GP_AVG}) {
                  for (bool in_place : {false, true}) {
                    const size_t elem = dtype_size(dtype);
                    std::vector<uint8_t> send(count * elem), recv(count * elem, 0xEE);
                    for (size_t i = 0; i < count; ++i) {
                      store_value(dtype, send.data(), i, input_value(GP_SUM, comm.rank(), i));
                    }
                    void* out = in_place ? send.data() : recv.data();
                    gp_allreduce_opts_t o = opts_for(c.codec, c.algorithm);
                    o.segment_bytes = 4096;  // several segments per chunk
                    Status st = allreduce_c(comm, send.data(), out, count, dtype, op, &o);
                    ASSERT_TRUE(st.ok()) << c.codec << " p=" << p << ": " << st.to_string();
                    for (size_t i = 0; i < count; ++i) {
                      const double want = testing::expected_value(op, dtype, p, i);
                      const double got = load_value(dtype, out, i);
                      ASSERT_NEAR(got, want, testing::tolerance(dtype, want))
                          << c.codec << "/" << algorithm_name(static_cast<Algorithm>(c.algorithm))
                          << " p=" << p << " dtype=" << dtype << " count=" << count << " op=" << op
                          << (in_place ? " in place" : "") << " i=" << i;
                    }
                  }
                }
              }
            }
          },
          ro);
      if (HasFailure()) return;
    }
  }
}

struct LossyCase {
  const char* codec;
  gp_algo_t algorithm;
  double eps;  // the codec's bound per element, relative to the block's absmax
};

// Lossy codecs: every rank ends with the same bits, and each element's error is within the sum of
// the worker and server bounds (docs/algorithms.md). fp32, fp16 and bf16 inputs.
TEST(CompressedAllReduce, LossyResultsAreIdenticalOnEveryRankAndWithinBound) {
  const LossyCase cases[] = {{"q8", GP_ALGO_DIRECT, 1.0 / 254},
                             {"q4", GP_ALGO_DIRECT, 1.0 / 14},
                             {"q8", GP_ALGO_HIER, 1.0 / 254},
                             {"q8:round=stochastic", GP_ALGO_DIRECT, 1.0 / 127},
                             {"topk:0.2+q8", GP_ALGO_SPARSE, -1},
                             {"topk:0.2+q8", GP_ALGO_DIRECT, -1},
                             {"q4", GP_ALGO_RING, -1}};
  for (int p : {2, 3, 5}) {
    for (const LossyCase& c : cases) {
      for (gp_dtype_t dtype : {GP_FLOAT32, GP_BFLOAT16}) {
        const size_t count = 5000;
        const size_t elem = dtype_size(dtype);
        std::vector<std::vector<uint8_t>> results(static_cast<size_t>(p));
        RankOptions ro;
        if (c.algorithm == GP_ALGO_HIER) ro.host_ids = two_per_host(p);
        run_ranks(
            p,
            [&](Communicator& comm) {
              std::vector<uint8_t> send(count * elem), recv(count * elem);
              for (size_t i = 0; i < count; ++i) {
                store_value(dtype, send.data(), i, gradient(comm.rank(), i));
              }
              gp_allreduce_opts_t o = opts_for(c.codec, c.algorithm);
              o.error_feedback = 0;
              Status st = allreduce_c(comm, send.data(), recv.data(), count, dtype, GP_SUM, &o);
              ASSERT_TRUE(st.ok()) << st.to_string();
              results[static_cast<size_t>(comm.rank())] = recv;
            },
            ro);
        if (HasFailure()) return;
        for (int r = 1; r < p; ++r) {
          ASSERT_EQ(results[static_cast<size_t>(r)], results[0])
              << c.codec << " p=" << p << ": rank " << r << " differs from rank 0";
        }
        if (c.eps < 0) continue;  // top-k drops elements; the ring's error grows with p
        // absmax over the whole buffer bounds every block's.
        double absmax_in = 0, absmax_sum = 0;
        std::vector<double> ref(count, 0.0);
        for (size_t i = 0; i < count; ++i) {
          for (int r = 0; r < p; ++r) {
            std::vector<uint8_t> one(elem);
            store_value(dtype, one.data(), 0, gradient(r, i));
            const double v = load_value(dtype, one.data(), 0);
            ref[i] += v;
            absmax_in = std::max(absmax_in, std::fabs(v));
          }
          absmax_sum = std::max(absmax_sum, std::fabs(ref[i]));
        }
        const double out_rounding = dtype == GP_BFLOAT16 ? 1.0 / 256 : 1e-6;
        for (size_t i = 0; i < count; ++i) {
          const double got = load_value(dtype, results[0].data(), i);
          const double bound = c.eps * (p * absmax_in + absmax_sum + 1e-3) +
                               out_rounding * (std::fabs(ref[i]) + c.eps * absmax_sum) + 1e-5;
          ASSERT_LE(std::fabs(got - ref[i]), bound)
              << c.codec << " p=" << p << " dtype=" << dtype << " i=" << i;
        }
      }
    }
  }
}

// Error feedback: over any number of steps, what was delivered plus what every rank still owes
// equals what was put in (the worker and server residuals of the direct plan telescope).
TEST(CompressedAllReduce, ErrorFeedbackKeepsTheSumOverSteps) {
  const int p = 3;
  const size_t count = 3000;
  const int steps = 6;
  for (const char* codec : {"q4", "topk:0.05+q8"}) {
    std::vector<double> delivered(count, 0.0), put_in(count, 0.0), owed(count, 0.0);
    std::mutex mu;
    run_ranks(p, [&](Communicator& comm) {
      std::vector<float> grad(count), out(count);
      std::vector<double> mine(count, 0.0);
      for (int t = 0; t < steps; ++t) {
        for (size_t i = 0; i < count; ++i) grad[i] = gradient(comm.rank(), i, t);
        for (size_t i = 0; i < count; ++i) mine[i] += grad[i];
        gp_allreduce_opts_t o = opts_for(codec, GP_ALGO_AUTO, "bucket");
        Status st = allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o);
        ASSERT_TRUE(st.ok()) << st.to_string();
        if (comm.rank() == 0) {
          for (size_t i = 0; i < count; ++i) delivered[i] += out[i];
        }
      }
      Residual* r = comm.residuals().find("bucket");
      ASSERT_NE(r, nullptr);
      ASSERT_EQ(r->count, count);
      std::lock_guard<std::mutex> lock(mu);
      const auto* res = static_cast<const float*>(r->values());
      for (size_t i = 0; i < count; ++i) {
        put_in[i] += mine[i];
        owed[i] += res[i];
      }
    });
    if (HasFailure()) return;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < count; ++i) {
      worst = std::max(worst, std::fabs(delivered[i] + owed[i] - put_in[i]));
      scale = std::max(scale, std::fabs(put_in[i]));
    }
    EXPECT_LT(worst, 1e-5 * scale * steps) << codec;
  }
}

TEST(CompressedAllReduce, Bf16ResidualsTakeTwoBytesPerElement) {
  const size_t count = 4096;
  run_ranks(2, [&](Communicator& comm) {
    std::vector<float> grad(count), out(count);
    for (size_t i = 0; i < count; ++i) grad[i] = gradient(comm.rank(), i);
    gp_allreduce_opts_t o = opts_for("q4", GP_ALGO_AUTO, "b16");
    o.residual_bits = 16;
    for (int t = 0; t < 3; ++t) {
      ASSERT_TRUE(allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o).ok());
    }
    gp_comm_stats_t s;
    s.struct_size = sizeof(s);
    comm.stats(&s);
    EXPECT_EQ(s.residual_bytes, 2 * count);
    EXPECT_EQ(s.residual_keys, 1u);
    EXPECT_EQ(s.compressed_calls, 3u);
    EXPECT_STREQ(s.last_algorithm, "direct");
    EXPECT_EQ(std::string(s.last_codec).rfind("q4", 0), 0u) << s.last_codec;
    // Asking for fp32 residuals under the same key is refused, not silently reinterpreted.
    o.residual_bits = 32;
    Status st = allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find("b16"), std::string::npos) << st.message();
  });
}

TEST(CompressedAllReduce, CountsBelowTheRankCountAndOneRank) {
  for (int p : {1, 5}) {
    run_ranks(p, [&](Communicator& comm) {
      for (size_t count : {size_t{1}, size_t{2}, size_t{4}}) {
        std::vector<float> grad(count, 1.0f + static_cast<float>(comm.rank())), out(count);
        gp_allreduce_opts_t o = opts_for("q8");
        ASSERT_TRUE(allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o).ok());
        const float want = static_cast<float>(p * (p + 1)) / 2;
        for (size_t i = 0; i < count; ++i) EXPECT_NEAR(out[i], want, want / 100) << count;
      }
    });
  }
}

TEST(CompressedAllReduce, BadRequestsAreRefused) {
  run_ranks(2, [&](Communicator& comm) {
    std::vector<int32_t> ints(64, 1), iout(64);
    std::vector<float> f(64, 1.0f), fout(64);
    gp_allreduce_opts_t o = opts_for("q8");
    Status st = allreduce_c(comm, ints.data(), iout.data(), 64, GP_INT32, GP_SUM, &o);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find("off"), std::string::npos) << st.message();
    EXPECT_EQ(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_MAX, &o).code(),
              Code::kInvalidArgument);
    o = opts_for("q8", GP_ALGO_SPARSE);
    EXPECT_EQ(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).code(),
              Code::kInvalidArgument);
    o = opts_for("q8", GP_ALGO_HD);
    EXPECT_EQ(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).code(),
              Code::kInvalidArgument);
    o = opts_for("q9x");
    EXPECT_EQ(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).code(),
              Code::kInvalidArgument);
    o = opts_for("off", GP_ALGO_DIRECT);
    EXPECT_EQ(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).code(),
              Code::kInvalidArgument);
    o = opts_for("q8");
    o.error_feedback = 2;
    EXPECT_EQ(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).code(),
              Code::kInvalidArgument);
    o = opts_for("q8");
    o.residual_bits = 8;
    EXPECT_EQ(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).code(),
              Code::kInvalidArgument);
    // A key reused for a bucket of another size.
    o = opts_for("q8", GP_ALGO_AUTO, "k");
    ASSERT_TRUE(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).ok());
    st = allreduce_c(comm, f.data(), fout.data(), 32, GP_FLOAT32, GP_SUM, &o);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find("\"k\""), std::string::npos) << st.message();
    // None of these broke the communicator.
    o = opts_for("q8");
    EXPECT_TRUE(allreduce_c(comm, f.data(), fout.data(), 64, GP_FLOAT32, GP_SUM, &o).ok());
  });
}

TEST(CompressedAllReduce, RanksWithDifferentCodecsNameTheCodec) {
  run_ranks(2, [&](Communicator& comm) {
    std::vector<float> f(1000, 1.0f), out(1000);
    gp_allreduce_opts_t o = opts_for(comm.rank() == 0 ? "q8" : "q4");
    Status st = allreduce_c(comm, f.data(), out.data(), 1000, GP_FLOAT32, GP_SUM, &o);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("codec"), std::string::npos) << st.message();
  });
}

// NaN in one rank's gradient reaches every rank (over its quantization block), and does not enter
// any residual: the next step is finite everywhere.
TEST(CompressedAllReduce, NanPropagatesAndDoesNotPoisonTheResidual) {
  const size_t count = 2048;
  run_ranks(3, [&](Communicator& comm) {
    std::vector<float> grad(count), out(count);
    for (size_t i = 0; i < count; ++i) grad[i] = gradient(comm.rank(), i);
    if (comm.rank() == 1) grad[700] = NAN;
    gp_allreduce_opts_t o = opts_for("q8", GP_ALGO_AUTO, "nan");
    ASSERT_TRUE(allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o).ok());
    EXPECT_TRUE(std::isnan(out[700]));
    size_t nans = 0;
    for (float v : out) nans += std::isnan(v) ? 1 : 0;
    EXPECT_LE(nans, 256u);  // one block of the default q8 block size
    EXPECT_FALSE(std::isnan(out[0]));
    for (size_t i = 0; i < count; ++i) grad[i] = gradient(comm.rank(), i, 1);
    ASSERT_TRUE(allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o).ok());
    for (size_t i = 0; i < count; ++i) ASSERT_TRUE(std::isfinite(out[i])) << i;
  });
}

// A transport that damages the frame header of the messages one rank sends after its first few:
// the receiver must fail with a decode error, and every rank must fail, not return numbers.
class DamagingSend : public transport::SendConnection {
 public:
  DamagingSend(std::unique_ptr<transport::SendConnection> inner) : inner_(std::move(inner)) {}
  Status register_memory(void* data, size_t size, transport::MemoryKind kind,
                         std::unique_ptr<transport::MemoryRegion>* out) override {
    return inner_->register_memory(data, size, kind, out);
  }
  Status isend(const void* data, size_t size, uint64_t tag, transport::MemoryRegion* mr,
               std::unique_ptr<transport::Request>* out) override {
    // Messages over 100 bytes are frames here (the header-only ones are smaller); the first of a
    // collective carries the 40-byte collective header in front.
    if (size > 100) {
      damaged_.emplace_back(static_cast<const uint8_t*>(data),
                            static_cast<const uint8_t*>(data) + size);
      damaged_.back()[tag == ~uint64_t{0} ? 40 + 9 : 9] ^= 0x5a;
      return inner_->isend(damaged_.back().data(), size, tag, mr, out);
    }
    return inner_->isend(data, size, tag, mr, out);
  }

 private:
  std::unique_ptr<transport::SendConnection> inner_;
  std::list<std::vector<uint8_t>> damaged_;
};

class DamagingTransport : public transport::Transport {
 public:
  explicit DamagingTransport(std::unique_ptr<transport::Transport> inner)
      : inner_(std::move(inner)) {}
  const char* name() const override { return inner_->name(); }
  int device_count() const override { return inner_->device_count(); }
  Status device_info(int dev, transport::DeviceInfo* out) const override {
    return inner_->device_info(dev, out);
  }
  Status listen(int dev, transport::Handle* handle,
                std::unique_ptr<transport::Listener>* out) override {
    return inner_->listen(dev, handle, out);
  }
  Status connect(int dev, const transport::Handle& handle, uint64_t hello,
                 std::chrono::milliseconds timeout,
                 std::unique_ptr<transport::SendConnection>* out) override {
    std::unique_ptr<transport::SendConnection> c;
    GP_RETURN_IF_ERROR(inner_->connect(dev, handle, hello, timeout, &c));
    *out = std::make_unique<DamagingSend>(std::move(c));
    return OkStatus();
  }
  uint64_t progress_epoch(int dev) const override { return inner_->progress_epoch(dev); }
  void wait_progress(int dev, uint64_t seen, std::chrono::steady_clock::time_point until) override {
    inner_->wait_progress(dev, seen, until);
  }

 private:
  std::unique_ptr<transport::Transport> inner_;
};

TEST(CompressedAllReduce, AFrameThatDoesNotDecodeFailsEveryRank) {
  RankOptions ro;
  ro.timeout = std::chrono::milliseconds(5000);
  ro.transport = [](int rank) -> std::unique_ptr<transport::Transport> {
    auto inner = testing::loopback_transport();
    if (rank != 1) return inner;
    return std::make_unique<DamagingTransport>(std::move(inner));
  };
  std::mutex mu;
  std::vector<Status> results(3);
  run_ranks(
      3,
      [&](Communicator& comm) {
        std::vector<float> grad(30000), out(30000);
        for (size_t i = 0; i < grad.size(); ++i) grad[i] = gradient(comm.rank(), i);
        gp_allreduce_opts_t o = opts_for("q8");
        Status st = allreduce_c(comm, grad.data(), out.data(), grad.size(), GP_FLOAT32, GP_SUM, &o);
        std::lock_guard<std::mutex> lock(mu);
        results[static_cast<size_t>(comm.rank())] = st;
      },
      ro);
  bool named = false;
  for (const Status& st : results) {
    EXPECT_FALSE(st.ok()) << "a rank returned numbers although rank 1's frames were damaged";
    if (st.code() == Code::kCorruptData &&
        st.message().find("the frame rank 1 sent does not decode") != std::string::npos) {
      named = true;
    }
  }
  EXPECT_TRUE(named) << results[0].to_string() << " | " << results[2].to_string();
}

// A checkpoint of the residuals, restored into fresh communicators, continues bit for bit.
TEST(CompressedAllReduce, ResidualsSurviveACheckpoint) {
  const int p = 3;
  const size_t count = 4000;
  std::vector<std::vector<uint8_t>> saved(p);
  std::vector<std::vector<float>> continued(p), resumed(p);
  auto step = [&](Communicator& comm, int t, std::vector<float>* out) {
    std::vector<float> grad(count);
    for (size_t i = 0; i < count; ++i) grad[i] = gradient(comm.rank(), i, t);
    out->resize(count);
    gp_allreduce_opts_t o = opts_for("q4", GP_ALGO_AUTO, "layer1");
    return allreduce_c(comm, grad.data(), out->data(), count, GP_FLOAT32, GP_SUM, &o);
  };
  run_ranks(p, [&](Communicator& comm) {
    std::vector<float> out;
    for (int t = 0; t < 3; ++t) ASSERT_TRUE(step(comm, t, &out).ok());
    ResidualStore& store = comm.residuals();
    auto& bytes = saved[static_cast<size_t>(comm.rank())];
    bytes.resize(store.serialized_bytes());
    store.serialize(bytes.data());
    ASSERT_TRUE(step(comm, 3, &continued[static_cast<size_t>(comm.rank())]).ok());
  });
  run_ranks(p, [&](Communicator& comm) {
    const auto& bytes = saved[static_cast<size_t>(comm.rank())];
    ASSERT_TRUE(comm.residuals().load(bytes.data(), bytes.size()).ok());
    ASSERT_TRUE(step(comm, 3, &resumed[static_cast<size_t>(comm.rank())]).ok());
  });
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(continued[static_cast<size_t>(r)], resumed[static_cast<size_t>(r)]) << r;
  }
}

TEST(ResidualStore, RefusesOtherLayoutsVersionsAndDamage) {
  ResidualStore a(1, 4);
  Residual* r = nullptr;
  ASSERT_TRUE(a.get("w", 10, 32, &r).ok());
  static_cast<float*>(r->values())[3] = 1.5f;
  std::vector<uint8_t> bytes(a.serialized_bytes());
  a.serialize(bytes.data());

  ResidualStore same(1, 4);
  ASSERT_TRUE(same.load(bytes.data(), bytes.size()).ok());
  ASSERT_NE(same.find("w"), nullptr);
  EXPECT_EQ(static_cast<float*>(same.find("w")->values())[3], 1.5f);

  ResidualStore other_rank(2, 4), other_size(1, 8);
  Status st = other_rank.load(bytes.data(), bytes.size());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("rank 1 of 4"), std::string::npos) << st.message();
  EXPECT_EQ(other_size.load(bytes.data(), bytes.size()).code(), Code::kInvalidArgument);

  std::vector<uint8_t> version = bytes;
  version[4] = 9;
  st = same.load(version.data(), version.size());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("version 9"), std::string::npos) << st.message();

  ResidualStore keep(1, 4);
  Residual* k = nullptr;
  ASSERT_TRUE(keep.get("kept", 4, 16, &k).ok());
  for (size_t cut : {size_t{0}, size_t{10}, bytes.size() - 1}) {
    EXPECT_EQ(keep.load(bytes.data(), cut).code(), Code::kCorruptData) << cut;
  }
  std::vector<uint8_t> flipped = bytes;
  flipped[30] ^= 1;
  EXPECT_EQ(keep.load(flipped.data(), flipped.size()).code(), Code::kCorruptData);
  EXPECT_NE(keep.find("kept"), nullptr) << "a refused load must change nothing";
  // The same key with another count or width is refused when a call uses it.
  EXPECT_EQ(same.get("w", 11, 32, &r).code(), Code::kInvalidArgument);
  EXPECT_EQ(same.get("w", 10, 16, &r).code(), Code::kInvalidArgument);
}

// Auto decides the same thing on every rank, and its result is right whichever it chose.
TEST(CompressedAllReduce, AutoDecidesTheSameOnEveryRank) {
  const int p = 3;
  std::mutex mu;
  std::vector<std::string> codecs(p);
  std::vector<std::vector<float>> outs(p);
  run_ranks(p, [&](Communicator& comm) {
    for (size_t count : {size_t{1024}, size_t{1} << 18}) {
      std::vector<float> grad(count), out(count);
      for (size_t i = 0; i < count; ++i) grad[i] = gradient(comm.rank(), i);
      gp_allreduce_opts_t o = opts_for("auto");
      ASSERT_TRUE(allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o).ok());
      gp_comm_stats_t s;
      s.struct_size = sizeof(s);
      comm.stats(&s);
      EXPECT_EQ(s.compressed_calls + s.bypassed_calls, count == 1024 ? 1u : 2u);
      std::lock_guard<std::mutex> lock(mu);
      codecs[static_cast<size_t>(comm.rank())] += std::string(s.last_codec) + ";";
      outs[static_cast<size_t>(comm.rank())].insert(outs[static_cast<size_t>(comm.rank())].end(),
                                                    out.begin(), out.end());
    }
    // A small buffer whose predicted win is confirmed by timing: every call's choice, and so its
    // codec, is the same on every rank (the header would refuse a mismatch), through the trial and
    // after the decision.
    for (int call = 0; call < 14; ++call) {
      const size_t count = 16384;
      std::vector<float> grad(count), out(count);
      for (size_t i = 0; i < count; ++i) grad[i] = gradient(comm.rank(), i, call);
      gp_allreduce_opts_t o = opts_for("auto", GP_ALGO_AUTO, "small");
      ASSERT_TRUE(allreduce_c(comm, grad.data(), out.data(), count, GP_FLOAT32, GP_SUM, &o).ok())
          << "call " << call;
    }
    // Integers are not compressed by auto: they go uncompressed, exactly.
    std::vector<int32_t> ints(100, comm.rank() + 1), iout(100);
    gp_allreduce_opts_t o = opts_for("auto");
    ASSERT_TRUE(allreduce_c(comm, ints.data(), iout.data(), 100, GP_INT32, GP_SUM, &o).ok());
    EXPECT_EQ(iout[0], p * (p + 1) / 2);
  });
  for (int r = 1; r < p; ++r) {
    EXPECT_EQ(codecs[static_cast<size_t>(r)], codecs[0]);
    EXPECT_EQ(outs[static_cast<size_t>(r)], outs[0]);
  }
}

}  // namespace
}  // namespace gradpack::coll
