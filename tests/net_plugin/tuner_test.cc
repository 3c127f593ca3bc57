// SPDX-License-Identifier: Apache-2.0
// The tuner face's table rules (NCCL's src/include/plugin/tuner/tuner_v5.h): getCollInfo never
// fails, never turns a disabled (-1) entry on, always leaves an enabled one, leaves nChannels
// alone, and GRADPACK_TUNER=off changes nothing; with a compressed CollNet, large all-reduces
// across nodes prefer CollNetChain/SIMPLE, from the link CollNet measured once it has.
#include "net_plugin/tuner/tuner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "net_plugin/collnet/collnet.h"
#include "net_plugin/tuner/measured_link.h"
#include "topology/cost_model.h"

namespace gt = gradpack::plugin::tuner;

namespace {

using Table = float[NCCL_NUM_ALGORITHMS][NCCL_NUM_PROTOCOLS];

// NCCL's rows as float* (how it passes the table: float** over a float[7][3]).
ncclResult_t get_info(void* ctx, ncclFunc_t f, size_t bytes, Table& table, int* channels) {
  return gt::get_coll_info(ctx, f, bytes, 1, reinterpret_cast<float**>(&table[0][0]),
                           NCCL_NUM_ALGORITHMS, NCCL_NUM_PROTOCOLS, 0, channels);
}

// A few table shapes NCCL makes: all enabled; CollNet off; only ring/simple; CollNet only chain.
std::vector<std::vector<float>> tables() {
  std::vector<std::vector<float>> out;
  std::vector<float> all(NCCL_NUM_ALGORITHMS * NCCL_NUM_PROTOCOLS);
  for (size_t i = 0; i < all.size(); ++i) all[i] = 10.0f + static_cast<float>(i * 3 % 11);
  out.push_back(all);
  std::vector<float> no_collnet = all;
  for (int a : {NCCL_ALGO_COLLNET_DIRECT, NCCL_ALGO_COLLNET_CHAIN}) {
    for (int p = 0; p < NCCL_NUM_PROTOCOLS; ++p) no_collnet[a * NCCL_NUM_PROTOCOLS + p] = -1.0f;
  }
  out.push_back(no_collnet);
  std::vector<float> ring_only(all.size(), -1.0f);
  ring_only[NCCL_ALGO_RING * NCCL_NUM_PROTOCOLS + NCCL_PROTO_SIMPLE] = 5.0f;
  out.push_back(ring_only);
  std::vector<float> chain_only = ring_only;
  chain_only[NCCL_ALGO_COLLNET_CHAIN * NCCL_NUM_PROTOCOLS + NCCL_PROTO_SIMPLE] = 50.0f;
  out.push_back(chain_only);
  std::vector<float> zeros(all.size(), 0.0f);
  out.push_back(zeros);
  return out;
}

// Every function, sizes 1 B to 1 GiB, every table: the rules hold; returns whether any entry
// changed.
bool check_rules(void* ctx) {
  bool changed = false;
  for (int f = 0; f <= ncclFuncRecv; ++f) {
    for (size_t bytes = 1; bytes <= (size_t{1} << 30); bytes *= 4) {
      for (const std::vector<float>& before : tables()) {
        Table table;
        std::memcpy(table, before.data(), sizeof(table));
        int channels = 0;
        EXPECT_EQ(get_info(ctx, static_cast<ncclFunc_t>(f), bytes, table, &channels), ncclSuccess);
        EXPECT_EQ(channels, 0);
        bool any_enabled = false;
        for (int a = 0; a < NCCL_NUM_ALGORITHMS; ++a) {
          for (int p = 0; p < NCCL_NUM_PROTOCOLS; ++p) {
            const float was = before[static_cast<size_t>(a * NCCL_NUM_PROTOCOLS + p)];
            const float now = table[a][p];
            // Never enabled, never disabled.
            EXPECT_EQ(now < 0, was < 0) << "func " << f << " bytes " << bytes << " algo " << a;
            if (now >= 0) any_enabled = true;
            if (now != was) changed = true;
          }
        }
        EXPECT_TRUE(any_enabled);
      }
    }
  }
  return changed;
}

class TunerTest : public testing::Test {
 protected:
  void TearDown() override {
    unsetenv("GRADPACK_TUNER");
    unsetenv("GRADPACK_COLLNET_COMPRESS");
  }
};

TEST_F(TunerTest, WithoutCompressedCollNetTheTablesAreUnchanged) {
  unsetenv("GRADPACK_COLLNET_COMPRESS");
  void* ctx = nullptr;
  ncclTunerConstants_v5_t constants{};
  ncclNvlDomainInfo_v5_t nvl{4, 1, 1};
  ASSERT_EQ(gt::init(&ctx, 7, 4, 4, nullptr, &nvl, &constants), ncclSuccess);
  EXPECT_FALSE(check_rules(ctx));
  EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
}

TEST_F(TunerTest, CompressedCollNetIsPreferredForLargeAllReducesOnly) {
  setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
  setenv("GRADPACK_NET_SPEED_MBPS", "1000", 1);
  void* ctx = nullptr;
  ncclTunerConstants_v5_t constants{};
  ASSERT_EQ(gt::init(&ctx, 7, 4, 4, nullptr, nullptr, &constants), ncclSuccess);
  EXPECT_TRUE(check_rules(ctx));

  std::vector<float> all = tables()[0];
  Table table;
  std::memcpy(table, all.data(), sizeof(table));
  int channels = 0;
  ASSERT_EQ(get_info(ctx, ncclFuncAllReduce, size_t{256} << 20, table, &channels), ncclSuccess);
  for (int a = 0; a < NCCL_NUM_ALGORITHMS; ++a) {
    for (int p = 0; p < NCCL_NUM_PROTOCOLS; ++p) {
      if (a == NCCL_ALGO_COLLNET_CHAIN && p == NCCL_PROTO_SIMPLE) continue;
      EXPECT_LT(table[NCCL_ALGO_COLLNET_CHAIN][NCCL_PROTO_SIMPLE], table[a][p]);
    }
  }
  // A tiny all-reduce is latency-bound: compression does not pay, nothing changes.
  std::memcpy(table, all.data(), sizeof(table));
  ASSERT_EQ(get_info(ctx, ncclFuncAllReduce, 8, table, &channels), ncclSuccess);
  EXPECT_EQ(std::memcmp(table, all.data(), sizeof(table)), 0);
  // Other collectives are never steered.
  std::memcpy(table, all.data(), sizeof(table));
  ASSERT_EQ(get_info(ctx, ncclFuncAllGather, size_t{256} << 20, table, &channels), ncclSuccess);
  EXPECT_EQ(std::memcmp(table, all.data(), sizeof(table)), 0);
  EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
  unsetenv("GRADPACK_NET_SPEED_MBPS");
}

// The smallest all-reduce (power of two from 1 KiB) for which the tuner steers NCCL's table to
// CollNetChain; 0 if none up to 4 GiB.
size_t smallest_steered(void* ctx) {
  const std::vector<float> all = tables()[0];
  for (size_t bytes = 1024; bytes <= (size_t{1} << 32); bytes *= 2) {
    Table table;
    std::memcpy(table, all.data(), sizeof(table));
    int channels = 0;
    EXPECT_EQ(get_info(ctx, ncclFuncAllReduce, bytes, table, &channels), ncclSuccess);
    if (std::memcmp(table, all.data(), sizeof(table)) != 0) return bytes;
  }
  return 0;
}

// What CollNet's connect measures, as published: the model's figures only (probed_win_bytes 0,
// nothing timed) or with the timed small calls' answer.
gradpack::plugin::MeasuredLink measured(int nodes, double latency_s, double link_Bps,
                                        double encode_Bps, double decode_Bps,
                                        size_t probed_win_bytes = 0) {
  gradpack::plugin::MeasuredLink link;
  link.model.nranks = nodes;
  link.model.latency_s = latency_s;
  link.model.link_Bps = link_Bps;
  link.model.encode_Bps = encode_Bps;
  link.model.decode_Bps = decode_Bps;
  link.probed_win_bytes = probed_win_bytes;
  return link;
}

// CollNet's connect publishes what it measured (measured_link.h) under NCCL's commId; from the
// next getCollInfo on, the tuner decides from those figures instead of the configured link: only
// its own communicator's, with its node count and codec, the slowest of each figure, and only
// with one rank per node (where every rank measured, so every rank decides the same).
TEST_F(TunerTest, TheThresholdFollowsTheLinkCollNetMeasured) {
  namespace gpp = gradpack::plugin;
  constexpr int kTunerNodes = 4;
  constexpr uint64_t kComm = 0x7e57, kOtherComm = 0x7e58;
  setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
  setenv("GRADPACK_NET_SPEED_MBPS", "1000", 1);
  std::string codec;
  ASSERT_TRUE(gpp::collnet::codec_from_setting("q8", &codec).ok());
  void* ctx = nullptr;
  ASSERT_EQ(gt::init(&ctx, kComm, kTunerNodes, kTunerNodes, nullptr, nullptr, nullptr),
            ncclSuccess);
  void* multi = nullptr;  // 8 ranks on the same 4 nodes: not every rank measures
  ASSERT_EQ(gt::init(&multi, kComm, 2 * kTunerNodes, kTunerNodes, nullptr, nullptr, nullptr),
            ncclSuccess);
  unsetenv("GRADPACK_NET_SPEED_MBPS");
  const size_t configured = smallest_steered(ctx);
  EXPECT_GT(configured, 0u) << "at a configured 1 Gbit/s, q8 should win for large all-reduces";
  EXPECT_EQ(smallest_steered(multi), configured);

  // A link far faster than the codec: compressing never pays.
  gpp::publish_measured_link(kComm, codec, measured(kTunerNodes, 10e-6, 1e12, 1e8, 1e8));
  EXPECT_EQ(smallest_steered(ctx), 0u);
  EXPECT_FALSE(check_rules(ctx));
  EXPECT_EQ(smallest_steered(multi), configured);  // the configured figures, as on every rank

  // A second collComm of the same communicator on a slow link (8 Mbit/s): the slowest figures
  // win, so compressing pays, from smaller sizes than at the configured 1 Gbit/s.
  const gpp::MeasuredLink slow = measured(kTunerNodes, 100e-6, 1e6, 2e9, 4e9);
  gpp::publish_measured_link(kComm, codec, slow);
  const size_t measured_slow = smallest_steered(ctx);
  EXPECT_GT(measured_slow, 0u);
  EXPECT_LT(measured_slow, configured);

  // Figures of another communicator, node count or codec are not this communicator's.
  gpp::publish_measured_link(kOtherComm, codec, slow);
  gpp::publish_measured_link(kComm, codec, measured(kTunerNodes + 1, 1e-3, 1e3, 1e6, 1e6));
  gpp::publish_measured_link(kComm, "q4", measured(kTunerNodes, 1e-3, 1e3, 1e6, 1e6));
  EXPECT_EQ(smallest_steered(ctx), measured_slow);
  EXPECT_TRUE(check_rules(ctx));
  EXPECT_EQ(gt::finalize(multi), ncclSuccess);
  EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
  gpp::MeasuredLink gone;
  EXPECT_FALSE(gpp::measured_link(kComm, kTunerNodes, codec, &gone));  // forgotten at finalize
  gpp::forget_measured_links(kOtherComm);
}

// The timed small all-reduces decide the sizes they cover (the model is least sure there): the
// largest answer of a communicator's collComms; no win among them means none below 1 MiB; and a
// model that says compression never wins is not overruled.
TEST_F(TunerTest, TimedSmallCallsDecideTheSmallSizes) {
  namespace gpp = gradpack::plugin;
  constexpr int kTunerNodes = 4;
  constexpr size_t KiB = 1024;
  std::string codec;
  ASSERT_TRUE(gpp::collnet::codec_from_setting("q8", &codec).ok());
  setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
  const gpp::MeasuredLink slow = measured(kTunerNodes, 100e-6, 1e6, 2e9, 4e9);  // 8 Mbit/s
  struct Case {
    const char* what;
    std::vector<size_t> probed;  // one per collComm
    size_t steered;              // from smallest_steered(): 0 for never
    const gpp::MeasuredLink* model;
  };
  const gpp::MeasuredLink fast = measured(kTunerNodes, 10e-6, 1e12, 1e8, 1e8);
  size_t model_only = 0;
  {
    void* ctx = nullptr;
    ASSERT_EQ(gt::init(&ctx, 0x7e60, kTunerNodes, kTunerNodes, nullptr, nullptr, nullptr),
              ncclSuccess);
    gpp::publish_measured_link(0x7e60, codec, slow);
    model_only = smallest_steered(ctx);
    EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
  }
  ASSERT_GT(model_only, 0u);
  ASSERT_LE(model_only, 1024 * KiB);
  const std::vector<Case> cases = {
      {"timed win from 128 KiB", {128 * KiB}, 128 * KiB, &slow},
      {"two collComms: the larger answer", {64 * KiB, 256 * KiB}, 256 * KiB, &slow},
      {"no timed win: nothing below 1 MiB",
       {gpp::MeasuredLink::kNoProbedWin},
       std::max(model_only, 1024 * KiB),
       &slow},
      {"the model says never", {16 * KiB}, 0, &fast},
  };
  uint64_t comm = 0x7e70;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    void* ctx = nullptr;
    ASSERT_EQ(gt::init(&ctx, ++comm, kTunerNodes, kTunerNodes, nullptr, nullptr, nullptr),
              ncclSuccess);
    for (size_t probed : c.probed) {
      gpp::MeasuredLink link = *c.model;
      link.probed_win_bytes = probed;
      gpp::publish_measured_link(comm, codec, link);
    }
    EXPECT_EQ(smallest_steered(ctx), c.steered);
    EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
  }
}

