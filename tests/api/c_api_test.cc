// SPDX-License-Identifier: Apache-2.0
// The C ABI as a C program sees it (linked against libgradpack.so).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gradpack/gradpack.h"

namespace {

TEST(CApi, EncodeDecodeRoundTrip) {
  gp_codec_t* codec = nullptr;
  ASSERT_EQ(gp_codec_create("q8", &codec), GP_OK);
  EXPECT_STREQ(gp_codec_spec(codec), "q8:block=256:round=nearest:seed=0");
  std::vector<float> x(1000), residual(1000, 0.0f), out(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) - 8.0f;
  std::vector<uint8_t> frame(gp_codec_max_encoded_bytes(codec, x.size(), GP_FLOAT32));
  size_t bytes = 0;
  ASSERT_EQ(gp_codec_encode(codec, x.data(), x.size(), GP_FLOAT32, residual.data(), frame.data(),
                            frame.size(), &bytes),
            GP_OK);
  ASSERT_EQ(gp_codec_decode(frame.data(), bytes, out.data(), out.size(), GP_FLOAT32, 0), GP_OK);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(out[i], x[i], 8.0 / 127);
  gp_frame_info_t info;
  ASSERT_EQ(gp_frame_info(frame.data(), bytes, &info), GP_OK);
  EXPECT_EQ(info.count, 1000u);
  EXPECT_EQ(info.frame_bytes, bytes);
  EXPECT_STREQ(info.spec, "q8:block=256:round=nearest");
  gp_codec_destroy(codec);
}

TEST(CApi, ErrorsCarryAMessage) {
  gp_codec_t* codec = reinterpret_cast<gp_codec_t*>(0x1);
  EXPECT_EQ(gp_codec_create("q99", &codec), GP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(codec, nullptr);
  EXPECT_NE(std::strstr(gp_last_error(), "q99"), nullptr);
  EXPECT_EQ(gp_codec_create(nullptr, &codec), GP_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(gp_status_string(GP_ERR_CORRUPT_DATA), "GP_ERR_CORRUPT_DATA");
  EXPECT_STREQ(gp_status_string(static_cast<gp_status_t>(99)), "GP_ERR_UNKNOWN");
  uint8_t junk[64] = {0};
  float out[4];
  EXPECT_EQ(gp_codec_decode(junk, sizeof junk, out, 4, GP_FLOAT32, 0), GP_ERR_CORRUPT_DATA);
  EXPECT_NE(std::strstr(gp_last_error(), "magic"), nullptr);
  EXPECT_EQ(gp_codec_decode(junk, sizeof junk, out, 4, GP_FLOAT32, 2), GP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gp_codec_encode(nullptr, out, 4, GP_FLOAT32, nullptr, junk, 64, nullptr),
            GP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gp_dtype_size(GP_BFLOAT16), 2u);
  EXPECT_EQ(gp_dtype_size(static_cast<gp_dtype_t>(42)), 0u);
  gp_codec_destroy(nullptr);
}

}  // namespace

#include "gradpack/codec.hpp"

namespace {

// One rank is one host: flat without a probe. The cluster text is sized, then read, and a buffer
// too small is refused with the size it needs.
TEST(CApi, CommTopologyOfOneRank) {
  char dir[] = "/tmp/gp-topology-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  gp_comm_t* comm = nullptr;
  ASSERT_EQ(gp_comm_init(0, 1, (std::string("file://") + dir).c_str(), &comm), GP_OK)
      << gp_last_error();
  gp_comm_topology_t info;
  std::memset(&info, 0xff, sizeof(info));
  info.struct_size = sizeof(info);
  size_t length = 99;
  ASSERT_EQ(gp_comm_topology(comm, &info, nullptr, 0, &length), GP_OK) << gp_last_error();
  EXPECT_EQ(length, 0u);
  EXPECT_EQ(info.origin, GP_TOPOLOGY_FLAT);
  EXPECT_EQ(info.probe_seconds, 0);
  const std::string detail = info.detail;
  EXPECT_NE(detail.find("1 host(s), the cluster probe needs at least 4"), std::string::npos)
      << detail;
  char text[4] = {'x', 'x', 'x', 'x'};
  ASSERT_EQ(gp_comm_topology(comm, nullptr, text, sizeof(text), &length), GP_OK);
  EXPECT_EQ(text[0], '\0');
  EXPECT_EQ(gp_comm_topology(comm, nullptr, text, 0, &length), GP_ERR_INVALID_ARGUMENT);
  info.struct_size = 8;
  EXPECT_EQ(gp_comm_topology(comm, &info, nullptr, 0, nullptr), GP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gp_last_error()).find("struct_size"), std::string::npos);
  EXPECT_EQ(gp_comm_topology(nullptr, nullptr, nullptr, 0, nullptr), GP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(gp_comm_destroy(comm), GP_OK);
  std::filesystem::remove_all(dir);
}

TEST(CppView, WrapsTheCApi) {
  gp::Codec codec("q4:block=64");
  EXPECT_EQ(codec.spec(), "q4:block=64:round=nearest:seed=0");
  std::vector<float> x(640, 1.5f), out(640, 1.0f);
  std::vector<uint8_t> frame(codec.max_encoded_bytes(x.size(), GP_FLOAT32));
  frame.resize(codec.encode(x.data(), x.size(), GP_FLOAT32, nullptr, frame.data(), frame.size()));
  gp::decode(frame.data(), frame.size(), out.data(), out.size(), GP_FLOAT32, true);
  for (float v : out) EXPECT_FLOAT_EQ(v, 2.5f);
  EXPECT_EQ(gp::frame_info(frame.data(), frame.size()).count, 640u);
  try {
    gp::Codec bad("q1");
    FAIL() << "a bad spec did not throw";
  } catch (const gp::Error& e) {
    EXPECT_EQ(e.status(), GP_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("q1"), std::string::npos);
  }
  EXPECT_THROW(gp::decode(frame.data(), 10, out.data(), out.size(), GP_FLOAT32, false), gp::Error);
}

}  // namespace
