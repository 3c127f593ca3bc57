// SPDX-License-Identifier: Apache-2.0
// The version is written once, in CMakeLists.txt's project(gradpack VERSION ...): the generated
// gradpack/version.h, gp_version() and the tools' banners all show that version.
#include <gtest/gtest.h>

#include <string>

#include "command.h"
#include "gradpack/gradpack.h"

namespace gradpack::tools::testing {
namespace {

// PROJECT_VERSION, passed by tests/tools/CMakeLists.txt.
const std::string kProjectVersion = GRADPACK_PROJECT_VERSION;
const std::string kRun = GRADPACK_RUN_PATH;
const std::string kPerf = GRADPACK_PERF_PATH;
const std::string kCodec = GRADPACK_CODEC_PATH;
const std::string kTopo = GRADPACK_TOPO_PATH;

TEST(GradpackVersion, HeaderAndLibraryShowTheProjectVersion) {
  EXPECT_EQ(GRADPACK_VERSION, kProjectVersion);
  EXPECT_EQ(std::to_string(GRADPACK_VERSION_MAJOR) + "." + std::to_string(GRADPACK_VERSION_MINOR) +
                "." + std::to_string(GRADPACK_VERSION_PATCH),
            kProjectVersion);
  EXPECT_EQ(gp_version(), kProjectVersion);
}

TEST(GradpackVersion, CodecBannerAndJsonShowIt) {
  const auto table = run_command(kCodec + " --synthetic 1K --spec none");
  ASSERT_EQ(table.status, 0) << table.output;
  EXPECT_NE(table.output.find("; gradpack " + kProjectVersion + "\n"), std::string::npos)
      << table.output;
  const auto json = run_command(kCodec + " --synthetic 1K --spec none --json");
  ASSERT_EQ(json.status, 0) << json.output;
  EXPECT_NE(json.output.find("\"version\": \"" + kProjectVersion + "\""), std::string::npos)
      << json.output;
}

TEST(GradpackVersion, PerfBannerShowsIt) {
  const auto r = run_command(kRun + " --timeout 100 -n 2 -- " + kPerf + " -b 1K -e 1K -n 1 -w 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(" gradpack " + kProjectVersion + " (header " + kProjectVersion + ") "),
            std::string::npos)
      << r.output;
}

TEST(GradpackVersion, TopoBannerAndJsonShowIt) {
  const auto tree = run_command("GRADPACK_TOPOLOGY=off " + kTopo);
  ASSERT_EQ(tree.status, 0) << tree.output;
  EXPECT_EQ(tree.output.rfind("# gradpack-topo; gradpack " + kProjectVersion + "\n", 0), 0u)
      << tree.output;
  const auto json = run_command("GRADPACK_TOPOLOGY=off " + kTopo + " --json");
  ASSERT_EQ(json.status, 0) << json.output;
  EXPECT_NE(json.output.find("\"version\": \"" + kProjectVersion + "\""), std::string::npos)
      << json.output;
}

}  // namespace
}  // namespace gradpack::tools::testing
