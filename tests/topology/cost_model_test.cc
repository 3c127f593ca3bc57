// The cost model of codec "auto" and of the top-k algorithm choice (topology/cost_model.h).

#include "topology/cost_model.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "compression/codec.h"

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

}  // namespace
}  // namespace gradpack::topology