TEST_F(TunerTest, OneNodeIsNeverSteered) {
  setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
  void* ctx = nullptr;
  ASSERT_EQ(gt::init(&ctx, 7, 2, 1, nullptr, nullptr, nullptr), ncclSuccess);
  EXPECT_FALSE(check_rules(ctx));
  EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
}

TEST_F(TunerTest, OffChangesNothing) {
  setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
  setenv("GRADPACK_TUNER", "off", 1);
  void* ctx = nullptr;
  ASSERT_EQ(gt::init(&ctx, 7, 4, 4, nullptr, nullptr, nullptr), ncclSuccess);
  EXPECT_FALSE(check_rules(ctx));
  EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
}

TEST_F(TunerTest, BadSettingsNeverFailAndChangeNothing) {
  setenv("GRADPACK_TUNER", "sideways", 1);
  void* ctx = nullptr;
  ASSERT_EQ(gt::init(&ctx, 7, 4, 4, nullptr, nullptr, nullptr), ncclSuccess);
  EXPECT_FALSE(check_rules(ctx));
  EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
  unsetenv("GRADPACK_TUNER");
  setenv("GRADPACK_COLLNET_COMPRESS", "q99", 1);
  ASSERT_EQ(gt::init(&ctx, 7, 4, 4, nullptr, nullptr, nullptr), ncclSuccess);
  EXPECT_FALSE(check_rules(ctx));
  EXPECT_EQ(gt::finalize(ctx), ncclSuccess);
  // A NULL context (a failed init NCCL ignored) is a tuner that changes nothing.
  EXPECT_FALSE(check_rules(nullptr));
  EXPECT_EQ(gt::finalize(nullptr), ncclSuccess);
}

}  // namespace
