// SPDX-License-Identifier: Apache-2.0
#include "common/settings.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace gradpack {
namespace {

TEST(Settings, DefaultsWhenUnset) {
  Settings s;
  ASSERT_TRUE(Settings::from_map({}, &s).ok());
  EXPECT_EQ(s.get(SettingId::kLog), "warn");
  EXPECT_EQ(s.get(SettingId::kCpuIsa), "auto");
  EXPECT_FALSE(s.is_set(SettingId::kLog));
}

TEST(Settings, BadValueIsAnErrorNamingTheVariable) {
  Settings s;
  Status st = Settings::from_map({{"GRADPACK_CPU_ISA", "sse9"}}, &s);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("GRADPACK_CPU_ISA"), std::string::npos);
  EXPECT_NE(st.message().find("avx512"), std::string::npos);  // lists the choices
  st = Settings::from_map({{"GRADPACK_LOG_SUBSYS", "net,bogus"}}, &s);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("bogus"), std::string::npos);
}

TEST(Settings, ValidValuesAreKept) {
  Settings s;
  ASSERT_TRUE(
      Settings::from_map({{"GRADPACK_LOG", "debug"}, {"GRADPACK_LOG_SUBSYS", "net,codec"}}, &s)
          .ok());
  EXPECT_EQ(s.get(SettingId::kLog), "debug");
  EXPECT_TRUE(s.is_set(SettingId::kLog));
}

// docs/settings.md documents every declared variable with its default.
TEST(Settings, DocumentationListsEverySetting) {
  std::ifstream in(std::string(GRADPACK_SOURCE_DIR) + "/docs/settings.md");
  ASSERT_TRUE(in.good()) << "docs/settings.md is missing";
  std::stringstream text;
  text << in.rdbuf();
  for (const SettingInfo& info : all_settings()) {
    std::string row = std::string("| `") + info.variable + "` | `" + info.default_value + "` |";
    EXPECT_NE(text.str().find(row), std::string::npos)
        << "docs/settings.md lacks the row starting: " << row;
  }
}

}  // namespace
}  // namespace gradpack
