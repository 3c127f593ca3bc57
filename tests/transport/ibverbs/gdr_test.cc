// SPDX-License-Identifier: Apache-2.0
// GPUDirect RDMA's decision (transport/gdr.h): the pure rule over every combination of facts, the
// setting's parser, and the peer-memory detection over a sysfs tree of the test's own. Needs no
// RDMA device, no GPU, no libibverbs.
#include "transport/gdr.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace gradpack::transport {
namespace {

TEST(GdrDecision, OffReportsNothingWhateverTheFacts) {
  for (int bits = 0; bits < 8; ++bits) {
    const GdrFacts facts{(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0};
    EXPECT_EQ(decide_gdr(GdrMode::kOff, facts), (GdrSupport{false, false})) << bits;
  }
}

TEST(GdrDecision, AutoFollowsPeerMemoryAndDmabuf) {
  struct Case {
    GdrFacts facts;
    GdrSupport want;
  };
  const Case cases[] = {
      {{false, false, false}, {false, false}},  // a plain host: host memory only
      {{true, false, false}, {true, false}},    // nvidia-peermem, old rdma-core
      {{false, true, false}, {false, false}},   // the symbol, but the kernel says EOPNOTSUPP
      {{false, false, true}, {false, false}},   // cannot happen (no symbol to probe), still off
      {{false, true, true}, {true, true}},      // DMA-BUF alone: CUDA through regMrDmaBuf
      {{true, true, false}, {true, false}},
      {{true, false, true}, {true, false}},
      {{true, true, true}, {true, true}},
  };
  for (const Case& c : cases) {
    const GdrSupport got = decide_gdr(GdrMode::kAuto, c.facts);
    EXPECT_EQ(got, c.want) << c.facts.peer_memory << c.facts.dmabuf_verbs << c.facts.dmabuf_kernel
                           << " -> " << gdr_name(got);
  }
}

TEST(GdrDecision, ParsesTheSettingAndNamesItWhenWrong) {
  GdrMode mode = GdrMode::kOff;
  ASSERT_TRUE(parse_gdr_mode("auto", &mode).ok());
  EXPECT_EQ(mode, GdrMode::kAuto);
  ASSERT_TRUE(parse_gdr_mode("off", &mode).ok());
  EXPECT_EQ(mode, GdrMode::kOff);
  Status bad = parse_gdr_mode("on", &mode);
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("GRADPACK_GDR"), std::string::npos) << bad.message();
}

TEST(GdrDecision, NamesForLogs) {
  EXPECT_STREQ(gdr_name({false, false}), "none");
  EXPECT_STREQ(gdr_name({true, false}), "cuda");
  EXPECT_STREQ(gdr_name({true, true}), "cuda+dmabuf");
}

// Each file NCCL's IB transport checks, alone in an otherwise empty sysfs tree.
TEST(GdrDecision, PeerMemoryIsAnyOfTheThreeModuleFiles) {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/gp_gdr_sysfs_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path root = tmpl;
  EXPECT_FALSE(peer_memory_loaded(root.string()));
  for (const char* file : {"kernel/mm/memory_peers/nv_mem/version",
                           "kernel/mm/memory_peers/nv_mem_nc/version",
                           "module/nvidia_peermem/version"}) {
    fs::remove_all(root);
    fs::create_directories((root / file).parent_path());
    std::ofstream(root / file) << "1.0\n";
    EXPECT_TRUE(peer_memory_loaded(root.string())) << file;
  }
  fs::remove_all(root);
  fs::create_directories(root / "module/nvidia");  // the GPU driver alone is not enough
  EXPECT_FALSE(peer_memory_loaded(root.string()));
  fs::remove_all(root);
}

}  // namespace
}  // namespace gradpack::transport
