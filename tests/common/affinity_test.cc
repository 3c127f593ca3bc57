// SPDX-License-Identifier: Apache-2.0
// CPU lists and thread affinity (common/affinity.h).
#include "common/affinity.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <vector>

namespace gradpack {
namespace {

TEST(CpuList, FormatsRuns) {
  EXPECT_EQ(format_cpu_list({}), "");
  EXPECT_EQ(format_cpu_list({3}), "3");
  EXPECT_EQ(format_cpu_list({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
}

TEST(CpuList, ParsesTheKernelsSyntax) {
  std::vector<int> cpus;
  ASSERT_TRUE(parse_cpu_list("0-3,8,10-11\n", &cpus).ok());
  EXPECT_EQ(cpus, (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  ASSERT_TRUE(parse_cpu_list(" 5, 1-2 ,2", &cpus).ok());  // sorted, duplicates merged
  EXPECT_EQ(cpus, (std::vector<int>{1, 2, 5}));
  ASSERT_TRUE(parse_cpu_list("", &cpus).ok());
  EXPECT_TRUE(cpus.empty());
  for (const char* bad : {"x", "3-1", "1,,2", "-1", "70000", "1-"}) {
    Status st = parse_cpu_list(bad, &cpus);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find(bad), std::string::npos) << st.message();
  }
}

TEST(CpuList, Intersects) {
  EXPECT_EQ(intersect_cpus({0, 1, 2, 8}, {1, 8, 9}), (std::vector<int>{1, 8}));
  EXPECT_TRUE(intersect_cpus({0}, {1}).empty());
}

TEST(ThreadAffinity, PinsAThreadToAnAllowedCpu) {
  std::vector<int> allowed;
  ASSERT_TRUE(allowed_cpus(&allowed).ok());
  ASSERT_FALSE(allowed.empty());
  const pthread_t self = pthread_self();
  ASSERT_TRUE(set_thread_cpus(self, {allowed.back()}).ok());
  std::vector<int> now;
  ASSERT_TRUE(allowed_cpus(&now).ok());  // sched_getaffinity(0) is this thread's mask
  EXPECT_EQ(now, std::vector<int>{allowed.back()});
  ASSERT_TRUE(set_thread_cpus(self, allowed).ok());  // restore
  EXPECT_EQ(set_thread_cpus(self, {}).code(), Code::kInvalidArgument);
  EXPECT_FALSE(set_thread_cpus(self, {100000}).ok());
}

}  // namespace
}  // namespace gradpack
