// SPDX-License-Identifier: Apache-2.0
// The one cost model (topology/cost_model.h): codec "auto"'s prediction, the top-k algorithm
// choice, the agreed figures of several measurements (slowest) and the smallest buffer worth
// compressing (compression_threshold, which the NCCL tuner uses).

#include "topology/cost_model.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdio>
#include <memory>

#include "compression/codec.h"
#include "topology/cluster.h"
#include "topology/cluster_file.h"

namespace gradpack::topology {
namespace {

LinkModel model(double link_Bps, double codec_Bps, int p = 4) {
  LinkModel m;
  m.nranks = p;
  m.latency_s = 100e-6;
  m.link_Bps = link_Bps;
  m.encode_Bps = codec_Bps;
  m.decode_Bps = codec_Bps;
  return m;
}

TEST(AutoModel, CompressesOnSlowLinksAndLargeBuffers) {
  const size_t s = 64 << 20;
  const Prediction p = predict(model(125e6, 5e9), s, s / 4, false);  // 1 Gbit/s, q8
  EXPECT_TRUE(p.compress);
  EXPECT_GT(p.uncompressed_s / p.compressed_s, 3.0);
}

TEST(AutoModel, BypassesWhenTheCodecIsSlowerThanTheLink) {
  const size_t s = 64 << 20;
  EXPECT_FALSE(predict(model(10e9, 2e9), s, s / 4, false).compress);
}

TEST(AutoModel, BypassesTinyBuffersWhereLatencyDominates) {
  // 2 KiB on a 1 Gbit/s link: the wire time saved is below the margin.
  EXPECT_FALSE(predict(model(125e6, 5e9, 4), 2048, 600, false).compress);
}

TEST(AutoModel, NothingToGainOnOneRank) {
  EXPECT_FALSE(predict(model(125e6, 5e9, 1), 1 << 20, 1 << 18, false).compress);
}

// The density below which the top-k all-gather beats the direct path, from the codecs' own frame
// sizes (docs/algorithms.md "sparse"): f* ~ D / ((p-1) * bytes per kept element).
double crossover(int p) {
  const size_t n = 1 << 20;
  std::unique_ptr<Codec> dense;
  EXPECT_TRUE(Codec::create("q8", &dense).ok());
  double lo = 1e-4, hi = 1.0;
  for (int i = 0; i < 30; ++i) {
    const double f = (lo + hi) / 2;
    std::unique_ptr<Codec> sparse;
    char spec[64];
    std::snprintf(spec, sizeof(spec), "topk:%.6f+q8", f);
    EXPECT_TRUE(Codec::create(spec, &sparse).ok());
    const bool wins = sparse_wins(p, sparse->max_encoded_bytes(n, GP_FLOAT32),
                                  dense->max_encoded_bytes(n, GP_FLOAT32));
    (wins ? lo : hi) = f;
  }
  return lo;
}

TEST(AutoModel, TopkCrossoverDensityFallsAsOneOverRanksMinusOne) {
  double previous = 1.0;
  for (int p : {2, 4, 8, 16}) {
    const double f = crossover(p);
    std::printf("topk:f+q8 on %d ranks: sparse all-gather below f* = %.3f\n", p, f);
    EXPECT_LT(f, previous);
    // D / (bytes per kept element): 1 byte of value and 1 to 2 of index per byte of dense q8.
    EXPECT_GT(f * (p - 1), 0.2);
    EXPECT_LT(f * (p - 1), 1.0);
    previous = f;
  }
}

// ---- slowest: the agreed figures of several measurements ---------------------------------------

LinkModel measured(double latency_s, double compressed_latency_s, double link_Bps,
                   double encode_Bps, double decode_Bps) {
  LinkModel m;
  m.nranks = 4;
  m.latency_s = latency_s;
  m.compressed_latency_s = compressed_latency_s;
  m.link_Bps = link_Bps;
  m.encode_Bps = encode_Bps;
  m.decode_Bps = decode_Bps;
  return m;
}

void expect_same(const LinkModel& a, const LinkModel& b) {
  EXPECT_EQ(a.nranks, b.nranks);
  EXPECT_EQ(a.latency_s, b.latency_s);
  EXPECT_EQ(a.compressed_latency_s, b.compressed_latency_s);
  EXPECT_EQ(a.link_Bps, b.link_Bps);
  EXPECT_EQ(a.encode_Bps, b.encode_Bps);
  EXPECT_EQ(a.decode_Bps, b.decode_Bps);
}

TEST(CostModel, SlowestTakesTheLargerLatenciesAndTheLowerRatesFieldByField) {
  // Neither measurement is slower in every figure: each field is chosen on its own.
  const LinkModel a = measured(100e-6, 300e-6, 1e9, 5e9, 6e9);
  const LinkModel b = measured(250e-6, 200e-6, 2e9, 4e9, 7e9);
  const LinkModel s = slowest(a, b);
  EXPECT_EQ(s.nranks, 4);
  EXPECT_EQ(s.latency_s, 250e-6);
  EXPECT_EQ(s.compressed_latency_s, 300e-6);
  EXPECT_EQ(s.link_Bps, 1e9);
  EXPECT_EQ(s.encode_Bps, 4e9);
  EXPECT_EQ(s.decode_Bps, 6e9);
}

TEST(CostModel, SlowestAgreesInAnyOrder) {
  const LinkModel a = measured(100e-6, 0, 1e9, 5e9, 6e9);
  const LinkModel b = measured(250e-6, 200e-6, 2e9, 4e9, 7e9);
  const LinkModel c = measured(50e-6, 400e-6, 3e9, 1e9, 9e9);
  expect_same(slowest(a, b), slowest(b, a));
  expect_same(slowest(slowest(a, b), c), slowest(a, slowest(c, b)));
  expect_same(slowest(a, a), a);
  // An unknown compressed latency (0) never hides a measured one.
  EXPECT_EQ(slowest(a, b).compressed_latency_s, 200e-6);
}

// ---- compression_threshold: the smallest buffer worth compressing -------------------------------

// q8's frames: about a quarter of fp32, plus a header.
size_t q8_like(size_t bytes) { return bytes / 4 + 64; }

TEST(CompressionThreshold, IsTheFirstPowerOfTwoThePredictionCompresses) {
  for (bool sparse : {false, true}) {
    SCOPED_TRACE(sparse ? "sparse" : "dense");
    const LinkModel m = model(125e6, 5e9);  // 1 Gbit/s, a fast codec
    const size_t t = compression_threshold(m, q8_like, sparse);
    ASSERT_NE(t, kNeverCompress);
    EXPECT_GT(t, kThresholdMin) << "latency must make the smallest buffers not worth it";
    EXPECT_LE(t, kThresholdMax);
    EXPECT_EQ(t & (t - 1), 0u) << t << " is not a power of two";
    EXPECT_TRUE(predict(m, t, q8_like(t), sparse).compress);
    EXPECT_FALSE(predict(m, t / 2, q8_like(t / 2), sparse).compress);
  }
}

TEST(CompressionThreshold, FallsAsTheLinkSlowsDown) {
  const size_t fast = compression_threshold(model(1.25e9, 20e9), q8_like, false);  // 10 Gbit/s
  const size_t slow = compression_threshold(model(125e6, 20e9), q8_like, false);   // 1 Gbit/s
  ASSERT_NE(fast, kNeverCompress);
  EXPECT_LT(slow, fast);
}

TEST(CompressionThreshold, TheSmallestSizeWhenEvenItWins) {
  LinkModel m = model(1e3, 5e9);  // 1 kB/s: the wire time of 1 KiB dwarfs everything else
  m.latency_s = 0;
  EXPECT_EQ(compression_threshold(m, q8_like, false), kThresholdMin);
}

TEST(CompressionThreshold, NeverWhenTheCodecIsSlowerThanTheLinkOrOnOneRank) {
  int calls = 0;
  auto counted = [&calls](size_t bytes) {
    ++calls;
    return q8_like(bytes);
  };
  EXPECT_EQ(compression_threshold(model(10e9, 2e9), counted, false), kNeverCompress);
  // Every power of two from kThresholdMin to kThresholdMax was tried: 2^10 .. 2^32.
  EXPECT_EQ(calls, 23);
  EXPECT_EQ(compression_threshold(model(125e6, 5e9, 1), q8_like, false), kNeverCompress);
}

TEST(CompressionThreshold, NeverForACodecThatCannotTakeFp32) {
  int calls = 0;
  auto no_frames = [&calls](size_t) {
    ++calls;
    return size_t{0};
  };
  EXPECT_EQ(compression_threshold(model(125e6, 5e9), no_frames, false), kNeverCompress);
  EXPECT_EQ(calls, 1) << "the first size that has no frame ends the search";
}


// The ring in tree order against the multi-level plan (measured on the racked vcluster, 8 hosts
// in 2 racks, interleaved: 64 MiB at B = U = 500 Mbit/s ring 2.08 s vs multi-level 2.61 s; 16 MiB
// at U = 125 Mbit/s ring 2.05 s vs multi-level 1.50 s). The model picks the same winner.
Cluster racks(const char* uplink) {
  std::string text = "switch top\n";
  for (int r = 0; r < 2; ++r) {
    text += "switch rack" + std::to_string(r) + " parent=top uplink=" + uplink + "\n";
  }
  for (int h = 0; h < 8; ++h) {
    text += "host h" + std::to_string(h) + " switch=rack" + std::to_string(h % 2) + " link=500mbit\n";
  }
  Cluster c;
  const Status st = parse_gradpack_cluster(text, "test", &c);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return c;
}

TEST(TreePlanCosts, RingWinsAtFullRateUplinksMultiLevelWhenOversubscribed) {
  const TreePlanCosts full = tree_plan_costs(racks("500mbit"));
  ASSERT_TRUE(full.known);
  EXPECT_LT(full.ring, full.multilevel);
  EXPECT_NEAR(full.ring, 1.75 * 8 / 500e6, 1e-12);  // 2(p-1)/p bytes at 500 Mbit/s
  const TreePlanCosts slow = tree_plan_costs(racks("125mbit"));
  ASSERT_TRUE(slow.known);
  EXPECT_LT(slow.multilevel, slow.ring);
  EXPECT_NEAR(slow.multilevel, (1.5 / 500e6 + 1.0 / 125e6) * 8, 1e-12);
}

TEST(TreePlanCosts, UnknownRatesAreUnknown) {
  Cluster c;
  ASSERT_TRUE(parse_gradpack_cluster("switch top\nswitch a parent=top\nswitch b parent=top\n"
                                     "host x switch=a\nhost y switch=b\n",
                                     "test", &c)
                  .ok());
  EXPECT_FALSE(tree_plan_costs(c).known);
}

}  // namespace
}  // namespace gradpack::topology
